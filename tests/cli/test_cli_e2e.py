"""The `clipsearch` command, run as a separate process, against the whole local stack.

The command is configured only by the stack's env file (`.devstack/env`), as a user would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clipsearch.contract import to_avro_json, validate_message
from clipsearch.core.naming import result_name
from clipsearch_cli.report import play_range
from clipsearch_dev.media import VideoInfo, make_video, query_image_bytes
from clipsearch_dev.stack import LocalStack, StackOptions
from tests.cli.chromium import pre, run_selftest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
VIDEO_NO = "VI-CLI-0001"
PREFIX = "clipsearch/"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    # Named .devstack so that the command finds `.devstack/env` from its parent directory.
    state = tmp_path_factory.mktemp("cli") / ".devstack"
    options = StackOptions(
        state_dir=state,
        search_rate_per_s=20.0,
        function_env={"CLIPSEARCH_RETRY_ATTEMPTS": "3", "CLIPSEARCH_RETRY_BUDGET_S": "10"},
        retry_min_backoff_s=1,
        retry_max_backoff_s=2,
    )
    with LocalStack(options) as running:
        yield running


@pytest.fixture(scope="module")
def video(stack, tmp_path_factory) -> VideoInfo:
    info = make_video(tmp_path_factory.mktemp("media") / "v.mp4", seconds=60)
    stack.upload_video(info.path, VIDEO_NO)
    return info


def clipsearch(
    stack: LocalStack, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m clipsearch_cli` from the stack's parent directory, with a clean environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CLIPSEARCH_") and not k.endswith("_EMULATOR_HOST")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "cli"), str(REPO)])
    return subprocess.run(
        [sys.executable, "-m", "clipsearch_cli", *args],
        cwd=stack.options.state_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_result(stack: LocalStack, name: str, generation: int, timeout_s: float = 60) -> Any:
    blob_name = result_name(PREFIX, stack.names.query_bucket, name, generation)
    bucket = stack.storage.bucket(stack.names.results_bucket)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        blob = bucket.get_blob(blob_name)
        if blob is not None:
            return json.loads(blob.download_as_bytes())
        time.sleep(0.2)
    raise TimeoutError(f"no result for {name}#{generation}")


def test_submit_wait_returns_the_clip_containing_each_query_frame(stack, video, tmp_path):
    times = {"early.jpg": 7.3, "late.jpg": 41.0}
    for name, t in times.items():
        (tmp_path / name).write_bytes(query_image_bytes(video.path, t))
    done = clipsearch(
        stack,
        "submit",
        *[str(tmp_path / name) for name in times],
        "--video-no", VIDEO_NO,
        "--prompt", "this moment",
        "--prefix", "cli/",
        "--wait", "--json", "--timeout", "90",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(outcomes) == 2
    queries = stack.storage.bucket(stack.names.query_bucket)
    for body in outcomes:
        query = body["query"]
        assert body["status"] == "success"
        assert query["generation"] == str(queries.get_blob(query["object"]).generation)
        t = times[query["object"].removeprefix("cli/")]
        top = body["clips"][0]
        assert top["start_time"] <= t <= top["end_time"], (t, top)
        assert top["artifact"]["uri"].startswith(f"gs://{stack.names.results_bucket}/")


def test_submit_refuses_locally_and_uploads_nothing(stack, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    done = clipsearch(
        stack, "submit", str(tmp_path / "notes.txt"), "--video-no", VIDEO_NO, "--prompt", "p"
    )
    assert done.returncode == 1
    assert "unsupported_extension: extension 'txt' is not one of" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert stack.storage.bucket(stack.names.query_bucket).get_blob("notes.txt") is None


def test_results_json_round_trips_the_result_message(stack, video):
    generation = stack.drop_query(
        "cli/results.jpg",
        query_image_bytes(video.path, 20.0),
        {"video_no": VIDEO_NO, "prompt": "p"},
    )
    stored = wait_for_result(stack, "cli/results.jpg", generation)
    time.sleep(0.5)  # the message is published just after the result JSON is written
    done = clipsearch(stack, "results", "--json", "--poll", "3")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    mine = [o for o in lines if o["query"]["generation"] == str(generation)]
    assert mine == [stored]  # the decoded message is exactly the stored result JSON
    validate_message(to_avro_json(mine[0]))
    # consumed: a second read no longer sees it
    again = clipsearch(stack, "results", "--json", "--poll", "1")
    assert str(generation) not in again.stdout


def test_backfill_triggers_no_more_than_its_budget(stack, video):
    bucket = stack.storage.bucket(stack.names.query_bucket)
    results = stack.storage.bucket(stack.names.results_bucket)
    names = [f"backfill/{i}.jpg" for i in range(4)]
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        first[name] = stack.drop_query(
            name, query_image_bytes(video.path, 5.0 + 10 * i), {"video_no": VIDEO_NO, "prompt": "p"}
        )
    for name in names:  # they predate the service: forget their outcomes
        wait_for_result(stack, name, first[name])
        results.blob(result_name(PREFIX, bucket.name, name, first[name])).delete()
    location = f"gs://{bucket.name}/backfill/"

    dry = clipsearch(stack, "backfill", location, "--budget", "3", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert [json.loads(x)["action"] for x in dry.stdout.splitlines()] == ["would-trigger"] * 3
    assert all(bucket.get_blob(n).generation == first[n] for n in names)

    run = clipsearch(stack, "backfill", location, "--budget", "2", "--rate", "5", "--json")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(x) for x in run.stdout.splitlines()]
    assert [(r["object"], r["action"]) for r in rows] == [
        (names[0], "triggered"),
        (names[1], "triggered"),
    ]
    for row in rows:
        body = wait_for_result(stack, row["object"], int(row["new_generation"]))
        assert body["status"] == "success"
        assert body["query"]["video_no"] == VIDEO_NO  # metadata survived the rewrite
    time.sleep(1)  # nothing else was triggered
    assert [bucket.get_blob(n).generation == first[n] for n in names] == [False, False, True, True]

    rest = clipsearch(stack, "backfill", location, "--budget", "10", "--rate", "5", "--json")
    actions = [json.loads(x)["action"] for x in rest.stdout.splitlines()]
    assert actions == ["done", "done", "triggered", "triggered"]
    for name in names[2:]:
        wait_for_result(stack, name, bucket.get_blob(name).generation)
    final = clipsearch(stack, "backfill", location, "--json")
    assert [json.loads(x)["action"] for x in final.stdout.splitlines()] == ["done"] * 4


def _selftest(page: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """Open the page in headless Chromium with ?selftest=1 and read what its videos did."""
    done = run_selftest(page, tmp_path / "chromium-profile", budget_ms=15000)
    report: list[dict[str, Any]] = pre(done.stdout, "selftest")
    return report


@pytest.mark.parametrize("embed", [False, True], ids=["remote", "embed"])
def test_report_clips_load_and_play_in_chromium(stack, video, tmp_path, embed):
    generation = stack.drop_query(
        "cli/report.jpg", query_image_bytes(video.path, 33.0), {"video_no": VIDEO_NO, "prompt": "p"}
    )
    body = wait_for_result(stack, "cli/report.jpg", generation)
    page = tmp_path / "report.html"
    args = ["report", "--query", f"gs://{stack.names.query_bucket}/cli/report.jpg", "-o", str(page)]
    done = clipsearch(stack, *args, *(["--embed"] if embed else []))
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert html.count('<video controls preload="metadata"') == len(body["clips"]) > 0
    if embed:
        assert html.count('poster="report_files/poster-') == len(body["clips"])
    else:
        posters = [c for c in body["clips"] if (c.get("artifact") or {}).get("poster_uri")]
        assert html.count(' poster="http://127.0.0.1:') == len(posters)
        assert f"http://127.0.0.1:{stack.gcs.port}/download/storage/v1/b/" in html  # type: ignore[union-attr]
    played = _selftest(page, tmp_path)
    assert len(played) == len(body["clips"])
    for clip, video_state in zip(body["clips"], played, strict=True):
        assert video_state["error"] is None, video_state
        assert video_state["played"], video_state
        assert video_state["readyState"] >= 2, video_state  # HAVE_CURRENT_DATA or better
        assert video_state["start"] == pytest.approx(play_range(clip)[0], abs=1e-3)
        assert video_state["currentTime"] >= video_state["start"], video_state
