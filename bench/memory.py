"""The function's own memory: the real server, clients and engine on the local stack.

Starts the local stack (functions-framework serving main.py, fake-gcs-server, the Pub/Sub
emulator, the search stand-in), reads the function's resident set once it is up, then
after clip-mode queries on a short video, and prints both as JSON with the process's peak
(VmHWM). The engine's growth with the source's length comes from `make bench-scaling`
(bench/out/scaling.json); docs/cost.md adds the two to size `memory`.

    .venv/bin/python -m bench.memory
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from clipsearch_dev.media import make_video, query_image_bytes
from clipsearch_dev.outcomes import OutcomeCollector
from clipsearch_dev.stack import LocalStack

VIDEO_NO = "VI000000000000000001"
QUERY_TIMES = (12.3, 47.0, 95.5, 30.0, 70.0)


def _status_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _tree(pid: int) -> list[int]:
    """The process and its descendants (the framework may serve from a worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [pid, *(q for k in kids for q in _tree(k))]


def _largest(pid: int) -> dict[str, float]:
    stats = [_status_kib(p) for p in _tree(pid)]
    return {
        "rss_mib": round(max(s["VmRSS"] for s in stats) / 1024, 1),
        "hwm_mib": round(max(s["VmHWM"] for s in stats) / 1024, 1),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, LocalStack() as stack:
        assert stack.function is not None
        process = stack.function._process  # the stack's own handle on the server
        assert process is not None
        time.sleep(1.0)
        started = _largest(process.pid)
        video = Path(tmp) / "sample.mp4"
        make_video(video, seconds=120, gop=20)
        stack.upload_video(video, VIDEO_NO)
        collector = OutcomeCollector([stack.names.results_subscription]).start()
        keys = []
        for t in QUERY_TIMES:
            name = f"bench/at-{t:05.1f}.jpg"
            metadata = {"video_no": VIDEO_NO, "prompt": "this moment"}
            generation = stack.drop_query(name, query_image_bytes(video, t), metadata)
            keys.append((stack.names.query_bucket, name, str(generation)))
        outcomes = collector.wait_for(keys, timeout_s=180)
        collector.stop()
        after = _largest(process.pid)
        statuses = sorted({o.body["status"] for o in outcomes.values()})
    print(
        json.dumps(
            {
                "started": started,
                "after_queries": after,
                "queries": len(keys),
                "statuses": statuses,
                "cpu_count": os.cpu_count(),
                "command": ".venv/bin/python -m bench.memory",
            }
        )
    )


if __name__ == "__main__":
    main()
