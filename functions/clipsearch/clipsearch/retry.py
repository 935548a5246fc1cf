"""Bounded retries: attempts AND total time, honouring the server's Retry-After."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from clipsearch.errors import PermanentError, TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    budget_s: float
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    rng: random.Random | None = None,
    on_retry: Callable[[int, Exception, float], None] | None = None,
    deadline: float | None = None,
) -> T:
    """Run `call`; retry TransientError (and a PermanentError marked retry_once, once).

    Gives up, re-raising the last error, when attempts run out or the next wait would pass
    the time budget: the caller's trigger then redelivers with its own backoff.
    """
    rng = rng or random.Random()
    budget_end = clock() + policy.budget_s
    deadline = budget_end if deadline is None else min(deadline, budget_end)
    retried_once = False
    attempt = 1
    while True:
        try:
            return call()
        except PermanentError as error:
            if not error.retry_once or retried_once:
                raise
            retried_once = True
            failure: Exception = error
            delay = policy.base_delay_s
        except TransientError as error:
            failure = error
            backoff = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
            delay = rng.uniform(0, backoff)  # full jitter: concurrent callers spread out
            if error.retry_after_s is not None:
                delay = max(delay, error.retry_after_s)
        if attempt >= policy.attempts or clock() + delay > deadline:
            raise failure
        if on_retry is not None:
            on_retry(attempt, failure, delay)
        sleep(delay)
        attempt += 1
