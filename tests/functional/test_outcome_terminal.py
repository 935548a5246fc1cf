"""Every query ends in one outcome, whatever happens: bugs, crashes, stale retries, and what
the record says about a search in flight. Through the real app with in-memory fakes."""

from __future__ import annotations

import json
import struct
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clipsearch.clipping import FileRangeSource, RangeSource
from clipsearch.errors import PermanentError, Reason, TransientError
from clipsearch.idempotency import Record
from clipsearch.model import Hit, SourceVideo
from clipsearch.ports import MetadataLookup
from clipsearch_dev.media import make_video
from tests.fakes import FakeSearchApi, FileSources, MemoryRecordStore
from tests.functional.conftest import API_KEY
from tests.images import image_bytes

SRC = SourceVideo("mavi-resource", "V1.mp4")
HITS = [Hit(12.5, 18.2, 0.86, SRC)]
KEY = "queries/a.jpg#42"
RESULT = ("results", "clipsearch/results/queries/a.jpg/42.json")


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def boom(*args, **kwargs):
    raise IndexError("list index out of range /work/secret/path")  # as a bug would


# -- 1. anything unplanned ends the query as internal_error, after a bounded few attempts ---


def test_an_unexpected_exception_is_retried_then_ends_as_internal_error(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="copy")
    h.storage.copy_from_gcs = boom  # type: ignore[method-assign]
    codes = [h.deliver("a.jpg", image_bytes()).status_code for _ in range(4)]
    assert codes == [500, 500, 200, 200]  # attempts 1 and 2 retried; 3 ends it; 4 a duplicate
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "internal_error"
    text = message["error"]["message"]
    assert "IndexError in tests.functional.test_outcome_terminal.boom" in text
    assert "(via clipsearch.fetch._copy)" in text
    assert "failure 3 of CLIPSEARCH_MAX_ATTEMPTS (3) during the fetch stage" in text
    assert "/work/" not in text
    assert "/tmp" not in text
    assert len(h.api.searches) == 1  # the hits were stored: never searched again
    record, _ = h.records.read(KEY)
    assert record.attempts == 3
    assert record.message_id is not None


def glitch_once(h) -> None:
    """The server-side copy fails once in a way nobody planned for, then works."""
    h.storage.put("mavi-resource", "V1.mp4", b"video", generation=3)
    real = h.storage.copy_from_gcs
    calls = {"n": 0}

    def glitch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise struct.error("unpack requires a buffer of 8 bytes")
        return real(*args, **kwargs)

    h.storage.copy_from_gcs = glitch  # type: ignore[method-assign]


def test_a_one_off_glitch_gets_a_retry_and_then_succeeds(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="copy")
    glitch_once(h)
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    assert h.records.read(KEY)[0].last_error.startswith("unexpected error in ")
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [message] = h.messages()
    assert message["status"] == "success"


def test_max_attempts_one_ends_at_the_first_unexpected_exception(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="copy", CLIPSEARCH_MAX_ATTEMPTS="1")
    h.storage.copy_from_gcs = boom  # type: ignore[method-assign]
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "internal_error"
    # The stored result JSON says the same.
    assert json.loads(h.storage.objects[RESULT].data) == message


# -- 1b. transient failures stop at the age bound, stored hits or not ---------------------


def test_transient_failures_with_stored_hits_end_at_the_age_bound(make_harness):
    h = make_harness(
        FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="copy", CLIPSEARCH_MAX_EVENT_AGE_S="600"
    )

    def unavailable(source, deadline):
        raise TransientError("download: HTTP 503")

    h.api.open_download = unavailable  # type: ignore[method-assign]
    h.storage.readable_sources = False
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(30)).status_code == 500
    assert h.records.read(KEY)[0].hits is not None
    assert h.records.read(KEY)[0].last_error == "download: HTTP 503"
    # Still failing an hour later: the hits are stored, yet it ends instead of retrying on.
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(700)).status_code == 200
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "retries_exhausted"
    assert "download: HTTP 503" in message["error"]["message"]
    assert "CLIPSEARCH_MAX_EVENT_AGE_S" in message["error"]["message"]
    assert len(h.api.searches) == 1


