"""The deployed entry point end to end in-process: event in, one outcome (or a retry) out."""

from __future__ import annotations

import json

import pytest

from clipsearch.errors import PermanentError, Reason, TransientError
from clipsearch.model import Hit, SourceVideo, VideoMetadata
from tests.fakes import FakeSearchApi
from tests.functional.conftest import API_KEY
from tests.images import image_bytes

SRC = SourceVideo("mavi-resource", "V1.mp4")
HITS = [Hit(42.0, 47.8, 0.81, SRC), Hit(12.5, 18.2, 0.86, SRC)]


def test_success_publishes_one_ranked_message_and_writes_the_same_json(make_harness):
    h = make_harness(FakeSearchApi(sorted(HITS, key=lambda x: -x.score)))
    h.storage.put("mavi-resource", "V1.mp4", b"video-bytes", generation=5)
    response = h.deliver("shots/a.jpg", image_bytes())
    assert response.status_code == 200
    [message] = h.messages("results")
    assert h.messages("errors") == []
    assert message["status"] == "success"
    assert message["schema_version"] == 1
    assert message["query"] == {
        "bucket": "queries",
        "object": "shots/a.jpg",
        "generation": "42",
        "video_no": "V1",
        "prompt": "red shirt",
        "unique_id": "default",
        "event_id": "ev-shots/a.jpg-42",
    }
    assert [(c["rank"], c["start_time"], c["score"]) for c in message["clips"]] == [
        (1, 12.5, 0.86),
        (2, 42.0, 0.81),
    ]
    artifact = message["clips"][0]["artifact"]
    assert artifact["uri"] == "gs://results/clipsearch/videos/mavi-resource/V1.mp4"
    assert message["clips"][1]["artifact"]["uri"] == artifact["uri"]
    assert h.storage.copies == 1  # one copy per distinct source video
    assert set(message["timings_ms"]) == {"read", "search", "fetch", "total"}
    stored = h.storage.objects[("results", "clipsearch/results/queries/shots/a.jpg/42.json")]
    assert json.loads(stored.data) == message
    assert message["result_uri"] == "gs://results/clipsearch/results/queries/shots/a.jpg/42.json"
    attrs = h.publisher.messages[0].attributes
    assert attrs == {
        "schema_version": "1",
        "status": "success",
        "video_no": "V1",
        "query_bucket": "queries",
        "query_object": "shots/a.jpg",
        "generation": "42",
        "clip_count": "2",
    }
    [(_, image)] = h.api.searches
    assert image == image_bytes()


def test_second_query_on_same_video_reuses_the_copy(make_harness):
    h = make_harness(FakeSearchApi(HITS))
    h.storage.put("mavi-resource", "V1.mp4", b"video-bytes", generation=5)
    h.deliver("a.jpg", image_bytes())
    h.deliver("b.jpg", image_bytes())
    assert h.storage.copies == 1
    assert [m["clips"][0]["artifact"]["reused"] for m in h.messages()] == [False, True]


def test_unreadable_source_is_streamed_from_the_download_endpoint(make_harness):
    api = FakeSearchApi(HITS)
    api.downloads[SRC] = b"downloaded-video"
    h = make_harness(api)
    h.storage.readable_sources = False
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    assert message["clips"][0]["artifact"]["size"] == len(b"downloaded-video")
    assert h.storage.uploads == 1
    h.deliver("b.jpg", image_bytes())
    assert h.storage.uploads == 1  # an identical copy is already there


def test_fetch_mode_none_only_references(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="none")
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    assert [c["artifact"] for c in message["clips"]] == [None, None]
    assert message["clips"][0]["source"]["uri"] == "gs://mavi-resource/V1.mp4"


def test_hits_without_location_are_resolved_through_video_metadata(make_harness):
    api = FakeSearchApi([Hit(1, 3, 0.9, None), Hit(5, 8, 0.5, None)])
    api.metadata["V1"] = VideoMetadata("V1", "PARSE", 60.0, SRC)
    h = make_harness(api, CLIPSEARCH_FETCH_MODE="none")
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    assert [c["source"]["blob"] for c in message["clips"]] == ["V1.mp4", "V1.mp4"]
    assert api.metadata_calls == 1


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (SourceVideo("someone-elses-bucket", "V1.mp4"), "not allowlisted"),
        (SourceVideo("mavi-resource", "../../etc/passwd"), "unsafe"),
    ],
)
def test_foreign_or_hostile_sources_are_not_fetched(make_harness, source, error):
    h = make_harness(FakeSearchApi([Hit(1, 3, 0.9, source)]))
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    assert message["status"] == "success"
    assert message["clips"][0]["artifact"] is None
    assert error in message["clips"][0]["fetch_error"]
    assert not any(name.startswith("clipsearch/videos") for _, name in h.storage.objects)


