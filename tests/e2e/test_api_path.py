"""The production path end to end: sources only through the vendor's download endpoint
(`CLIPSEARCH_FETCH_SOURCE=api`), under each reading of what that endpoint honours."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator

import av
import pytest

from clipsearch.contract import validate_message
from clipsearch_dev.media import VideoInfo, make_video, query_image_bytes, read_frame_code
from clipsearch_dev.stack import LOCAL_API_KEY, LocalStack, StackOptions

pytestmark = pytest.mark.e2e
VIDEO_NO = "VI-E2E-API-0001"


@pytest.fixture(scope="module", params=["default", "range-ignored", "chunked"])
def stack(request, tmp_path_factory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp(f"devstack-{request.param}")
    options = StackOptions(
        state_dir=state,
        function_env={
            "CLIPSEARCH_FETCH_SOURCE": "api",
            "CLIPSEARCH_RETRY_ATTEMPTS": "2",
            "CLIPSEARCH_RETRY_BUDGET_S": "5",
        },
        retry_min_backoff_s=1,
        retry_max_backoff_s=2,
        standin_profile=request.param,
    )
    with LocalStack(options) as running:
        yield running


@pytest.fixture(scope="module")
def video(stack, tmp_path_factory) -> VideoInfo:
    info = make_video(tmp_path_factory.mktemp("media") / "v.mp4", seconds=60, gop=20)
    stack.upload_video(info.path, VIDEO_NO)
    return info


def outcome_lines(stack: LocalStack) -> list[dict]:
    lines = (stack.options.state_dir / "function.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in entries if e.get("event") == "outcome"]


def test_clips_are_cut_from_one_download_of_the_source(stack, video, collector):
    times = [3.2, 21.0, 44.7, 58.1]
    keys = []
    for t in times:
        name = f"api/at-{t}.jpg"
        generation = stack.drop_query(
            name, query_image_bytes(video.path, t), {"video_no": VIDEO_NO, "prompt": "this"}
        )
        keys.append((stack.names.query_bucket, name, str(generation)))
    outcomes = collector.wait_for(keys, timeout_s=120)
    source_size = stack.storage.bucket("mavi-resource").get_blob(f"{VIDEO_NO}.mp4").size
    for key, t in zip(keys, times, strict=True):
        received = outcomes[key]
        validate_message(received.wire)
        body = received.body
        assert body["status"] == "success", body
        top = body["clips"][0]
        artifact = top["artifact"]
        assert artifact["mode"] == "clip"  # never downgraded to a whole-video copy
        assert top["fallback_reason"] is None
        bucket, name = artifact["uri"].removeprefix("gs://").split("/", 1)
        data = stack.storage.bucket(bucket).blob(name).download_as_bytes()
        assert len(data) < source_size / 4
        with av.open(io.BytesIO(data)) as container:
            codes = [read_frame_code(f.to_image()) for f in container.decode(video=0)]
        assert math.floor(t * video.fps + 1e-9) in codes
    # One vendor download request for the source, its bytes billed once, whatever the profile.
    assert stack.standin.stats.requests.get("download") == 1
    assert stack.standin.stats.download_bytes == source_size
    lines = outcome_lines(stack)
    assert len(lines) == len(times)
    assert sum(e["vendor_requests"] for e in lines) == 1
    assert sum(e["vendor_bytes"] for e in lines) == source_size
    assert LOCAL_API_KEY not in (stack.options.state_dir / "function.log").read_text()
