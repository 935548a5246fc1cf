"""Never lose a query, never pay twice: idempotency, time budgets and refined API refusals,
through the real app with in-memory fakes (the emulator versions live in tests/e2e)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from clipsearch.errors import PermanentError, Reason, TransientError
from clipsearch.idempotency import Record
from clipsearch.model import Hit, SourceVideo, VideoMetadata
from tests.fakes import FakeSearchApi, MemoryRecordStore
from tests.images import image_bytes

SRC = SourceVideo("mavi-resource", "V1.mp4")
HITS = [Hit(12.5, 18.2, 0.86, SRC)]
KEY = "queries/a.jpg#42"


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_sequential_duplicates_search_once_and_publish_once(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="none")
    statuses = [h.deliver("a.jpg", image_bytes()).status_code for _ in range(10)]
    assert statuses == [200] * 10
    assert len(h.api.searches) == 1
    assert len(h.messages()) == 1


def test_concurrent_duplicates_search_once_then_settle_to_one_message(make_harness):
    api = FakeSearchApi(HITS)
    slow = threading.Event()
    original = api.search

    def slow_search(query, image, deadline, before_send=None):
        slow.wait(0.3)  # keep the first attempt in flight while the others arrive
        return original(query, image, deadline, before_send)

    api.search = slow_search  # type: ignore[method-assign]
    h = make_harness(api, CLIPSEARCH_FETCH_MODE="none")
    codes: list[int] = []
    lock = threading.Lock()

    def deliver() -> None:
        code = h.deliver("a.jpg", image_bytes()).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(200) >= 1
    assert set(codes) <= {200, 500}  # 500: "in progress elsewhere", redelivered later
    # The trigger redelivers the refused ones: they now find the outcome and acknowledge.
    assert all(h.deliver("a.jpg", image_bytes()).status_code == 200 for _ in codes)
    assert len(api.searches) == 1
    assert len(h.messages()) == 1


def test_a_stored_outcome_is_published_without_searching_again(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="none")
    h.publisher.fail_with = TransientError("publishing: ServiceUnavailable")
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    record, _ = h.records.read(KEY)
    assert record.message is not None
    assert record.message_id is None
    assert record.lease_until == 0.0  # released: the redelivery need not wait for the lease
    h.publisher.fail_with = None
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    assert len(h.api.searches) == 1
    [message] = h.messages()
    assert message["status"] == "success"
    assert h.records.read(KEY)[0].message_id == "1"


def test_stored_hits_are_reused_after_a_failed_fetch(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="copy")
    # The source is not there yet: GCS says no, the download route fails transiently.
    api = h.api
    calls = {"n": 0}

    def flaky_download(source, deadline):
        calls["n"] += 1
        raise TransientError("download: 503")

    api.open_download = flaky_download  # type: ignore[method-assign]
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    assert h.records.read(KEY)[0].hits is not None
    h.storage.put("mavi-resource", "V1.mp4", b"video", generation=3)
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    assert len(api.searches) == 1
    [message] = h.messages()
    assert message["clips"][0]["artifact"]["mode"] == "copy"


def test_a_live_lease_is_respected_and_an_expired_one_taken_over(make_harness):
    records = MemoryRecordStore()
    records.create(KEY, Record(lease_until=time.time() + 1000))  # a crashed attempt's lease
    h = make_harness(FakeSearchApi(HITS), records=records, CLIPSEARCH_FETCH_MODE="none")
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    assert h.api.searches == []
    _record, generation = records.read(KEY)
    records.replace(KEY, Record(lease_until=time.time() - 1), generation)  # it expires
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    assert len(h.api.searches) == 1
    assert records.read(KEY)[0].attempts == 2


def test_transient_failure_releases_the_lease(make_harness):
    h = make_harness(
        FakeSearchApi(TransientError("API code 0429"), HITS), CLIPSEARCH_FETCH_MODE="none"
    )
    assert h.deliver("a.jpg", image_bytes()).status_code == 500
    assert h.records.read(KEY)[0].lease_until == 0.0
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    assert len(h.messages()) == 1


def test_events_older_than_the_limit_end_in_event_too_old_without_a_search(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_MAX_EVENT_AGE_S="600")
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(601)).status_code == 200
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "event_too_old"
    assert h.api.searches == []


def test_unknown_video_is_video_not_found(make_harness):
    h = make_harness(FakeSearchApi(PermanentError(Reason.API_INVALID_REQUEST, "0001: no")))
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "video_not_found"


def test_video_still_indexing_is_retried_within_the_window_then_reported(make_harness):
    api = FakeSearchApi(PermanentError(Reason.API_INVALID_REQUEST, "0001: not parsed"))
    api.metadata["V1"] = VideoMetadata("V1", "UNPARSE", None, SRC)
    h = make_harness(api, CLIPSEARCH_UNINDEXED_WINDOW_S="600")
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(10)).status_code == 500
    assert h.publisher.messages == []
    assert h.deliver("a.jpg", image_bytes(), event_time=ago(700)).status_code == 200
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "video_not_indexed"


def test_video_that_failed_indexing_is_video_parse_error(make_harness):
    api = FakeSearchApi(PermanentError(Reason.API_INVALID_REQUEST, "0001: not parsed"))
    api.metadata["V1"] = VideoMetadata("V1", "PARSE_ERROR", None, SRC)
    h = make_harness(api)
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "video_parse_error"


def test_copy_over_the_per_query_byte_cap_is_refused_per_clip(make_harness):
    h = make_harness(
        FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="copy", CLIPSEARCH_MAX_FETCH_BYTES="4"
    )
    h.storage.put("mavi-resource", "V1.mp4", b"video-bytes", generation=3)
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    assert message["clips"][0]["artifact"] is None
    assert "fetch cap" in message["clips"][0]["fetch_error"]