BAD_INPUTS = [
    ("a.jpg", image_bytes(), {"prompt": "p"}, "image/jpeg", Reason.MISSING_VIDEO_NO),
    ("a.jpg", image_bytes(), {"video_no": "V1"}, "image/jpeg", Reason.MISSING_PROMPT),
    (
        "a.jpg",
        image_bytes(),
        {"video_no": "V1", "prompt": " "},
        "image/jpeg",
        Reason.MISSING_PROMPT,
    ),
    ("a.tif", image_bytes(), None, "image/tiff", Reason.UNSUPPORTED_EXTENSION),
    ("a.jpg", image_bytes(), None, "text/plain", Reason.UNSUPPORTED_CONTENT_TYPE),
    ("a.jpg", b"", None, "image/jpeg", Reason.EMPTY_IMAGE),
    ("a.jpg", b"hello, not an image", None, "image/jpeg", Reason.NOT_AN_IMAGE),
    ("a.jpg", image_bytes("png"), None, "image/jpeg", Reason.IMAGE_TYPE_MISMATCH),
    ("a.png", image_bytes("png")[:-30], None, "image/png", Reason.TRUNCATED_IMAGE),
]


@pytest.mark.parametrize(("name", "data", "metadata", "content_type", "reason"), BAD_INPUTS)
def test_bad_input_ends_in_one_error_outcome_and_no_search(
    make_harness, name, data, metadata, content_type, reason
):
    h = make_harness(FakeSearchApi(HITS))
    response = h.deliver(name, data, metadata, content_type=content_type)
    assert response.status_code == 200  # acknowledged: retrying cannot help
    [message] = h.messages("errors")
    assert h.messages("results") == []
    assert message["status"] == "error"
    assert message["error"]["reason"] == reason.value
    assert message["error"]["message"]
    assert h.publisher.messages[0].attributes["reason"] == reason.value
    assert h.api.searches == []


def test_oversized_image_is_refused_from_the_event_alone(make_harness):
    h = make_harness(FakeSearchApi(HITS))
    h.deliver("a.jpg", image_bytes(), size=20 * 1024 * 1024 + 1, store=False)
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "image_too_large"


def test_object_replaced_or_deleted_before_reading_is_object_gone(make_harness):
    h = make_harness(FakeSearchApi(HITS))
    h.storage.put("queries", "a.jpg", image_bytes(), generation=43)  # a newer generation
    h.deliver("a.jpg", image_bytes(), store=False, generation=42)
    [message] = h.messages("errors")
    assert message["error"]["reason"] == "object_gone"


@pytest.mark.parametrize(
    ("reason", "severity"),
    [
        (Reason.API_UNAUTHORIZED, "ALERT"),
        (Reason.API_INSUFFICIENT_CREDITS, "ALERT"),
        (Reason.API_ACCOUNT_DISABLED, "ALERT"),
        (Reason.API_PERMISSION_DENIED, "WARNING"),
        (Reason.API_INVALID_REQUEST, "WARNING"),
        (Reason.API_REJECTED, "WARNING"),
    ],
)
def test_permanent_api_refusals_end_in_an_error_outcome(make_harness, reason, severity):
    api = FakeSearchApi(PermanentError(reason, f"API code: {reason}"))
    api.metadata["V1"] = VideoMetadata("V1", "PARSE", 60.0, SRC)  # nothing to refine
    h = make_harness(api)
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [message] = h.messages("errors")
    assert message["error"]["reason"] == reason.value
    [line] = [x for x in h.log_lines() if x.get("status") == "error"]
    assert line["severity"] == severity
    assert line["reason"] == reason.value
    assert line["event_id"] == "ev-a.jpg-42"
    assert line["logging.googleapis.com/trace"] == (
        "projects/p/traces/0af7651916cd43dd8448eb211c80319c"
    )


def test_transient_failure_returns_500_and_publishes_nothing(make_harness):
    h = make_harness(FakeSearchApi(TransientError("API code 0429: too busy")))
    response = h.deliver("a.jpg", image_bytes())
    assert response.status_code == 500  # the trigger redelivers
    assert h.publisher.messages == []


def test_publish_failure_is_transient(make_harness):
    h = make_harness(FakeSearchApi(HITS))
    h.publisher.fail_with = TransientError("publishing: ServiceUnavailable")
    assert h.deliver("a.jpg", image_bytes()).status_code == 500


def test_out_of_scope_objects_are_skipped_with_a_log_line(make_harness):
    h = make_harness(FakeSearchApi(HITS), CLIPSEARCH_INCLUDE_PREFIXES="in/")
    assert h.deliver("elsewhere/a.jpg", image_bytes()).status_code == 200
    assert h.publisher.messages == []
    assert h.api.searches == []
    assert any("outside the configured prefixes" in x["message"] for x in h.log_lines())


def test_non_finalize_event_is_dropped(make_harness):
    h = make_harness(FakeSearchApi(HITS))
    response = h.deliver(
        "a.jpg", image_bytes(), event_type="google.cloud.storage.object.v1.deleted"
    )
    assert response.status_code == 200
    assert h.publisher.messages == []


def test_the_key_never_appears_in_logs_or_messages(make_harness):
    leaky = PermanentError(Reason.API_UNAUTHORIZED, f"echoed header Authorization: {API_KEY}")
    h = make_harness(FakeSearchApi(leaky))
    h.deliver("a.jpg", image_bytes())
    assert API_KEY not in h.log.getvalue()
    assert "***" in h.log.getvalue()
    # Messages carry the API's words; the key can only get there if the API echoed it, and
    # that is redacted from logs; the message body must still not carry it.
    for m in h.publisher.messages:
        assert API_KEY.encode() not in m.data
