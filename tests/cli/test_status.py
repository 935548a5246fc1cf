"""`clipsearch status`: the outcome summary of a time window, from stored result JSON.

First against in-memory storage (window edges, percentiles, unreadable objects), then as a
separate process against the whole local stack after a burst with mixed outcomes.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clipsearch.errors import Reason
from clipsearch_cli import status
from clipsearch_cli.config import UsageError
from clipsearch_cli.ports import StoredObject
from tests.cli.fakes import RESULTS, FakeStorage, outcome, store_outcome
from tests.cli.test_commands import Clock, run

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _stored(
    storage: FakeStorage,
    name: str,
    minutes_ago: float,
    *,
    error: Reason | None = None,
    total_ms: float = 100.0,
    size: int = 5,
    reused: bool = False,
    fallback: str | None = None,
) -> dict[str, Any]:
    obj = StoredObject("queries", name, 7, 10, "image/jpeg", {"video_no": "V1", "prompt": "p"})
    message = outcome(obj, error=error)
    message["produced_at"] = status._iso(NOW - timedelta(minutes=minutes_ago))
    message["timings_ms"] = {"read": 1.0, "search": total_ms / 2, "fetch": 2.0, "total": total_ms}
    for clip in message["clips"]:
        clip["artifact"]["size"] = size
        clip["artifact"]["reused"] = reused
        clip["fallback_reason"] = fallback
    store_outcome(storage, message)
    return message


def _run(storage: FakeStorage, *argv: str) -> Any:
    return run("status", *argv, storage=storage, clock=Clock(now=NOW.timestamp()))


def test_percentile_is_nearest_rank() -> None:
    assert status.percentile([], 50) is None
    assert status.percentile([5.0], 95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert status.percentile(values, 50) == 50.0
    assert status.percentile(values, 95) == 95.0
    assert status.percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_parse_when_takes_durations_and_timestamps() -> None:
    assert status.parse_when("15m", NOW) == NOW - timedelta(minutes=15)
    assert status.parse_when("2d", NOW) == NOW - timedelta(days=2)
    assert status.parse_when("2026-01-01T11:00:00Z", NOW) == NOW - timedelta(hours=1)
    with pytest.raises(UsageError):
        status.parse_when("yesterday", NOW)


def test_counts_reasons_latency_and_clip_bytes_inside_the_window() -> None:
    storage = FakeStorage()
    _stored(storage, "a.jpg", 5, total_ms=100.0, size=1000)
    _stored(storage, "b.jpg", 10, total_ms=300.0, size=2000, fallback="clip_too_long")
    _stored(storage, "c.jpg", 20, total_ms=200.0, size=4000, reused=True)
    _stored(storage, "d.jpg", 30, error=Reason.API_INSUFFICIENT_CREDITS, total_ms=50.0)
    _stored(storage, "e.jpg", 40, error=Reason.MISSING_PROMPT, total_ms=10.0)
    _stored(storage, "f.jpg", 50, error=Reason.MISSING_PROMPT, total_ms=10.0)
    _stored(storage, "old.jpg", 90, error=Reason.NOT_AN_IMAGE)  # outside --since 1h
    ran = _run(storage, "--since", "1h", "--json")
    assert ran.code == 0, ran.err
    (body,) = ran.lines()
    assert body["outcomes"] == 6
    assert body["by_status"] == {"error": 3, "success": 3}
    assert body["by_reason"] == {"missing_prompt": 2, "api_insufficient_credits": 1}
    assert body["searched"] == 4  # 3 successes + the API's refusal; not the input errors
    assert body["latency_ms"]["total"] == {"p50": 50.0, "p95": 300.0, "n": 6}
    assert body["latency_ms"]["search"]["p50"] == 25.0
    assert body["clips"] == {
        "count": 3,
        "bytes": 3000,  # the reused clip was stored by an earlier query
        "reused": 1,
        "fallbacks": {"clip_too_long": 1},
    }
    assert body["window"] == {
        "start": "2026-01-01T11:00:00.000Z",
        "end": "2026-01-01T12:00:00.000Z",
    }

    narrow = _run(storage, "--since", "25m", "--until", "8m", "--json").lines()[0]
    assert narrow["outcomes"] == 2  # b (10 min ago) and c (20 min ago)


def test_table_output_and_unreadable_objects() -> None:
    storage = FakeStorage()
    _stored(storage, "a.jpg", 5)
    _stored(storage, "d.jpg", 6, error=Reason.API_UNAUTHORIZED)
    storage.put(RESULTS, "clipsearch/results/queries/broken/1.json", b"{not json", "text/plain")
    ran = _run(storage)
    assert ran.code == 0, ran.err
    assert "skipping gs://results/clipsearch/results/queries/broken/1.json" in ran.err
    lines = ran.out.splitlines()
    assert lines[0].split() == ["summary", "value"]
    assert any(line.split() == ["outcomes", "2"] for line in lines)
    assert any(line.split() == ["api_unauthorized", "1"] for line in lines)
    assert any(line.split() == ["unreadable", "results", "1"] for line in lines)
    assert any(line.split()[:1] == ["total"] and len(line.split()) == 4 for line in lines)


def test_refuses_an_empty_window_and_a_missing_bucket() -> None:
    assert _run(FakeStorage(), "--since", "1h", "--until", "2h").code == 2
    ran = run("status", env={"CLIPSEARCH_QUERY_BUCKET": "q"})
    assert ran.code == 2
    assert "CLIPSEARCH_RESULTS_BUCKET" in ran.err


# ---- against the local stack ----------------------------------------------------------------


@pytest.mark.e2e
def test_status_summarises_a_mixed_burst_on_the_local_stack(tmp_path_factory: Any) -> None:
    from clipsearch.core.naming import result_name  # noqa: PLC0415
    from clipsearch_dev.media import make_video, query_image_bytes  # noqa: PLC0415
    from clipsearch_dev.stack import LocalStack, StackOptions  # noqa: PLC0415
    from tests.cli.test_cli_e2e import clipsearch  # noqa: PLC0415

    state = tmp_path_factory.mktemp("status") / ".devstack"
    options = StackOptions(state_dir=state, search_rate_per_s=20.0)
    with LocalStack(options) as stack:
        assert stack.standin is not None
        stack.standin.knobs.merge({"rate_per_s": 20.0})
        video = make_video(tmp_path_factory.mktemp("media") / "v.mp4", seconds=30)
        stack.upload_video(video.path, "VI-STATUS")
        results = stack.storage.bucket(stack.names.results_bucket)

        def wait(name: str, generation: int) -> dict[str, Any]:
            blob_name = result_name("clipsearch/", stack.names.query_bucket, name, generation)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                blob = results.get_blob(blob_name)
                if blob is not None:
                    loaded: dict[str, Any] = json.loads(blob.download_as_bytes())
                    return loaded
                time.sleep(0.2)
            raise TimeoutError(name)

        before = datetime.now(UTC)
        # The account runs out of credits for exactly one query (the stand-in answers 0402).
        stack.standin.knobs.merge({"fail_next": ["search:0402"]})
        credits = stack.drop_query(
            "burst/credits.jpg",
            query_image_bytes(video.path, 3.0),
            {"video_no": "VI-STATUS", "prompt": "p"},
        )
        outcomes = [wait("burst/credits.jpg", credits)]
        dropped = {
            f"burst/ok{i}.jpg": stack.drop_query(
                f"burst/ok{i}.jpg",
                query_image_bytes(video.path, 5.0 + 8 * i),
                {"video_no": "VI-STATUS", "prompt": "p"},
            )
            for i in range(3)
        }
        dropped["burst/no-prompt.jpg"] = stack.drop_query(
            "burst/no-prompt.jpg", query_image_bytes(video.path, 4.0), {"video_no": "VI-STATUS"}
        )
        dropped["burst/text.jpg"] = stack.drop_query(
            "burst/text.jpg", b"hello, not an image", {"video_no": "VI-STATUS", "prompt": "p"}
        )
        outcomes += [wait(name, generation) for name, generation in dropped.items()]

        done = clipsearch(stack, "status", "--since", "10m", "--json")
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        assert body["outcomes"] == 6
        assert body["by_status"] == {"error": 3, "success": 3}
        assert body["by_reason"] == {
            "api_insufficient_credits": 1,
            "missing_prompt": 1,
            "not_an_image": 1,
        }
        assert body["searched"] == 4
        totals = [o["timings_ms"]["total"] for o in outcomes]
        assert body["latency_ms"]["total"]["n"] == 6
        assert body["latency_ms"]["total"]["p95"] == max(totals)  # nearest rank of 6 values
        assert body["latency_ms"]["total"]["p50"] == sorted(totals)[2]
        stored = [c["artifact"] for o in outcomes for c in o["clips"] if c.get("artifact")]
        assert body["clips"]["count"] == len(stored) > 0
        assert body["clips"]["bytes"] == sum(a["size"] for a in stored if not a["reused"]) > 0

        # A window that ended before the burst sees none of it; the table names the reasons.
        earlier = (before - timedelta(seconds=1)).isoformat()
        empty = clipsearch(stack, "status", "--since", "1h", "--until", earlier, "--json")
        assert json.loads(empty.stdout)["outcomes"] == 0
        table = clipsearch(stack, "status", "--since", "10m")
        assert table.returncode == 0, table.stderr
        assert any(
            line.split() == ["api_insufficient_credits", "1"] for line in table.stdout.splitlines()
        )