def test_the_age_bound_holds_for_events_without_a_time(make_harness):
    """No usable event time: the record's first claim dates the query."""
    records = MemoryRecordStore()
    records.create(KEY, Record(lease_until=0.0, created_at=time.time() - 700, hits=tuple(HITS)))
    h = make_harness(
        FakeSearchApi(HITS),
        records=records,
        CLIPSEARCH_FETCH_MODE="copy",
        CLIPSEARCH_MAX_EVENT_AGE_S="600",
    )

    def unavailable(source, deadline):
        raise TransientError("download: HTTP 503")

    h.api.open_download = unavailable  # type: ignore[method-assign]
    h.storage.readable_sources = False
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "retries_exhausted"


def test_a_failing_publish_past_the_bound_is_acknowledged_and_the_result_json_says_it(
    make_harness,
):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_MAX_EVENT_AGE_S="600")
    h.publisher.fail_with = TransientError("publishing: ServiceUnavailable")
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(700)).status_code == 200
    stored = json.loads(h.storage.objects[RESULT].data)
    assert stored["error"]["reason"] == "event_too_old"
    [line] = [x for x in h.log_lines() if x.get("event") == "outcome"]
    assert line["severity"] == "ERROR"
    assert "not published" in line["message"]
    assert "gs://results/clipsearch/results/queries/a.jpg/42.json" in line["message"]
    # Should the event come again once Pub/Sub is back, the stored outcome is published.
    h.publisher.fail_with = None
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(800)).status_code == 200
    [message] = h.messages("errors")
    assert message == stored


# -- 2. crash-safe billing: the record says a search is in flight before it leaves ----------


def test_the_record_says_search_sent_before_the_request_leaves(make_harness):
    seen: list[Record] = []
    api = FakeSearchApi(HITS)
    original = api.search

    def watching(query, image, deadline, before_send=None):
        def hook() -> None:
            before_send()
            seen.append(h.records.read(KEY)[0])

        return original(query, image, deadline, hook)

    api.search = watching  # type: ignore[method-assign]
    h = make_harness(api, CLIPSEARCH_FETCH_MODE="none")
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [record] = seen
    assert record.search_sent_at is not None
    assert record.hits is None


def test_a_takeover_finding_a_sent_search_without_hits_does_not_search_again(make_harness):
    records = MemoryRecordStore()
    # An instance died with its search in flight: sent, lease expired, no hits.
    records.create(
        KEY, Record(lease_until=time.time() - 1, search_sent_at=time.time() - 40, attempts=1)
    )
    h = make_harness(FakeSearchApi(HITS), records=records, CLIPSEARCH_FETCH_MODE="none")
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    assert h.api.searches == []
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "search_unconfirmed"
    assert "may have been billed" in message["error"]["message"]
    assert message["query"]["video_no"] == "V1"


def test_a_search_refused_before_sending_leaves_no_mark_and_is_sent_on_retry(make_harness):
    h = make_harness(
        FakeSearchApi(TransientError("API code 0429"), HITS), CLIPSEARCH_FETCH_MODE="none"
    )
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    assert h.records.read(KEY)[0].search_sent_at is None
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    assert h.messages()[0]["status"] == "success"


def test_a_failed_mark_sends_no_search(make_harness):
    """If the record cannot say "sent" (the lease was taken over), nothing is sent."""
    records = MemoryRecordStore()
    h = make_harness(FakeSearchApi(HITS), records=records, CLIPSEARCH_FETCH_MODE="none")
    real_replace = records.replace

    def refuse_marks(key, record, generation):
        if record.search_sent_at is not None and record.hits is None:
            return None  # someone else moved the record on
        return real_replace(key, record, generation)

    records.replace = refuse_marks  # type: ignore[method-assign]
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    assert h.api.searches == []


# -- 6. events for another bucket -------------------------------------------------------


def test_events_for_another_bucket_are_skipped_before_any_claim(make_harness):
    h = make_harness(FakeSearchApi(HITS))
    assert h.deliver("a.jpg", image_bytes(), bucket="someone-else").status_code == 200
    assert h.records.records == {}
    assert h.api.searches == []
    assert h.publisher.messages == []
    assert any("not the query bucket" in x["message"] for x in h.log_lines())


