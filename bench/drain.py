"""Drain time of a burst: N uploads at once, the stand-in limited to R searches/s.

Ratio = measured drain time ÷ the ideal N/R; also counts the 0429s the stand-in had to send.
Run: .venv/bin/python -m bench.drain  (or `make bench`); writes bench/out/drain.{json,md}.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from clipsearch_dev.media import make_video, query_image_bytes
from clipsearch_dev.outcomes import OutcomeCollector
from clipsearch_dev.stack import LocalStack, StackOptions

OUT = Path(__file__).parent / "out"
VIDEO_NO = "VI-DRAIN-0001"


def drain(n: int, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        options = StackOptions(
            state_dir=Path(tmp) / "state",
            search_rate_per_s=rate,
            bridge_in_flight=32,
            function_env={"CLIPSEARCH_FETCH_MODE": "none", "CLIPSEARCH_LOG_LEVEL": "WARNING"},
        )
        with LocalStack(options) as stack:
            video = Path(tmp) / "v.mp4"
            make_video(video, seconds=20, width=160, height=120, gop=20)
            stack.upload_video(video, VIDEO_NO)
            frames = [query_image_bytes(video, t) for t in (2.0, 7.0, 12.0, 17.0)]
            assert stack.standin is not None
            stack.standin.reset()
            with OutcomeCollector(
                [stack.names.results_subscription, stack.names.errors_subscription]
            ) as collector:
                started = time.monotonic()
                keys = []
                for i in range(n):
                    generation = stack.drop_query(
                        f"drain/{i:04d}.jpg", frames[i % 4], {"video_no": VIDEO_NO, "prompt": "p"}
                    )
                    keys.append((stack.names.query_bucket, f"drain/{i:04d}.jpg", str(generation)))
                collector.wait_for(keys, timeout_s=n / rate * 3 + 60)
                elapsed = time.monotonic() - started
            stats = stack.standin.stats
            return {
                "n": n,
                "rate_per_s": rate,
                "drain_s": elapsed,
                "ideal_s": n / rate,
                "ratio": elapsed / (n / rate),
                "billed_searches": stats.billed_searches,
                "rejections_0429": stats.responses.get("0429", 0),
            }


def main(n: int = 200, rates: tuple[float, ...] = (5.0, 1.0)) -> list[dict[str, Any]]:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [drain(n, rate) for rate in rates]
    (OUT / "drain.json").write_text(json.dumps(rows, indent=2))
    lines = [
        "| N | R (searches/s) | drain | ideal N/R | ratio | billed | 0429 rejections |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['n']} | {r['rate_per_s']:g} | {r['drain_s']:.1f} s | {r['ideal_s']:.0f} s | "
        f"{r['ratio']:.3f} | {r['billed_searches']} | {r['rejections_0429']} |"
        for r in rows
    ]
    text = "\n".join(lines) + "\n"
    (OUT / "drain.md").write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
