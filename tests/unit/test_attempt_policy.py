"""The give-up/retry rule alone: a record, an age and what happened in; a decision out."""

from __future__ import annotations

from typing import Any

import pytest

from clipsearch.core.attempt_policy import (
    Answer,
    Decision,
    Deliver,
    End,
    GiveUp,
    Happened,
    LeaveUnpublished,
    Limits,
    Retry,
    Situation,
    decide,
)
from clipsearch.errors import Reason
from clipsearch.idempotency import Record
from clipsearch.model import Hit

LIMITS = Limits(max_attempts=3, max_event_age_s=600.0)
NOW = 10_000.0
YOUNG, OLD = 60.0, 900.0
OUTCOME = {"status": "success", "clips": []}
HITS = (Hit(1.0, 2.0, 0.9, None),)
TOPIC = "projects/p/topics/results"


def _record(**fields: Any) -> Record:
    return Record(lease_until=NOW + 60, **fields)


def _stored() -> Record:
    return _record(message=OUTCOME, topic=TOPIC)


START, TRANSIENT, UNEXPECTED = Happened.STARTED, Happened.TRANSIENT, Happened.UNEXPECTED
UNPUBLISHED = Happened.UNPUBLISHED

CASES: list[tuple[str, Happened, Record, float, str, Decision]] = [
    # Started: a stored outcome is delivered, or given up on once its failures reach the cap.
    (
        "stored outcome, failures under the cap",
        START,
        _record(message=OUTCOME, topic=TOPIC, failures=2),
        OLD,
        "",
        Deliver(OUTCOME, TOPIC),
    ),
    (
        "stored outcome, failures at the cap",
        START,
        _record(message=OUTCOME, topic=TOPIC, failures=3, last_error="unexpected X"),
        YOUNG,
        "",
        GiveUp(OUTCOME, 3, "unexpected X"),
    ),
    (
        "a message without its topic is not a stored outcome",
        START,
        _record(message=OUTCOME, hits=HITS),
        YOUNG,
        "",
        Answer(),
    ),
    (
        "search sent, never answered",
        START,
        _record(search_sent_at=NOW - 30, attempts=2),
        YOUNG,
        "",
        End(
            Reason.SEARCH_UNCONFIRMED,
            "an earlier attempt sent the search 30s ago and stopped before recording its"
            " answer (the instance was stopped); it may have been billed, so it is not sent"
            " again",
        ),
    ),
    (
        "search sent and its hits stored",
        START,
        _record(search_sent_at=NOW - 30, hits=HITS),
        YOUNG,
        "",
        Answer(),
    ),
    (
        "failures at the cap",
        START,
        _record(hits=HITS, failures=3, last_error="attempt 3 was stopped"),
        YOUNG,
        "",
        End(
            Reason.INTERNAL_ERROR,
            "3 attempts failed unexpectedly or were stopped during the fetch stage"
            " (CLIPSEARCH_MAX_ATTEMPTS is 3); the last: attempt 3 was stopped",
        ),
    ),
    (
        "too old, something kept failing",
        START,
        _record(attempts=4, last_error="503 from the API"),
        OLD,
        "",
        End(
            Reason.RETRIES_EXHAUSTED,
            "still failing 900s after the upload, past CLIPSEARCH_MAX_EVENT_AGE_S (600s),"
            " after 3 attempts: 503 from the API",
        ),
    ),
    (
        "too old, nothing tried",
        START,
        _record(),
        OLD,
        "",
        End(
            Reason.EVENT_TOO_OLD,
            "the upload is 900s old, over CLIPSEARCH_MAX_EVENT_AGE_S (600s)",
        ),
    ),
    ("too old, hits stored and nothing failed", START, _record(hits=HITS), OLD, "", Answer()),
    ("young", START, _record(last_error="503"), YOUNG, "", Answer()),
    ("exactly at the age bound", START, _record(last_error="503"), 600.0, "", Answer()),
    # A transient failure: redelivered while young, or while an outcome is stored.
    ("transient, young", TRANSIENT, _record(), YOUNG, "503", Retry(failed=False)),
    ("transient, at the age bound", TRANSIENT, _record(), 600.0, "503", Retry(failed=False)),
    (
        "transient, old, an outcome stored",
        TRANSIENT,
        _record(message=OUTCOME, topic=TOPIC),
        OLD,
        "503",
        Retry(failed=False),
    ),
    (
        "transient, old",
        TRANSIENT,
        _record(attempts=5),
        OLD,
        "503 from the API",
        End(
            Reason.RETRIES_EXHAUSTED,
            "still failing 900s after the upload, past CLIPSEARCH_MAX_EVENT_AGE_S (600s),"
            " after 5 attempts: 503 from the API",
        ),
    ),
    # A publish failing transiently: redelivered while young, else left to the result JSON.
    ("publish failed, young", UNPUBLISHED, _stored(), YOUNG, "503", Retry(failed=False)),
    ("publish failed, at the bound", UNPUBLISHED, _stored(), 600.0, "503", Retry(failed=False)),
    ("publish failed, old", UNPUBLISHED, _stored(), OLD, "503", LeaveUnpublished()),
    # An unplanned exception counts one failure; the one reaching the cap ends the query.
    (
        "unexpected, under the cap",
        UNEXPECTED,
        _record(failures=1),
        OLD,
        "KeyError in m.f",
        Retry(failed=True),
    ),
    (
        "unexpected, reaching the cap with an outcome stored",
        UNEXPECTED,
        _record(message=OUTCOME, topic=TOPIC, failures=2),
        YOUNG,
        "KeyError in m.f",
        GiveUp(OUTCOME, 3, "unexpected KeyError in m.f"),
    ),
    (
        "unexpected, reaching the cap",
        UNEXPECTED,
        _record(hits=HITS, failures=2),
        YOUNG,
        "KeyError in m.f",
        End(
            Reason.INTERNAL_ERROR,
            "KeyError in m.f, failure 3 of CLIPSEARCH_MAX_ATTEMPTS (3) during the fetch stage",
        ),
    ),
    (
        "unexpected, reaching the cap after an earlier error",
        UNEXPECTED,
        _record(failures=2, last_error="unexpected ValueError in m.g"),
        YOUNG,
        "KeyError in m.f",
        End(
            Reason.INTERNAL_ERROR,
            "KeyError in m.f, failure 3 of CLIPSEARCH_MAX_ATTEMPTS (3) during the read stage"
            " (before: unexpected ValueError in m.g)",
        ),
    ),
]


@pytest.mark.parametrize(
    ("happened", "record", "age_s", "error", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    happened: Happened, record: Record, age_s: float, error: str, expected: Decision
) -> None:
    situation = Situation(happened, record, age_s, LIMITS, now=NOW, error=error)
    assert decide(situation) == expected


def test_only_an_unexpected_failure_counts() -> None:
    record = _record(failures=1)
    counted = {h: Situation(h, record, YOUNG, LIMITS).failures for h in Happened}
    assert counted == {START: 1, TRANSIENT: 1, UNPUBLISHED: 1, UNEXPECTED: 2}
