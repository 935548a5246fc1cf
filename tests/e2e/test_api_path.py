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


REPLACED_NO = "VI-E2E-API-0002"


def frame_codes(stack: LocalStack, uri: str) -> list[int]:
    bucket, name = uri.removeprefix("gs://").split("/", 1)
    data = stack.storage.bucket(bucket).blob(name).download_as_bytes()
    with av.open(io.BytesIO(data)) as container:
        return [read_frame_code(f.to_image()) for f in container.decode(video=0)]


def test_a_source_replaced_at_the_vendor_yields_clips_from_the_new_file(
    stack, collector, tmp_path_factory
):
    media = tmp_path_factory.mktemp("replaced")
    old = make_video(media / "old.mp4", seconds=30, gop=20)
    new = make_video(media / "new.mp4", seconds=50, gop=20)
    stack.upload_video(old.path, REPLACED_NO)
    stats = stack.standin.stats

    def ask(name: str, video: VideoInfo, t: float) -> dict:
        generation = stack.drop_query(
            name, query_image_bytes(video.path, t), {"video_no": REPLACED_NO, "prompt": "this"}
        )
        key = (stack.names.query_bucket, name, str(generation))
        body = collector.wait_for([key], timeout_s=120)[key].body
        assert body["status"] == "success", body
        assert body["clips"][0]["artifact"]["mode"] == "clip"
        return body

    downloads = stats.requests.get("download", 0)
    first = ask("replaced/old-1.jpg", old, 12.0)
    steady = ask("replaced/old-2.jpg", old, 20.0)
    assert stats.requests.get("download", 0) == downloads + 1  # one copy; the steady query: 0
    stack.storage.bucket(stack.names.source_bucket).blob("staging/new.mp4").upload_from_filename(
        str(new.path)
    )
    stack.standin.replace_video(REPLACED_NO, stack.names.source_bucket, "staging/new.mp4")
    after = ask("replaced/new-1.jpg", new, 44.0)  # past the old file's end: only the new has it
    assert stats.requests.get("download", 0) == downloads + 2
    top = after["clips"][0]["artifact"]
    assert math.floor(44.0 * new.fps + 1e-9) in frame_codes(stack, top["uri"])
    versions = {
        body["clips"][0]["artifact"]["uri"].rsplit("/", 2)[1] for body in (first, steady, after)
    }
    assert len(versions) == 2  # clips of the new file are named by a new version
    copy = stack.storage.bucket(stack.names.results_bucket).get_blob(
        f"clipsearch/videos/{stack.names.source_bucket}/{REPLACED_NO}.mp4"
    )
    assert copy.download_as_bytes() == new.path.read_bytes()
    lines = {
        e["object"].rsplit("/", 1)[-1]: e
        for e in outcome_lines(stack)
        if "replaced/" in e.get("object", "")
    }
    spent = [
        (lines[n]["vendor_requests"], lines[n]["vendor_metadata_calls"])
        for n in ("old-1.jpg", "old-2.jpg", "new-1.jpg")
    ]
    # Downloads: the first copy, none in the steady state, the new copy. One metadata call each.
    assert spent == [(1, 1), (0, 1), (1, 1)]