# -- 3 (engine part). a source that breaks the engine costs its clips, not the query ------


class BrokenSource(FileRangeSource):
    """Reads that fail in a way nobody planned for, as a hostile file can make them."""

    def read(self, offset: int, length: int) -> bytes:
        raise struct.error("unpack requires a buffer of 12 bytes")


class BrokenSources(FileSources):
    def open_range(
        self,
        source: SourceVideo,
        deadline: float | None = None,
        video: MetadataLookup | None = None,
    ) -> RangeSource | None:
        path = self.files.get(source)
        return None if path is None else BrokenSource(path, cache_key=f"{source.uri}#1")


def test_an_engine_failure_falls_back_with_engine_error(make_harness, tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"\x00" * 4096)
    h = make_harness(
        FakeSearchApi([Hit(1.0, 3.0, 0.9, SRC), Hit(5.0, 6.0, 0.5, SRC)]),
        gcs=BrokenSources({SRC: path}),
        CLIPSEARCH_FETCH_MODE="clip",
    )
    h.storage.put("mavi-resource", "V1.mp4", Path(path).read_bytes(), generation=1)
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [message] = h.messages()
    assert [c["fallback_reason"] for c in message["clips"]] == ["engine_error"] * 2
    assert [c["artifact"]["mode"] for c in message["clips"]] == ["copy"] * 2
    lines = [x for x in h.log_lines() if x.get("event") == "clip"]
    assert [x["fallback_reason"] for x in lines] == ["engine_error"] * 2


# -- 7. the log-field contract -------------------------------------------------------------


def test_log_lines_carry_the_contract_fields(make_harness, tmp_path):
    video = make_video(tmp_path / "v.mp4", seconds=12, fps=10, width=160, height=120, gop=20)
    h = make_harness(
        FakeSearchApi([Hit(2.0, 4.0, 0.9, SRC)]),
        gcs=FileSources({SRC: video.path}),
        CLIPSEARCH_FETCH_MODE="clip",
    )
    h.deliver("a.jpg", image_bytes())
    h.deliver("a.jpg", image_bytes())  # a duplicate
    lines = h.log_lines()
    by_event: dict[str, list[dict]] = {}
    for line in lines:
        if "event" in line:
            by_event.setdefault(line["event"], []).append(line)
    [outcome] = by_event["outcome"]
    assert outcome["status"] == "success"
    assert set(outcome["timings_ms"]) == {"read", "search", "fetch", "total"}
    assert outcome["attempt"] == 1
    assert outcome["event_id"] == "ev-a.jpg-42"
    [sent] = by_event["search_sent"]
    assert sent["attempt"] == 1
    assert sent["event_id"] == "ev-a.jpg-42"
    [duplicate] = by_event["duplicate"]
    assert duplicate["status"] == "duplicate"
    [clip] = by_event["clip"]
    assert clip["requests"] >= 1
    assert clip["bytes_read"] > 0
    assert clip["clip_bytes"] > 0
    assert clip["clip_ms"] >= 0
    assert clip["event_id"] == "ev-a.jpg-42"
    assert "fallback_reason" not in clip

    retry = make_harness(FakeSearchApi(TransientError("API code 0429: too busy")))
    retry.deliver("b.jpg", image_bytes())
    [line] = [x for x in retry.log_lines() if x.get("event") == "retry"]
    assert line["attempt"] == 1
    assert "0429" in line["message"]


@pytest.mark.parametrize("reason", ["internal_error", "retries_exhausted"])
def test_new_reasons_are_documented(reason):
    text = (Path(__file__).parents[2] / "docs" / "reasons.md").read_text(encoding="utf-8")
    assert f"| `{reason}` |" in text


# -- review of the first cut: each of these failed before its fix ---------------------------


class Killed(BaseException):
    """What an instance killed mid-attempt looks like from the record: nothing after it."""


