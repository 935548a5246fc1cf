"""Google's own published storage events, replayed through the real functions-framework app.

The payloads are in tests/fixtures/google-samples/ (SOURCES.md: repository, path, commit).
Each is delivered as a binary-mode and as a structured-mode CloudEvent (background-event
samples as published: the framework converts them). The function is configured with the
sample's own bucket as its query bucket, and the event-age cap is lifted so that the content,
not the 2020 timestamp, decides (one test below keeps the cap). Each case names the outcome its
content deserves; none may answer 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from tests.fakes import FakeSearchApi
from tests.functional.conftest import Harness
from tests.images import image_bytes

SAMPLES = Path(__file__).parents[1] / "fixtures" / "google-samples"
FINALIZED = "google.cloud.storage.object.v1.finalized"
NO_AGE_CAP = {"CLIPSEARCH_MAX_EVENT_AGE_S": str(10 * 365 * 86400)}
OURS = {"video_no": "V1", "prompt": "red shirt, left of the door"}


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    return loaded


def cloud_event(name: str) -> CloudEvent:
    """The sample as a CloudEvent, built the way its source builds (or describes) it."""
    raw = sample(name)
    if name.startswith("google-cloudevents."):  # StorageObjectData: the event's data only
        attributes = {
            "id": f"sample-{name}",
            "type": FINALIZED,
            "source": f"//storage.googleapis.com/projects/_/buckets/{raw['bucket']}",
            "subject": f"objects/{raw['name']}",
        }
        return CloudEvent(attributes, raw)
    if name.startswith("python-docs-samples."):
        return CloudEvent(raw["attributes"], raw["data"])
    event = dict(raw)
    data = event.pop("data")
    return CloudEvent(event, data)


def bucket_of(name: str) -> str:
    raw = sample(name)
    data = raw.get("data", raw)
    return str(data["bucket"])


def post(h: Harness, event: CloudEvent, mode: str) -> Any:
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return h.client.post("/", headers=headers, data=body)


def outcomes(h: Harness) -> list[dict[str, Any]]:
    return h.messages("results") + h.messages("errors")


# (fixture, outcome it deserves, why)
CLOUDEVENT_SAMPLES = [
    (
        "google-cloudevents.StorageObjectData-complex.json",
        "missing_video_no",
        "empty custom metadata; numeric generation/size, gzip encoding and holds parse fine",
    ),
    (
        "google-cloudevents.StorageObjectDataWorkflows-simple.json",
        "missing_video_no",
        "a text file with no custom metadata",
    ),
    (
        "functions-framework-conformance.storage-cloudevent-input.json",
        "missing_video_no",
        "folder/Test.cs, no custom metadata",
    ),
    (
        "python-docs-samples.functions-v2-storage-main_test.json",
        "missing_video_no",
        "no size, no contentType, no metadata: refused for the metadata, not as empty_image",
    ),
    (
        "python-docs-samples.functions-v2-ocr-main_test.json",
        "skipped",
        "no generation: no bucket/object/generation key to answer under, dropped with a log line",
    ),
]


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize(
    ("name", "deserved", "why"), CLOUDEVENT_SAMPLES, ids=[c[0] for c in CLOUDEVENT_SAMPLES]
)
def test_each_published_sample_ends_in_the_outcome_it_deserves(
    make_harness: Callable[..., Harness], name: str, deserved: str, why: str, mode: str
) -> None:
    h = make_harness(FakeSearchApi([]), CLIPSEARCH_QUERY_BUCKET=bucket_of(name), **NO_AGE_CAP)
    response = post(h, cloud_event(name), mode)
    assert response.status_code == 200, (why, response.data[:300])
    published = outcomes(h)
    if deserved == "skipped":
        assert published == [], why
        assert any("dropping unusable event" in line["message"] for line in h.log_lines())
    else:
        [message] = published
        assert message["status"] == "error"
        assert message["error"]["reason"] == deserved, (why, message["error"])
        assert message["query"]["bucket"] == bucket_of(name)
    assert h.api.searches == []  # nothing here is worth a search


LEGACY_SAMPLES = [
    (
        "functions-framework-conformance.storage-legacy-input.json",
        "missing_video_no",
        "google.storage.object.finalize, converted by the framework; no custom metadata",
    ),
    (
        "functions-framework-conformance.legacy_storage_change-legacy-input.json",
        "missing_video_no",
        "object.change (resourceState not_exists) arrives as finalized; no custom metadata",
    ),
]


@pytest.mark.parametrize(
    ("name", "deserved", "why"), LEGACY_SAMPLES, ids=[c[0] for c in LEGACY_SAMPLES]
)
def test_background_event_samples_are_converted_and_answered(
    make_harness: Callable[..., Harness], name: str, deserved: str, why: str
) -> None:
    h = make_harness(FakeSearchApi([]), CLIPSEARCH_QUERY_BUCKET=bucket_of(name), **NO_AGE_CAP)
    response = h.client.post("/", json=sample(name))
    assert response.status_code == 200, (why, response.data[:300])
    [message] = outcomes(h)
    assert message["error"]["reason"] == deserved, (why, message["error"])
    assert message["query"]["event_id"] == "aaaaaa-1111-bbbb-2222-cccccccccccc"


def test_a_2020_sample_with_the_age_cap_kept_is_too_old(make_harness):
    name = "functions-framework-conformance.storage-cloudevent-input.json"
    h = make_harness(FakeSearchApi([]), CLIPSEARCH_QUERY_BUCKET="some-bucket")
    assert post(h, cloud_event(name), "binary").status_code == 200
    [message] = outcomes(h)
    assert message["error"]["reason"] == "event_too_old"


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (OURS, "V1"),
        ({f"x-goog-meta-{k}": v for k, v in OURS.items()}, "V1"),  # gcloud with gsutil's prefix
    ],
    ids=["plain-keys", "x-goog-meta-keys"],
)
def test_the_sizeless_docs_sample_with_our_metadata_is_searched(
    make_harness, mode, metadata, expected
):
    """Derived from the python-docs-samples event (no `size`): name, contentType and our
    metadata added, the image stored under its generation. It deserves a search and success."""
    raw = sample("python-docs-samples.functions-v2-storage-main_test.json")
    data = {
        **raw["data"],
        "name": "new_blob_uploaded.jpg",
        "contentType": "image/jpeg",
        "metadata": metadata,
    }
    assert "size" not in data
    h = make_harness(FakeSearchApi([]), CLIPSEARCH_QUERY_BUCKET=data["bucket"], **NO_AGE_CAP)
    h.storage.put(data["bucket"], data["name"], image_bytes(), data["generation"])
    response = post(h, CloudEvent(raw["attributes"], data), mode)
    assert response.status_code == 200
    [message] = outcomes(h)
    assert (message["status"], message["query"]["video_no"]) == ("success", expected)
    assert message["query"]["prompt"] == OURS["prompt"]
    assert [image for _, image in h.api.searches] == [image_bytes()]


def test_the_sizeless_docs_sample_naming_an_empty_object_is_empty_image(make_harness):
    """Without `size` in the event the read decides: a zero-byte object is empty_image."""
    raw = sample("python-docs-samples.functions-v2-storage-main_test.json")
    data = {**raw["data"], "name": "empty.jpg", "contentType": "image/jpeg", "metadata": OURS}
    h = make_harness(FakeSearchApi([]), CLIPSEARCH_QUERY_BUCKET=data["bucket"], **NO_AGE_CAP)
    h.storage.put(data["bucket"], data["name"], b"", data["generation"])
    assert post(h, CloudEvent(raw["attributes"], data), "binary").status_code == 200
    [message] = outcomes(h)
    assert message["error"]["reason"] == "empty_image"
    assert h.api.searches == []
