"""Benchmarks of the function itself (issue: foundation).

1. Own time per event: total event time minus the time spent waiting on the API, Cloud
   Storage and Pub/Sub (every adapter call is timed), for query images of ~50 KB, ~1 MB and
   ~20 MB, through the real adapters against the local stack.
2. Cold start: process start of a functions-framework server to its first event handled.
3. End to end on the local stack: upload → result message received, sequentially.

Run: .venv/bin/python -m bench.function  (or `make bench`); writes bench/out/function.{json,md}.
"""

from __future__ import annotations

import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from google.cloud import pubsub_v1
from PIL import Image

from clipsearch.adapters.gcs import GcsImageReader, GcsRecordStore, GcsResultStore, GcsSources
from clipsearch.adapters.pubsub import PubSubPublisher
from clipsearch.adapters.search_api import HttpSearchApi, new_session
from clipsearch.bootstrap import build_fetcher
from clipsearch.idempotency import Idempotency
from clipsearch.retry import RetryPolicy
from clipsearch.service import ClipSearchService
from clipsearch.settings import FetchMode, Settings
from clipsearch_dev.media import make_video, query_image_bytes
from clipsearch_dev.net import free_port
from clipsearch_dev.outcomes import OutcomeCollector
from clipsearch_dev.processes import ManagedProcess
from clipsearch_dev.stack import FUNCTION_SOURCE, FUNCTION_TARGET, LocalStack, StackOptions

OUT = Path(__file__).parent / "out"
# Queries for the in-process measurements go to a bucket with no trigger, so the stack's own
# function doesn't handle them too (and compete for the stand-in's 1 search/s).
UNTRIGGERED = "clipsearch-bench-queries"
VIDEO_NO = "VI-BENCH-0001"


class TimedPort:
    """Forwards every call to the wrapped adapter and adds its duration to a shared total."""

    def __init__(self, inner: Any, waits: list[float]) -> None:
        self._inner = inner
        self._waits = waits

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._waits.append(time.perf_counter() - started)

        return timed


def image_of_size(target: int, t: float, video: Path) -> tuple[str, bytes]:
    """A real PNG of about `target` bytes: a video frame, scaled up, with noise mixed in."""
    frame = Image.open(io.BytesIO(query_image_bytes(video, t)))
    rng = np.random.default_rng(int(t * 10))
    side = max(64, int((target / 1.6) ** 0.5))
    for _ in range(4):  # calibrate: PNG size depends on content, so scale until close
        pixels = np.asarray(frame.resize((side, side)))
        noise = rng.integers(0, 256, size=pixels.shape, dtype=np.uint8)
        mixed = np.where(rng.random(pixels.shape[:2])[..., None] < 0.4, noise, pixels)
        buffer = io.BytesIO()
        Image.fromarray(mixed.astype(np.uint8)).save(buffer, "PNG", compress_level=1)
        data = buffer.getvalue()
        if abs(len(data) - target) < 0.05 * target:
            break
        side = int(side * (target / len(data)) ** 0.5)
    return "png", data


def own_time(stack: LocalStack, video: Path, runs: int) -> list[dict[str, Any]]:
    settings = Settings.from_env({**stack.env, "CLIPSEARCH_LOG_LEVEL": "WARNING"})
    waits: list[float] = []
    logger = logging.getLogger("bench")
    api = TimedPort(
        HttpSearchApi(
            new_session(),
            api_key=settings.api_key,
            base_url=settings.api_base_url,
            download_base_url=settings.download_base_url,
            timeouts=(5, 120),
            retry=RetryPolicy(8, 60),
            logger=logger,
        ),
        waits,
    )
    results = TimedPort(GcsResultStore(stack.storage, settings.results_bucket), waits)
    service = ClipSearchService(
        settings,
        images=TimedPort(GcsImageReader(stack.storage), waits),
        api=api,
        fetcher=build_fetcher(
            settings,
            api=api,
            results=results,
            gcs=GcsSources(stack.storage),
            logger=logger,
            mode=FetchMode.COPY,
        ),
        results=results,
        publisher=TimedPort(PubSubPublisher(pubsub_v1.PublisherClient()), waits),
        idempotency=Idempotency(
            TimedPort(
                GcsRecordStore(stack.storage, settings.results_bucket, "bench-records/"), waits
            ),
            lease_s=settings.function_timeout_s,
        ),
        logger=logger,
    )
    rows = []
    for label, target in (("~50 KB", 50_000), ("~1 MB", 1_000_000), ("~20 MB", 19_500_000)):
        totals, owns, cpus = [], [], []
        size = 0
        for i in range(runs):
            ext, data = image_of_size(target, 5.0 + i, video)
            size = len(data)
            name = f"bench/{label.strip('~ ')}-{i}.{ext}"
            content_type = f"image/{'jpeg' if ext == 'jpg' else ext}"
            blob = stack.storage.bucket(UNTRIGGERED).blob(name)
            blob.metadata = {"video_no": VIDEO_NO, "prompt": "bench"}
            blob.upload_from_string(data, content_type=content_type)
            resource = {
                "bucket": UNTRIGGERED,
                "name": name,
                "generation": str(blob.generation),
                "size": str(size),
                "contentType": content_type,
                "metadata": blob.metadata,
            }
            time.sleep(1.1)  # the stand-in allows 1 search/s: don't measure the rate limiter
            waits.clear()
            started, cpu_started = time.perf_counter(), time.thread_time()
            outcome = service.handle_event(
                f"bench-{label}-{i}", "google.cloud.storage.object.v1.finalized", resource
            )
            total = time.perf_counter() - started
            cpu = time.thread_time() - cpu_started
            assert outcome.status == "success", outcome.message
            totals.append(total)
            owns.append(total - sum(waits))
            cpus.append(cpu)
        rows.append(
            {
                "image": label,
                "bytes": size,
                "runs": runs,
                "total_ms_median": statistics.median(totals) * 1000,
                "own_ms_median": statistics.median(owns) * 1000,
                "own_share_median": statistics.median(
                    o / t for o, t in zip(owns, totals, strict=True)
                ),
                "thread_cpu_ms_median": statistics.median(cpus) * 1000,
                "thread_cpu_share_median": statistics.median(
                    c / t for c, t in zip(cpus, totals, strict=True)
                ),
            }
        )
    return rows


