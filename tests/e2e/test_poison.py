"""Poison suite (issue 14): inputs that break the pipeline in ways nobody planned for.

Sources in the vendor's bucket that the clip engine cannot read as planned — random bytes
named .mp4, an MP4 cut off inside its moov, an empty object, and the hostile seeds in
shared/reference/hostile-mp4 (a short `sidx`, renamed sample entries, shrunk boxes, absurd
offsets) — and bugs raised inside the real pipeline (`clipsearch_dev.faults`: the real
function server with an exception type the package has never heard of, in the read, fetch
or message stage). Each source was indexed by the stand-in while it was a good video, then
replaced in the bucket: the vendor's hits point at bytes that changed since.

Proven: each query ends in exactly one outcome within a bounded time — a success whose
unusable clips carry a reason, or an error outcome — and its event stops being redelivered.
A bug after the search never searches again.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clipsearch_dev.faults import CRASH_MARKER, STAGES, marker
from clipsearch_dev.media import VideoInfo, make_video, query_image_bytes
from clipsearch_dev.outcomes import OutcomeCollector, Received
from clipsearch_dev.stack import REPO, LocalStack, StackOptions

pytestmark = pytest.mark.e2e
# CI checks shared/ out beside the clone; the seeds are not copied into the repository.
HOSTILE_DIR = REPO.parent / "shared" / "reference" / "hostile-mp4"
HOSTILE_SEEDS = (
    "sidx-8-bytes.mp4",
    "sidx-12-bytes.mp4",
    "sidx-20-bytes.mp4",
    "avc1-renamed-av01.mp4",
    "avc1-renamed-mp4a.mp4",
    "audio-trak-shrunk.mp4",
    "hvcc-shrunk-unreadable-clip.mp4",
    "co64-offsets-2p63.mp4",
    "tfra-size-zero-hang.mp4",
    "tfdt-19-bytes-exact-before-first-frame.mp4",
)
UNREADABLE = ("random-bytes.mp4", "ftyp-then-random.mp4", "truncated-moov.mp4", "empty.mp4")
GOOD_VIDEO_NO = "VI-POISON-GOOD"
MAX_ATTEMPTS = 2  # CLIPSEARCH_MAX_ATTEMPTS (default 3): fewer, to keep the suite short
LEASE_S = 10  # CLIPSEARCH_FUNCTION_TIMEOUT_S: a crashed attempt's lease
OUTCOME_BOUND_S = 90.0  # from the upload to its outcome, bugs' retries included
Key = tuple[str, str, str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    options = StackOptions(
        state_dir=tmp_path_factory.mktemp("poisonstack"),
        search_rate_per_s=20.0,
        function_env={
            "CLIPSEARCH_FETCH_MODE": "clip",
            "CLIPSEARCH_CLIP_FALLBACK": "copy",
            "CLIPSEARCH_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "CLIPSEARCH_FUNCTION_TIMEOUT_S": str(LEASE_S),
            "CLIPSEARCH_RETRY_ATTEMPTS": "2",
            "CLIPSEARCH_RETRY_BUDGET_S": "3",
        },
        retry_min_backoff_s=1,
        retry_max_backoff_s=2,
        inject_bugs=True,
    )
    with LocalStack(options) as running:
        yield running


@pytest.fixture(scope="module")
def video(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> VideoInfo:
    info = make_video(tmp_path_factory.mktemp("poisonmedia") / "v.mp4", seconds=8, gop=20)
    stack.upload_video(info.path, GOOD_VIDEO_NO)
    return info


def hostile_seed(name: str) -> bytes:
    path = HOSTILE_DIR / name
    if not path.is_file():
        pytest.fail(
            f"hostile MP4 seed missing: {path} (the suite reads ../shared/reference/hostile-mp4"
            " relative to the repository; check shared/ out beside the clone)"
        )
    return path.read_bytes()


def top_level_box(data: bytes, kind: bytes) -> tuple[int, int]:
    """Offset and size of the first top-level box of `kind` (32-bit sizes only)."""
    pos = 0
    while pos + 8 <= len(data):
        size, found = struct.unpack(">I4s", data[pos : pos + 8])
        if found == kind:
            return pos, size
        if size < 8:
            break
        pos += size
    raise ValueError(f"no top-level {kind!r} box")


def unreadable(name: str, good: bytes) -> bytes:
    rng = random.Random(name)
    if name == "random-bytes.mp4":
        return rng.randbytes(256 * 1024)
    if name == "ftyp-then-random.mp4":  # looks like an MP4 for one box, then noise
        offset, size = top_level_box(good, b"ftyp")
        return good[offset : offset + size] + rng.randbytes(256 * 1024)
    if name == "truncated-moov.mp4":  # faststart: the moov is near the start; cut it in half
        offset, size = top_level_box(good, b"moov")
        return good[: offset + size // 2]
    if name == "empty.mp4":
        return b""
    raise ValueError(name)


def poison_source(stack: LocalStack, good: Path, name: str, data: bytes) -> str:
    """Index a good video under this blob, then replace its bytes: returns its video_no."""
    video_no = "VI-POISON-" + name.removesuffix(".mp4").upper()
    blob_name = stack.upload_video(good, video_no)
    blob = stack.storage.bucket(stack.names.source_bucket).blob(blob_name)
    blob.upload_from_string(data, content_type="video/mp4")
    return video_no


def clip_problems(received: Received) -> list[str]:
    """Clips of a success that say nothing about why they are not a cut clip."""
    problems = []
    for clip in received.body["clips"]:
        artifact = clip.get("artifact")
        why = clip.get("fallback_reason") or clip.get("fetch_error")
        if artifact is None and not why:
            problems.append(f"rank {clip['rank']}: no artifact and no reason")
        elif artifact is not None and artifact["mode"] != "clip" and not why:
            problems.append(f"rank {clip['rank']}: a {artifact['mode']} without a reason")
    return problems


def outcome_of(received: Received) -> str:
    error = received.body.get("error")
    if error is not None:
        return f"error {error['reason']}"
    clips = [
        (c.get("artifact") or {}).get("mode", "none")
        + (f" ({c.get('fallback_reason') or c.get('fetch_error')})" if not _cut(c) else "")
        for c in received.body["clips"]
    ]
    return "success: " + ", ".join(clips)


def _cut(clip: dict[str, Any]) -> bool:
    return (clip.get("artifact") or {}).get("mode") == "clip"


def test_poison_sources_and_injected_bugs_each_end_in_one_outcome_in_bounded_time(
    stack: LocalStack, video: VideoInfo, collector: OutcomeCollector
) -> None:
    assert stack.standin is not None
    assert stack.bridge is not None
    stack.standin.knobs.merge({"top_k": 2})
    good = video.path.read_bytes()
    sources = {name: hostile_seed(name) for name in HOSTILE_SEEDS}
    sources |= {name: unreadable(name, good) for name in UNREADABLE}
    video_nos = {
        name: poison_source(stack, video.path, name, data) for name, data in sources.items()
    }
    image = query_image_bytes(video.path, 2.0)  # early: inside every seed's 8 s as well

    dropped: dict[Key, float] = {}
    labels: dict[Key, str] = {}
    for name, video_no in video_nos.items():
        object_name = f"poison/{name.removesuffix('.mp4')}.jpg"
        key = _drop(stack, object_name, image, video_no)
        dropped[key], labels[key] = time.monotonic(), name
    bugs: dict[str, Key] = {}
    for stage in STAGES:
        key = _drop(stack, f"poison/{marker(stage)}.jpg", image, GOOD_VIDEO_NO)
        dropped[key], labels[key], bugs[stage] = time.monotonic(), marker(stage), key
    control = _drop(stack, "poison/control.jpg", image, GOOD_VIDEO_NO)
    dropped[control], labels[control] = time.monotonic(), "control (good video)"

    firsts = collector.wait_for(dropped, timeout_s=OUTCOME_BOUND_S + 30)
    latency = {key: firsts[key].arrived_at - dropped[key] for key in dropped}
    posts_then = _posts(stack, dropped)
    collector.settle(8)  # longer than the redelivery backoff: a retried event would show
    posts_later = _posts(stack, dropped)

    summary = "\n".join(
        f"| {labels[k]} | {latency[k]:.1f} s | {posts_later[k]} | {outcome_of(firsts[k])} |"
        for k in dropped
    )
    head = "| query | upload to outcome | POSTs | outcome |\n|---|---|---|---|"
    print(f"\npoison suite:\n{head}\n{summary}")
    counts = {labels[k]: len(collector.for_key(k)) for k in dropped}
    assert {label: n for label, n in counts.items() if n != 1} == {}, "not exactly one outcome"
    slow = {labels[k]: round(latency[k], 1) for k in dropped if latency[k] > OUTCOME_BOUND_S}
    assert slow == {}, f"outcomes later than {OUTCOME_BOUND_S}s"
    # No event is redelivered forever: once its outcome is out, its deliveries stop.
    assert posts_later == posts_then, "events still delivered after their outcome"
    assert {labels[k]: n for k, n in posts_later.items() if n > MAX_ATTEMPTS + 3} == {}

    assert firsts[control].body["status"] == "success"
    assert all(_cut(c) for c in firsts[control].body["clips"])
    for name in sources:
        key = next(k for k, label in labels.items() if label == name)
        received = firsts[key]
        if received.body["status"] == "success":
            assert clip_problems(received) == [], name
            if name in UNREADABLE:  # nothing can be cut from these bytes
                modes = [(c.get("artifact") or {}).get("mode") for c in received.body["clips"]]
                assert "clip" not in modes, (name, modes)
        else:
            assert received.body["error"]["reason"] == "internal_error", (name, received.body)

    billed = stack.standin.stats.billed_by_file
    for stage, key in bugs.items():
        error = firsts[key].body["error"]
        assert error is not None, (stage, firsts[key].body)
        assert error["reason"] == "internal_error", (stage, error)
        assert "InjectedBug" in error["message"], error["message"]
    # A bug before the search costs nothing; after it, the stored hits are reused: billed once.
    assert billed.get(f"{marker('read')}.jpg", 0) == 0
    assert billed.get(f"{marker('fetch')}.jpg", 0) == 1
    assert billed.get(f"{marker('message')}.jpg", 0) == 1
    assert all(n == 1 for n in billed.values()), billed


def _drop(stack: LocalStack, name: str, image: bytes, video_no: str) -> Key:
    generation = stack.drop_query(name, image, {"video_no": video_no, "prompt": "this moment"})
    return (stack.names.query_bucket, name, str(generation))


def _posts(stack: LocalStack, keys: dict[Key, float]) -> dict[Key, int]:
    assert stack.bridge is not None
    return {key: stack.bridge.attempts[f"objects/{key[1]}"] for key in keys}


def test_a_query_that_kills_its_instance_every_time_ends_in_one_outcome(
    stack: LocalStack, video: VideoInfo, collector: OutcomeCollector
) -> None:
    """A query of death (the OOM killer, every attempt): no exception is ever raised, so
    only the record's count of attempts that died can end it; bounded by those attempts and
    their leases."""
    assert stack.standin is not None
    image = query_image_bytes(video.path, 2.0)
    crashes_before = _worker_kills(stack)
    dropped_at = time.monotonic()
    key = _drop(stack, f"poison/{CRASH_MARKER}.jpg", image, GOOD_VIDEO_NO)
    bound_s = (MAX_ATTEMPTS + 1) * (LEASE_S + 5) + 15
    received = collector.wait_for([key], timeout_s=bound_s)[key]
    posts_then = _posts(stack, {key: 0.0})
    collector.settle(8)
    print(
        f"\n{CRASH_MARKER}: {received.arrived_at - dropped_at:.1f} s to its outcome,"
        f" {_worker_kills(stack) - crashes_before} worker kills, {posts_then[key]} POSTs:"
        f" {received.body['error']}"
    )
    assert len(collector.for_key(key)) == 1
    assert _posts(stack, {key: 0.0}) == posts_then
    error = received.body["error"]
    assert error is not None, received.body
    assert error["reason"] == "internal_error", error
    assert stack.standin.stats.billed_by_file.get(f"{CRASH_MARKER}.jpg", 0) == 1


def _worker_kills(stack: LocalStack) -> int:
    """How often gunicorn has reported a worker killed (its own words: out of memory?)."""
    return stack.function_log.read_text(errors="replace").count("was sent SIGKILL")
