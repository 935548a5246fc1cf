"""An emulator outage mid-run: the query still ends in exactly one outcome, searched once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from clipsearch_dev.media import make_video, query_image_bytes
from clipsearch_dev.outcomes import OutcomeCollector
from clipsearch_dev.stack import LocalStack, StackOptions

pytestmark = pytest.mark.e2e
VIDEO_NO = "VI-OUTAGE-01"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    options = StackOptions(
        state_dir=tmp_path_factory.mktemp("outagestack"),
        search_rate_per_s=20.0,
        # The drills deliver their own events for objects under incoming/ in the results
        # bucket, which no trigger watches; the function must take that bucket as its own.
        function_env={
            "CLIPSEARCH_FETCH_MODE": "none",
            "CLIPSEARCH_QUERY_BUCKET": "clipsearch-results",
            "CLIPSEARCH_INCLUDE_PREFIXES": "incoming/",
        },
        gcs_on_disk=True,
    )
    with LocalStack(options) as running:
        yield running


@pytest.fixture(scope="module")
def video_path(stack, tmp_path_factory):
    info = make_video(
        tmp_path_factory.mktemp("outmedia") / "v.mp4", seconds=20, width=160, height=120, gop=20
    )
    stack.upload_video(info.path, VIDEO_NO)
    return info.path


def untriggered_query(stack: LocalStack, video_path, name: str, t: float):
    """A query outside the trigger's bucket: only our own deliveries reach the function."""
    blob = stack.storage.bucket(stack.names.results_bucket).blob(f"incoming/{name}")
    blob.metadata = {"video_no": VIDEO_NO, "prompt": "p"}
    blob.upload_from_string(query_image_bytes(video_path, t), content_type="image/jpeg")
    resource = {
        "bucket": blob.bucket.name,
        "name": blob.name,
        "generation": str(blob.generation),
        "size": str(blob.size),
        "contentType": "image/jpeg",
        "metadata": blob.metadata,
    }
    event = CloudEvent(
        {
            "id": f"outage-{name}",
            "type": "google.cloud.storage.object.v1.finalized",
            "source": "//storage.googleapis.com/projects/_/buckets/x",
        },
        resource,
    )
    headers, body = to_binary(event)
    return (blob.bucket.name, blob.name, str(blob.generation)), headers, body


def test_cloud_storage_down_then_back(stack, video_path):
    key, headers, body = untriggered_query(stack, video_path, "gcs-outage.jpg", 5.0)
    assert stack.gcs is not None
    assert stack.standin is not None
    billed = stack.standin.stats.billed_searches
    stack.gcs.stop()
    try:
        down = requests.post(stack.function_url, headers=headers, data=body, timeout=120)
    finally:
        stack.restart_gcs()
    assert down.status_code == 500  # nothing could be read or recorded: redeliver later
    assert stack.standin.stats.billed_searches == billed  # and nothing was searched blind
    with OutcomeCollector(
        [stack.names.results_subscription, stack.names.errors_subscription]
    ) as collector:
        again = requests.post(stack.function_url, headers=headers, data=body, timeout=120)
        assert again.status_code == 200
        received = collector.wait_for([key], timeout_s=30)[key]
        collector.settle(3)
        assert len(collector.for_key(key)) == 1
    assert received.body["status"] == "success"
    assert stack.standin.stats.billed_searches == billed + 1


def test_pubsub_down_while_publishing_then_back(stack, video_path):
    key, headers, body = untriggered_query(stack, video_path, "pubsub-outage.jpg", 8.0)
    assert stack.standin is not None
    billed = stack.standin.stats.billed_searches
    assert stack.pubsub is not None
    assert stack.standin is not None
    stack.pubsub.stop()
    try:
        down = requests.post(stack.function_url, headers=headers, data=body, timeout=120)
    finally:
        stack.restart_pubsub()
    assert down.status_code == 500  # publishing failed: the trigger must redeliver
    assert stack.standin.stats.billed_searches == billed + 1  # ...the search is recorded
    with OutcomeCollector(
        [stack.names.results_subscription, stack.names.errors_subscription]
    ) as collector:
        again = requests.post(stack.function_url, headers=headers, data=body, timeout=120)
        assert again.status_code == 200
        received = collector.wait_for([key], timeout_s=30)[key]
        collector.settle(3)
        assert len(collector.for_key(key)) == 1
    assert received.body["status"] == "success"
    assert stack.standin.stats.billed_searches == billed + 1  # from the record: no new search