class Crashing:
    """Makes a step kill the attempt: the store takes no write after the kill (a dead
    process writes nothing, so its lease is never released), then the lease expires."""

    def __init__(self, records: MemoryRecordStore) -> None:
        self.records = records
        self.dead = False
        self.kills = 0
        real = records.replace

        def write(key, record, generation):
            return None if self.dead else real(key, record, generation)

        records.replace = write  # type: ignore[method-assign]

    def kill(self, *args, **kwargs):
        self.kills += 1
        self.dead = True
        raise Killed()

    def deliver(self, h) -> int | None:
        try:
            return h.deliver("a.jpg", image_bytes()).status_code
        except Killed:
            pass
        finally:
            if self.dead:  # the platform's timeout passes: the lease expires, unreleased
                self.dead = False
                record, generation = self.records.records[KEY]
                expired = replace(record, lease_until=time.time() - 1)
                self.records.records[KEY] = (expired, generation)
        return None


@pytest.mark.parametrize(
    ("stage", "kill"),
    [
        ("read", lambda h, c: setattr(h.storage, "read_image", c.kill)),
        ("fetch", lambda h, c: setattr(h.storage, "copy_from_gcs", c.kill)),
    ],
)
def test_attempts_killed_again_and_again_end_as_internal_error(make_harness, stage, kill):
    records = MemoryRecordStore()
    h = make_harness(FakeSearchApi(HITS), records=records, CLIPSEARCH_FETCH_MODE="copy")
    crashing = Crashing(records)
    kill(h, crashing)
    codes = [crashing.deliver(h) for _ in range(5)]
    # Three attempts killed; the fourth ends it without running the stage again; a duplicate.
    assert codes == [None, None, None, 200, 200]
    assert crashing.kills == 3
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "internal_error"
    text = message["error"]["message"]
    assert f"stopped during the {stage} stage" in text
    assert "CLIPSEARCH_MAX_ATTEMPTS" in text
    assert len(h.api.searches) == (1 if stage == "fetch" else 0)
    assert h.records.read(KEY)[0].attempts == 4


def test_attempts_killed_while_publishing_end_bounded_and_the_result_json_says_it(make_harness):
    records = MemoryRecordStore()
    h = make_harness(FakeSearchApi(HITS), records=records, CLIPSEARCH_FETCH_MODE="none")
    crashing = Crashing(records)
    h.publisher.publish = crashing.kill  # type: ignore[method-assign]
    codes = [crashing.deliver(h) for _ in range(5)]
    assert codes == [None, None, None, 200, 200]  # bounded: no fourth publish
    assert crashing.kills == 3
    stored = json.loads(h.storage.objects[RESULT].data)
    assert stored["status"] == "success"
    [line] = [x for x in h.log_lines() if x.get("event") == "outcome"]
    assert line["severity"] == "ERROR"
    assert "stopped during the publish stage" in line["message"]


class RefreshError(Exception):
    """Stands for google.auth's RefreshError: not a declared transient failure."""


def failing_mark_published(records: MemoryRecordStore, times: int) -> dict[str, int]:
    """The publish lands, then recording its message id fails in a way nobody planned."""
    real = records.replace
    state = {"failed": 0}

    def write(key, record, generation):
        if record.message_id is not None and state["failed"] < times:
            state["failed"] += 1
            raise RefreshError("token refresh failed")
        return real(key, record, generation)

    records.replace = write  # type: ignore[method-assign]
    return state


def test_an_outcome_once_stored_is_never_replaced_by_another(make_harness):
    records = MemoryRecordStore()
    h = make_harness(
        FakeSearchApi(HITS),
        records=records,
        CLIPSEARCH_FETCH_MODE="none",
        CLIPSEARCH_MAX_ATTEMPTS="1",
    )
    failing_mark_published(records, times=1)
    assert h.deliver("a.jpg", image_bytes()).status_code == 200  # at the cap: acknowledged
    assert [m["status"] for m in h.messages()] == ["success"]
    assert h.messages("errors") == []
    assert json.loads(h.storage.objects[RESULT].data)["status"] == "success"
    assert h.records.read(KEY)[0].message_id == ""  # ended, no publish confirmed
    assert h.deliver("a.jpg", image_bytes()).status_code == 200  # a duplicate from now on
    assert len(h.messages()) == 1
    assert [x["event"] for x in h.log_lines() if x.get("event") in ("outcome", "duplicate")] == [
        "outcome",
        "duplicate",
    ]


