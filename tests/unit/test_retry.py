from __future__ import annotations

import random

import pytest

from clipsearch.errors import PermanentError, Reason, TransientError
from clipsearch.retry import RetryPolicy, call_with_retries


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run(outcomes, policy, time_=None):
    time_ = time_ or FakeTime()
    calls = iter(outcomes)

    def call():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    result = call_with_retries(
        call, policy, clock=time_.clock, sleep=time_.sleep, rng=random.Random(1)
    )
    return result, time_


def test_transient_then_success():
    result, t = run([TransientError("x"), TransientError("y"), "ok"], RetryPolicy(5, 100))
    assert result == "ok"
    assert len(t.sleeps) == 2


def test_attempts_bound():
    with pytest.raises(TransientError, match="3"):
        run(
            [TransientError("1"), TransientError("2"), TransientError("3"), "never"],
            RetryPolicy(3, 100),
        )


def test_time_budget_bound_and_retry_after_honoured():
    t = FakeTime()
    with pytest.raises(TransientError):
        run(
            [TransientError("a", retry_after_s=4), TransientError("b", retry_after_s=4), "x"],
            RetryPolicy(10, 6),
            t,
        )
    assert t.sleeps == [4]  # the second wait would pass the 6 s budget


def test_permanent_is_not_retried_but_retry_once_is_retried_once():
    with pytest.raises(PermanentError):
        run([PermanentError(Reason.API_UNAUTHORIZED, "no"), "x"], RetryPolicy(5, 100))
    glitch = PermanentError(Reason.API_INVALID_REQUEST, "0001", retry_once=True)
    assert run([glitch, "ok"], RetryPolicy(5, 100))[0] == "ok"
    with pytest.raises(PermanentError):
        run([glitch, glitch, "x"], RetryPolicy(5, 100))
