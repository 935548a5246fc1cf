"""When a query goes on, is retried or ends: the give-up/retry rule, no I/O.

A stored outcome is only ever delivered, never replaced. Otherwise a query ends before any
work when the record says it must: a search sent but never answered (`search_unconfirmed`);
CLIPSEARCH_MAX_ATTEMPTS unplanned failures or crashes since its last progress
(`internal_error`); past CLIPSEARCH_MAX_EVENT_AGE_S, something that kept failing
(`retries_exhausted`) or nothing tried yet (`event_too_old`). Transient failures are
redelivered while the query is younger than the bound, then end it as `retries_exhausted`; an
unplanned exception counts one failure, and the one that reaches the cap ends it as
`internal_error`. A stored outcome whose delivery keeps failing unexpectedly is given up on
(acknowledged, never replaced); one whose publish fails transiently past the age bound is left
unpublished (its result JSON, written first, says the outcome).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from clipsearch.errors import Reason
from clipsearch.idempotency import Record


class Happened(StrEnum):
    STARTED = "started"  # the attempt holds the lease; nothing has run yet
    TRANSIENT = "transient"  # a TransientError escaped the attempt's work
    UNEXPECTED = "unexpected"  # any other exception escaped it
    UNPUBLISHED = "unpublished"  # publishing the stored outcome failed transiently


@dataclass(frozen=True)
class Limits:
    max_attempts: int  # CLIPSEARCH_MAX_ATTEMPTS
    max_event_age_s: float  # CLIPSEARCH_MAX_EVENT_AGE_S


@dataclass(frozen=True)
class Situation:
    happened: Happened
    record: Record  # the query's record as this attempt holds it
    age_s: float  # the query's age: since the upload, or since the first claim
    limits: Limits
    now: float = 0.0  # epoch seconds; says how long ago a never-answered search was sent
    error: str = ""  # UNEXPECTED: where it was raised; otherwise the error's message

    @property
    def failures(self) -> int:
        """The unplanned failures since the last progress, this one included."""
        return self.record.failures + (1 if self.happened is Happened.UNEXPECTED else 0)


@dataclass(frozen=True)
class Answer:
    """Do the work: read, search (unless the record holds hits), fetch."""


@dataclass(frozen=True)
class Deliver:
    """Publish the outcome an earlier attempt stored."""

    message: dict[str, Any]
    topic: str


@dataclass(frozen=True)
class Retry:
    """Release the lease and raise, so the event is redelivered."""

    failed: bool  # an unplanned failure: it counts towards CLIPSEARCH_MAX_ATTEMPTS


@dataclass(frozen=True)
class End:
    """End the query with this error outcome."""

    reason: Reason
    text: str


@dataclass(frozen=True)
class LeaveUnpublished:
    """Acknowledge with no message published: the result JSON holds the outcome, and a later
    delivery of the same event, if one comes, still publishes it."""


@dataclass(frozen=True)
class GiveUp:
    """Acknowledge a stored outcome without publishing it (it may have been published)."""

    message: dict[str, Any]
    failures: int
    last_error: str | None


Decision = Answer | Deliver | Retry | End | GiveUp | LeaveUnpublished


def decide(situation: Situation) -> Decision:
    if situation.happened is Happened.STARTED:
        return _on_start(situation)
    if situation.happened is Happened.TRANSIENT:
        return _on_transient(situation)
    if situation.happened is Happened.UNPUBLISHED:
        return _on_unpublished(situation)
    return _on_unexpected(situation)


def _on_start(situation: Situation) -> Decision:
    record, limits, age_s = situation.record, situation.limits, situation.age_s
    if record.message is not None and record.topic is not None:
        if record.failures >= limits.max_attempts:
            return GiveUp(record.message, record.failures, record.last_error)
        return Deliver(record.message, record.topic)
    if record.hits is None and record.search_sent_at is not None:
        return End(
            Reason.SEARCH_UNCONFIRMED,
            f"an earlier attempt sent the search {situation.now - record.search_sent_at:.0f}s"
            " ago and stopped before recording its answer (the instance was stopped);"
            " it may have been billed, so it is not sent again",
        )
    if record.failures >= limits.max_attempts:
        return End(
            Reason.INTERNAL_ERROR,
            f"{record.failures} attempts failed unexpectedly or were stopped during the"
            f" {record.stage} stage (CLIPSEARCH_MAX_ATTEMPTS is"
            f" {limits.max_attempts}); the last: {record.last_error}",
        )
    if age_s > limits.max_event_age_s:
        if record.last_error is not None:
            text = _exhausted(situation, record.attempts - 1, record.last_error)
            return End(Reason.RETRIES_EXHAUSTED, text)
        if record.hits is None:
            return End(
                Reason.EVENT_TOO_OLD,
                f"the upload is {age_s:.0f}s old, over CLIPSEARCH_MAX_EVENT_AGE_S"
                f" ({limits.max_event_age_s:.0f}s)",
            )
    return Answer()


def _on_transient(situation: Situation) -> Decision:
    record = situation.record
    if situation.age_s <= situation.limits.max_event_age_s or record.message is not None:
        # Young enough to retry; or an outcome is stored and Cloud Storage failed to hold its
        # result JSON: the redelivery delivers it (never a new answer).
        return Retry(failed=False)
    text = _exhausted(situation, record.attempts, situation.error)
    return End(Reason.RETRIES_EXHAUSTED, text)


def _on_unpublished(situation: Situation) -> Decision:
    if situation.age_s <= situation.limits.max_event_age_s:
        return Retry(failed=False)
    return LeaveUnpublished()


def _on_unexpected(situation: Situation) -> Decision:
    record, failures = situation.record, situation.failures
    if failures < situation.limits.max_attempts:
        return Retry(failed=True)
    if record.message is not None:
        # Stored (perhaps published already): never a second, different outcome.
        return GiveUp(record.message, failures, f"unexpected {situation.error}")
    text = (
        f"{situation.error}, failure {failures} of CLIPSEARCH_MAX_ATTEMPTS"
        f" ({situation.limits.max_attempts}) during the {record.stage} stage"
    )
    if record.last_error:
        text += f" (before: {record.last_error})"
    return End(Reason.INTERNAL_ERROR, text)


def _exhausted(situation: Situation, attempts: int, what: str) -> str:
    return (
        f"still failing {situation.age_s:.0f}s after the upload, past CLIPSEARCH_MAX_EVENT_AGE_S"
        f" ({situation.limits.max_event_age_s:.0f}s), after {attempts} attempts: {what}"
    )