def test_a_stored_outcome_whose_recording_failed_is_published_again_identical(make_harness):
    records = MemoryRecordStore()
    h = make_harness(FakeSearchApi(HITS), records=records, CLIPSEARCH_FETCH_MODE="none")
    failing_mark_published(records, times=1)
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    first, second = h.messages()
    assert first == second  # the documented residual: a second, identical copy
    assert h.messages("errors") == []
    assert len(h.api.searches) == 1


def test_transient_redeliveries_do_not_count_towards_max_attempts(make_harness):
    h = make_harness(
        FakeSearchApi(TransientError("API code 0429"), TransientError("API code 0429"), HITS),
        CLIPSEARCH_FETCH_MODE="copy",
    )
    glitch_once(h)
    codes = [h.deliver("a.jpg", image_bytes()).status_code for _ in range(4)]
    assert codes == [500, 500, 500, 200]  # two 0429s and a glitch: the glitch gets its retry
    assert h.messages("errors") == []
    assert [m["status"] for m in h.messages()] == ["success"]


def test_a_query_failing_transiently_before_its_search_ends_as_retries_exhausted(make_harness):
    h = make_harness(
        FakeSearchApi(TransientError("API code 0429: too busy")),
        CLIPSEARCH_FETCH_MODE="none",
        CLIPSEARCH_MAX_EVENT_AGE_S="600",
    )
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(30)).status_code == 500
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(700)).status_code == 200
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "retries_exhausted"
    assert "API code 0429: too busy" in message["error"]["message"]
    assert h.api.searches == []


def test_a_query_never_attempted_past_the_bound_is_event_too_old(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_MAX_EVENT_AGE_S="600")
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(700)).status_code == 200
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "event_too_old"
    assert h.api.searches == []


def test_a_refused_search_whose_follow_up_fails_is_not_search_unconfirmed(make_harness):
    api = FakeSearchApi(PermanentError(Reason.API_INVALID_REQUEST, "API code 0003"))
    real_metadata = api.video_metadata
    calls = {"n": 0}

    def metadata(video_no, unique_id, deadline):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("get_metadata: HTTP 503")
        return real_metadata(video_no, unique_id, deadline)

    api.video_metadata = metadata  # type: ignore[method-assign]
    h = make_harness(api, CLIPSEARCH_FETCH_MODE="none")
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    assert h.records.read(KEY)[0].search_sent_at is None  # refused: not run, not billed
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "video_not_found"


def test_the_record_never_holds_the_api_key(make_harness):
    h = make_harness(
        FakeSearchApi(
            TransientError(f"API code 0429: busy for {API_KEY}"),
            PermanentError(Reason.API_REJECTED, f"API code 7777: bad key {API_KEY}"),
        ),
        CLIPSEARCH_FETCH_MODE="none",
    )
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    assert API_KEY not in h.records.read(KEY)[0].dumps().decode()
    assert "***" in (h.records.read(KEY)[0].last_error or "")
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    record = h.records.read(KEY)[0]
    assert API_KEY not in record.dumps().decode()
    assert "***" in record.message["error"]["message"]
    assert API_KEY.encode() not in h.storage.objects[RESULT].data


@pytest.mark.parametrize(
    ("name", "metadata"),
    [
        ("\ud800.jpg", {"video_no": "V1", "prompt": "p"}),
        ("a.jpg", {"video_no": "V1", "prompt": "red \udcff shirt"}),
    ],
)
def test_a_forged_event_that_is_not_utf8_is_dropped_not_retried(make_harness, name, metadata):
    h = make_harness(FakeSearchApi(HITS))
    response = h.deliver(name, image_bytes(), metadata, store=False)
    assert response.status_code == 200
    assert h.records.records == {}
    assert h.publisher.messages == []
    assert any("dropping unusable event" in x["message"] for x in h.log_lines())
