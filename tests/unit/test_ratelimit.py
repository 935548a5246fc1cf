"""The per-instance pacer: schedule, deadlines, and spacing by when grants really happen."""

from __future__ import annotations

import logging

import pytest

from clipsearch.errors import TransientError
from clipsearch.ratelimit import RateLimiter


class FakeTime:
    """A clock whose sleeps can overshoot, as threads waking late on a loaded machine do."""

    def __init__(self) -> None:
        self.now = 0.0
        self.overshoot: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + (self.overshoot.pop(0) if self.overshoot else 0.0)


def limiter(t: FakeTime, rate: float = 1.0) -> RateLimiter:
    return RateLimiter(rate, what="search", clock=t.clock, sleep=t.sleep)


def test_calls_are_spaced_one_interval_apart():
    t = FakeTime()
    pacer = limiter(t, rate=4.0)
    grants = []
    for _ in range(4):
        pacer.acquire(deadline=100)
        grants.append(t.now)
    assert grants == [0.0, 0.25, 0.5, 0.75]


def test_a_slot_past_the_deadline_is_refused_and_left_to_others():
    t = FakeTime()
    pacer = limiter(t)
    pacer.acquire(deadline=100)
    with pytest.raises(TransientError) as info:
        pacer.acquire(deadline=0.5)
    assert info.value.retry_after_s == pytest.approx(1.0)
    assert pacer.acquire(deadline=100) == pytest.approx(1.0)  # the refused slot was not taken


def test_a_late_waker_pushes_the_next_grant_back():
    t = FakeTime()
    pacer = limiter(t)
    pacer.acquire(deadline=100)  # granted at 0
    t.overshoot = [0.3]
    pacer.acquire(deadline=100)  # scheduled for 1.0, wakes at 1.3
    first_late = t.now
    waited = pacer.acquire(deadline=100)  # scheduled for 2.0: must not go before 2.3
    assert first_late == pytest.approx(1.3)
    assert t.now == pytest.approx(2.3)
    assert waited == pytest.approx(1.0)


def test_a_pacing_wait_is_logged_with_its_length(caplog):
    t = FakeTime()
    pacer = RateLimiter(
        1.0,
        what="search",
        clock=t.clock,
        sleep=t.sleep,
        logger=logging.getLogger("clipsearch.test"),
    )
    with caplog.at_level(logging.INFO, logger="clipsearch.test"):
        pacer.acquire(deadline=100)  # the first slot is free: no wait, no line
        pacer.acquire(deadline=100)
    [record] = caplog.records
    assert record.event == "rate_wait"  # type: ignore[attr-defined]
    assert record.wait_s == pytest.approx(1.0)  # type: ignore[attr-defined]
