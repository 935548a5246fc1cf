"""expires_at: the outcome says how long the stored result and its artifacts are kept."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from clipsearch.core import messages
from clipsearch.errors import ConfigError, Reason
from clipsearch.model import Query, QueryObject, Timings
from clipsearch.settings import SETTINGS, Settings
from tests.fakes import FakeSearchApi
from tests.functional.conftest import Harness
from tests.functional.conftest import make_harness as make_harness  # noqa: PLC0414 (fixture)
from tests.images import image_bytes
from tests.unit.test_settings_and_naming import BASE


@pytest.mark.parametrize(
    ("produced_at", "days", "expected"),
    [
        # The service's own form (milliseconds, Z) comes back in that form.
        ("2026-11-24T10:00:01.123Z", 30, "2026-12-24T10:00:01.123Z"),
        # Across a month end, a leap day and a year end: calendar days, not "months".
        ("2028-02-28T23:59:59.999Z", 1, "2028-02-29T23:59:59.999Z"),
        ("2026-12-31T00:00:00.000Z", 2, "2027-01-02T00:00:00.000Z"),
        ("2026-01-02T03:04:06Z", 30, "2026-02-01T03:04:06Z"),
        ("2026-01-02T03:04:06.5+02:00", 2, "2026-01-04T03:04:06.500+02:00"),
        ("2026-01-02T03:04:06.123456+00:00", 1, "2026-01-03T03:04:06.123456+00:00"),
    ],
)
def test_expires_at_is_produced_at_plus_the_retention(
    produced_at: str, days: int, expected: str
) -> None:
    got = messages.expires_at(produced_at, days)
    assert got == expected
    assert datetime.fromisoformat(got) - datetime.fromisoformat(produced_at) == timedelta(days)


def test_no_retention_means_no_promise_and_a_naive_time_is_refused() -> None:
    assert messages.expires_at("2026-01-01T00:00:00.000Z", None) is None
    with pytest.raises(ValueError, match="UTC offset"):
        messages.expires_at("2026-01-01T00:00:00", 30)


def _object() -> QueryObject:
    metadata = {"video_no": "V1", "prompt": "cat"}
    return QueryObject("qb", "a.jpg", 7, 10, "image/jpeg", metadata, "evt", "")


def test_success_and_error_outcomes_carry_expires_at_last() -> None:
    obj = _object()
    query = Query(obj, video_no="V1", prompt="cat", unique_id="default", image_kind="jpeg")
    produced = "2026-03-01T12:00:00.000Z"
    success = messages.success_message(
        query, [], Timings(), "gs://r/x.json", produced, retention_days=30
    )
    error = messages.error_message(
        obj, None, Reason.MISSING_PROMPT, "m", Timings(), "gs://r/x.json", produced,
        retention_days=7,
    )  # fmt: skip
    assert success["expires_at"] == "2026-03-31T12:00:00.000Z"
    assert error["expires_at"] == "2026-03-08T12:00:00.000Z"
    for message in (success, error):
        assert list(message)[-1] == "expires_at"
    # Without a retention (a caller that knows none), the field is there and null.
    bare = messages.success_message(query, [], Timings(), "gs://r/x.json", produced)
    assert bare["expires_at"] is None


def test_the_retention_setting_defaults_to_terraforms_and_is_validated() -> None:
    default = {s.env: s.default for s in SETTINGS}["CLIPSEARCH_RESULT_RETENTION_DAYS"]
    assert Settings.from_env(BASE).result_retention_days == int(default or 0) == 30
    custom = Settings.from_env({**BASE, "CLIPSEARCH_RESULT_RETENTION_DAYS": "7"})
    assert custom.result_retention_days == 7
    for bad in ("0", "-3", "1.5", "a week", "nan"):
        with pytest.raises(ConfigError, match="CLIPSEARCH_RESULT_RETENTION_DAYS"):
            Settings.from_env({**BASE, "CLIPSEARCH_RESULT_RETENTION_DAYS": bad})


def test_the_service_promises_the_configured_retention(
    make_harness: Callable[..., Harness],
) -> None:
    """Through the real functions-framework app: success and error outcomes, published and
    stored, say produced_at + CLIPSEARCH_RESULT_RETENTION_DAYS."""
    h = make_harness(FakeSearchApi([]), CLIPSEARCH_RESULT_RETENTION_DAYS="9")
    assert h.deliver("shots/a.jpg", image_bytes()).status_code == 200
    assert h.deliver("shots/b.jpg", image_bytes(), {"prompt": "no video"}).status_code == 200
    [success] = h.messages("results")
    [error] = h.messages("errors")
    assert error["error"]["reason"] == Reason.MISSING_VIDEO_NO.value
    for message in (success, error):
        produced = datetime.fromisoformat(message["produced_at"])
        assert datetime.fromisoformat(message["expires_at"]) - produced == timedelta(days=9)
        assert message["expires_at"].endswith("Z")
        assert len(message["expires_at"]) == len(message["produced_at"])
        stored = h.storage.objects[("results", message["result_uri"].split("/", 3)[3])]
        assert json.loads(stored.data)["expires_at"] == message["expires_at"]
