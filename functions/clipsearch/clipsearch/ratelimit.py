"""Per-instance pacing of calls to the vendor, shared by the instance's concurrent events.

The vendor's limits are per account; with at most N instances, each instance gets 1/N of the
rate, so the fleet as a whole stays under the account's limit instead of provoking 0429s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from clipsearch.errors import TransientError


class RateLimiter:
    """Spaces calls 1/rate apart, first come first served (GCRA-style virtual scheduling)."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        what: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | None = None,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._interval = 1.0 / rate_per_s
        self._what = what
        self._clock = clock
        self._sleep = sleep
        self._log = logger
        self._lock = threading.Lock()
        self._next_free = 0.0
        self._last_grant = -float("inf")

    def acquire(self, deadline: float) -> float:
        """Wait for this caller's slot; returns the seconds waited.

        A slot that would come after `deadline` is not taken: the event cannot use it, so it
        raises TransientError (the trigger redelivers later) and leaves the slot to others.
        """
        with self._lock:
            now = asked = self._clock()
            slot = max(now, self._next_free)
            if slot > deadline:
                raise TransientError(
                    f"{self._what} rate budget: next slot in {slot - now:.1f}s is past the"
                    " event's deadline",
                    retry_after_s=slot - now,
                )
            self._next_free = slot + self._interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        # A thread can wake late on a loaded machine; the next one, waking on time, would then
        # send less than an interval after it and meet the vendor's limit. Grants are spaced
        # by the time they actually happen, not only by the schedule.
        while True:
            with self._lock:
                now = self._clock()
                ready = self._last_grant + self._interval
                if now >= ready:
                    self._last_grant = now
                    break
            self._sleep(ready - now)
        waited = now - asked
        if self._log is not None and waited > 0:
            self._log.info(
                "%s waited %.3fs for its rate slot",
                self._what,
                waited,
                extra={"event": "rate_wait", "wait_s": round(waited, 3)},
            )
        return waited