def cold_start(stack: LocalStack, video: Path, runs: int) -> list[float]:
    data = query_image_bytes(video, 9.0)
    blob = stack.storage.bucket(UNTRIGGERED).blob("bench/cold.jpg")
    blob.metadata = {"video_no": VIDEO_NO, "prompt": "bench"}
    blob.upload_from_string(data, content_type="image/jpeg")
    resource = {
        "bucket": UNTRIGGERED,
        "name": "bench/cold.jpg",
        "generation": str(blob.generation),
        "size": str(len(data)),
        "contentType": "image/jpeg",
        "metadata": blob.metadata,
    }
    exe = str(Path(sys.executable).parent / "functions-framework")
    seconds = []
    for i in range(runs):
        time.sleep(1.1)  # let the stand-in's 1/s token refill, so no 0429 wait is measured
        port = free_port()
        event = CloudEvent(
            {
                "id": f"cold-{i}",
                "type": "google.cloud.storage.object.v1.finalized",
                "source": "//storage.googleapis.com/projects/_/buckets/x",
            },
            resource,
        )
        headers, body = to_binary(event)
        started = time.perf_counter()
        process = ManagedProcess(
            "function",
            [
                exe,
                f"--target={FUNCTION_TARGET}",
                f"--source={FUNCTION_SOURCE}",
                "--signature-type=cloudevent",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            port,
            env={**os.environ, **stack.env},
        )
        try:
            process.start()
            response = requests.post(
                f"http://127.0.0.1:{port}/", headers=headers, data=body, timeout=60
            )
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        finally:
            process.stop()
    return seconds


def end_to_end(stack: LocalStack, video: Path, runs: int) -> list[float]:
    collector = OutcomeCollector(
        [stack.names.results_subscription, stack.names.errors_subscription]
    )
    collector.start()
    latencies = []
    for i in range(runs):
        time.sleep(1.1)  # one search per second: measure latency, not the rate limiter
        data = query_image_bytes(video, 2.0 + i * 2.5)
        started = time.perf_counter()
        generation = stack.drop_query(
            f"bench/e2e-{i}.jpg", data, {"video_no": VIDEO_NO, "prompt": "bench"}
        )
        key = (stack.names.query_bucket, f"bench/e2e-{i}.jpg", str(generation))
        collector.wait_for([key], timeout_s=60)
        latencies.append(time.perf_counter() - started)
    collector.stop()
    return latencies


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "median_ms": statistics.median(values) * 1000,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
        "min_ms": ordered[0] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def main(runs: int = 5, cold_runs: int = 5, e2e_runs: int = 20) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalStack(StackOptions(state_dir=Path(tmp) / "state")) as stack,
    ):
        video = Path(tmp) / "v.mp4"
        make_video(video, seconds=60, gop=20)
        stack.upload_video(video, VIDEO_NO)
        stack.storage.create_bucket(UNTRIGGERED)
        report = {
            "own_time": own_time(stack, video, runs),
            "cold_start": summary(cold_start(stack, video, cold_runs)),
            "end_to_end": summary(end_to_end(stack, video, e2e_runs)),
        }
    (OUT / "function.json").write_text(json.dumps(report, indent=2))
    (OUT / "function.md").write_text(render(report))
    print(render(report))
    return report


def render(report: dict[str, Any]) -> str:
    lines = [
        "| query image | bytes | event total | own time (outside adapter calls) | share "
        "| event thread CPU (incl. adapters' CPU) | share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["own_time"]:
        lines.append(
            f"| {row['image']} | {row['bytes']:,} | {row['total_ms_median']:.1f} ms | "
            f"{row['own_ms_median']:.2f} ms | {row['own_share_median']:.2%} | "
            f"{row['thread_cpu_ms_median']:.1f} ms | {row['thread_cpu_share_median']:.1%} |"
        )
    fmt: Callable[[dict[str, float]], str] = lambda s: (  # noqa: E731
        f"median {s['median_ms']:.0f} ms, p90 {s['p90_ms']:.0f} ms, "
        f"min {s['min_ms']:.0f} ms, max {s['max_ms']:.0f} ms (n={s['n']:.0f})"
    )
    lines += [
        "",
        f"- cold start (process start → first event answered): {fmt(report['cold_start'])}",
        f"- end to end on the local stack (upload → result received): {fmt(report['end_to_end'])}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
