"""End to end on the local stack: upload to fake-gcs-server → notification → bridge →
function (real functions-framework server) → stand-in → message pulled from the emulator."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from clipsearch.contract import validate_message
from clipsearch_dev.media import VideoInfo, make_video, query_image_bytes, read_frame_code
from clipsearch_dev.stack import LOCAL_API_KEY, LocalStack, StackOptions

pytestmark = pytest.mark.e2e
VIDEO_NO = "VI-E2E-0001"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("devstack")
    options = StackOptions(
        state_dir=state,
        function_env={"CLIPSEARCH_RETRY_ATTEMPTS": "2", "CLIPSEARCH_RETRY_BUDGET_S": "5"},
        retry_min_backoff_s=1,
        retry_max_backoff_s=2,
    )
    with LocalStack(options) as running:
        yield running


@pytest.fixture(scope="module")
def video(stack, tmp_path_factory) -> VideoInfo:
    info = make_video(tmp_path_factory.mktemp("media") / "v.mp4", seconds=60, gop=20)
    stack.upload_video(info.path, VIDEO_NO)
    return info


def drop(stack: LocalStack, name: str, data: bytes, **metadata: str) -> tuple[str, str, str]:
    generation = stack.drop_query(name, data, metadata)
    return (stack.names.query_bucket, name, str(generation))


def test_top_clip_contains_the_query_frame(stack, video, collector):
    times = [3.2, 21.0, 44.7, 58.1]
    keys = [
        drop(
            stack,
            f"e2e/at-{t}.jpg",
            query_image_bytes(video.path, t),
            video_no=VIDEO_NO,
            prompt="this moment",
        )
        for t in times
    ]
    outcomes = collector.wait_for(keys, timeout_s=90)
    source_size = stack.storage.bucket("mavi-resource").get_blob(f"{VIDEO_NO}.mp4").size
    for key, t in zip(keys, times, strict=True):
        received = outcomes[key]
        body = received.body
        validate_message(received.wire)
        assert received.subscription == stack.names.results_subscription
        assert body["status"] == "success"
        top = body["clips"][0]
        assert top["start_time"] <= t <= top["end_time"], (t, top)
        assert received.attributes["status"] == "success"
        assert received.attributes["clip_count"] == str(len(body["clips"]))
        artifact = top["artifact"]
        assert artifact["mode"] == "clip"
        bucket, name = artifact["uri"].removeprefix("gs://").split("/", 1)
        data = stack.storage.bucket(bucket).blob(name).download_as_bytes()
        assert len(data) < source_size / 4  # only the matching seconds
        # The clip shows the very frame the query image was taken from.
        with av.open(io.BytesIO(data)) as container:
            codes = [read_frame_code(f.to_image()) for f in container.decode(video=0)]
        assert math.floor(t * video.fps + 1e-9) in codes
        assert artifact["start_time"] <= t <= artifact["end_time"]
        poster_bucket, poster = artifact["poster_uri"].removeprefix("gs://").split("/", 1)
        assert (
            stack.storage.bucket(poster_bucket).blob(poster).download_as_bytes()[:2] == b"\xff\xd8"
        )
        result_bucket, result_name = body["result_uri"].removeprefix("gs://").split("/", 1)
        stored = stack.storage.bucket(result_bucket).blob(result_name).download_as_bytes()
        assert json.loads(stored) == body
    sidecars = list(
        stack.storage.bucket(stack.names.results_bucket).list_blobs(prefix="clipsearch/index/")
    )
    assert len(sidecars) == 1  # one index for the one source video, shared by all queries


def test_bad_input_ends_in_one_error_outcome(stack, video, collector):
    key = drop(stack, "e2e/no-video.jpg", query_image_bytes(video.path, 1.0), prompt="p")
    received = collector.wait_for([key], timeout_s=60)[key]
    assert received.subscription == stack.names.errors_subscription
    validate_message(received.wire)
    assert received.body["error"]["reason"] == "missing_video_no"
    assert received.attributes["reason"] == "missing_video_no"
    collector.settle(2)
    assert len(collector.for_key(key)) == 1


def test_transient_failures_are_redelivered_until_they_succeed(stack, video, collector):
    assert stack.standin is not None
    # More failures than the function's own 2 attempts: the event must come back.
    stack.standin.knobs.merge({"fail_next": [503, 503, 503]})
    before = stack.bridge.deliveries["500"] if stack.bridge else 0
    key = drop(
        stack,
        "e2e/after-outage.jpg",
        query_image_bytes(video.path, 30.0),
        video_no=VIDEO_NO,
        prompt="p",
    )
    received = collector.wait_for([key], timeout_s=90)[key]
    assert received.body["status"] == "success"
    assert stack.bridge is not None
    assert stack.bridge.deliveries["500"] > before
    collector.settle(2)
    assert len(collector.for_key(key)) == 1


def test_outputs_never_trigger_the_function(stack, video, collector):
    stack.storage.bucket(stack.names.results_bucket).blob("clipsearch/x.jpg").upload_from_string(
        query_image_bytes(video.path, 1.0), content_type="image/jpeg"
    )
    collector.settle(2)
    assert not [r for r in collector.received if r.body["query"]["object"] == "clipsearch/x.jpg"]


def test_env_file_lets_another_process_drop_and_read(stack, video):
    env_file = stack.options.state_dir / "env"
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines()
    )
    assert exported["CLIPSEARCH_QUERY_BUCKET"] == stack.names.query_bucket
    assert exported["PUBSUB_EMULATOR_HOST"].startswith("127.0.0.1:")
    # A separate process, configured only by `source .devstack/env`, drops and reads back.
    script = (
        f"source {env_file} && exec {sys.executable} -m clipsearch_dev.drop "
        f"{video.path} 12 --video-no {VIDEO_NO} --timeout 60"
    )
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.endswith("EMULATOR_HOST")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["clips"][0]["start_time"] <= 12 <= body["clips"][0]["end_time"]


def test_function_logs_are_json_and_never_hold_the_key(stack, video):
    lines = (stack.options.state_dir / "function.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert entries
    assert all("severity" in e and "message" in e for e in entries)
    assert any(e.get("status") == "success" and e.get("event_id") for e in entries)
    assert LOCAL_API_KEY not in Path(stack.options.state_dir / "function.log").read_text()
