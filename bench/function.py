"""Benchmarks of the function itself (issue: foundation).

1. Own time per event: total event time minus the time spent waiting on the API, Cloud
   Storage and Pub/Sub (every adapter call is timed), for query images of ~50 KB, ~1 MB and
   ~20 MB, through the real adapters against the local stack.
2. Cold start (bench.coldstart): `import main`, spawn → listening, spawn → first outcome.
3. End to end on the local stack: upload → result message received, sequentially.

Run: .venv/bin/python -m bench.function  (or `make bench`); writes bench/out/function.{json,md}.
"""

from __future__ import annotations

import io
import json
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from google.cloud import pubsub_v1, storage
from PIL import Image

from bench import coldstart
from clipsearch.adapters.gcs import GcsImageReader, GcsRecordStore, GcsResultStore, GcsSources
from clipsearch.adapters.pubsub import PubSubPublisher
from clipsearch.adapters.search_api import HttpSearchApi, new_session
from clipsearch.bootstrap import build_fetcher, build_service
from clipsearch.idempotency import Idempotency
from clipsearch.retry import RetryPolicy
from clipsearch.service import ClipSearchService
from clipsearch.settings import FetchMode, Settings
from clipsearch_dev.media import make_video, query_image_bytes
from clipsearch_dev.outcomes import OutcomeCollector
from clipsearch_dev.stack import FUNCTION_ROOT, LocalStack, StackOptions

OUT = Path(__file__).parent / "out"
# Queries for the in-process measurements go to a bucket with no trigger, so the stack's own
# function doesn't handle them too (and compete for the stand-in's 1 search/s); the services
# measured here are configured with it as their query bucket (others' events are skipped).
UNTRIGGERED = "clipsearch-bench-queries"
VIDEO_NO = "VI-BENCH-0001"
THIS_TREE = coldstart.Variant("this tree", FUNCTION_ROOT, bytecode=True)


class TimedPort:
    """Forwards every call to the wrapped adapter and adds its duration to a shared total.

    Only the outermost timed call counts: a call made from inside another (the search's
    before-send hook writes the idempotency record) is already inside the outer one's time.
    """

    _depth = 0  # timed calls in progress (the benchmark's events run on one thread)

    def __init__(self, inner: Any, waits: list[float]) -> None:
        self._inner = inner
        self._waits = waits

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            if TimedPort._depth:
                return attr(*args, **kwargs)
            TimedPort._depth += 1
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._waits.append(time.perf_counter() - started)
                TimedPort._depth -= 1

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


def upload_query(
    stack: LocalStack, name: str, data: bytes, content_type: str = "image/jpeg"
) -> dict[str, Any]:
    """Store a query image in the untriggered bucket; its event payload (a finalized object)."""
    blob = stack.storage.bucket(UNTRIGGERED).blob(name)
    blob.metadata = {"video_no": VIDEO_NO, "prompt": "bench"}
    blob.upload_from_string(data, content_type=content_type)
    return {
        "bucket": UNTRIGGERED,
        "name": name,
        "generation": str(blob.generation),
        "size": str(len(data)),
        "contentType": content_type,
        "metadata": blob.metadata,
    }


def own_time(stack: LocalStack, video: Path, runs: int) -> list[dict[str, Any]]:
    settings = Settings.from_env(
        {**stack.env, "CLIPSEARCH_LOG_LEVEL": "WARNING", "CLIPSEARCH_QUERY_BUCKET": UNTRIGGERED}
    )
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
            resource = upload_query(stack, name, data, content_type)
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


class CountingSession:
    """Counts a storage client's HTTP requests as GCS bills them (operation class, bytes)."""

    def __init__(self, client: storage.Client) -> None:
        self.calls: list[tuple[str, int, int]] = []  # (kind, bytes down, bytes up)
        session = client._http
        self._request = session.request
        session.request = self.request

    @staticmethod
    def kind(method: str, url: str) -> str:
        path = urlsplit(url).path
        query = urlsplit(url).query
        if method == "GET":
            if "alt=media" in query:
                return "B download"
            return "A list" if path.endswith("/o") else "B metadata"
        if method == "POST":
            if "/upload/" in path:
                return "A insert"
            return "A rewrite" if "/rewriteTo/" in path or "/copyTo/" in path else "A other"
        if method in ("PATCH", "PUT"):
            return f"A {method.lower()}"
        return "free " + method.lower()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = self._request(method, url, *args, **kwargs)
        data = kwargs.get("data")
        up = len(data) if isinstance(data, bytes | str) else 0
        down = int(response.headers.get("content-length") or 0) if method == "GET" else 0
        self.calls.append((self.kind(method, url), down, up))
        return response

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {"class_a": 0, "class_b": 0, "bytes_down": 0, "bytes_up": 0}
        for kind, down, up in self.calls:
            if kind.startswith("A "):
                out["class_a"] += 1
            elif kind.startswith("B "):
                out["class_b"] += 1
            out["bytes_down"] += down
            out["bytes_up"] += up
        for kind, _, _ in self.calls:
            out[kind] = out.get(kind, 0) + 1
        return out


class CountingPublisher:
    """Counts published messages and their billable bytes (data + attributes)."""

    def __init__(self, inner: PubSubPublisher) -> None:
        self._inner = inner
        self.messages: list[int] = []

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        size = len(data) + sum(len(k) + len(v) for k, v in attributes.items())
        self.messages.append(size)
        return self._inner.publish(topic, data, attributes)


def operations(stack: LocalStack, video: Path, hits: tuple[int, ...]) -> list[dict[str, Any]]:
    """GCS operations, bytes, Pub/Sub messages and vendor searches per query, counted.

    The real service (bootstrap.build_service) against the local stack, with its storage
    client's HTTP requests counted and its publisher wrapped. For each N hits per query
    (the stand-in's top_k): clip mode, first sight of the source (a new instance and a fresh
    results prefix: no index sidecar, no clip to reuse); clip mode, the index in the
    instance's memory (the next query on that instance, the first query's outputs deleted so
    every clip is cut again); copy mode, first copy of the video; copy mode, the copy there.
    """
    assert stack.standin is not None
    rows = []
    token = uuid.uuid4().hex[:8]
    for n in hits:
        stack.standin.knobs.merge({"top_k": n})
        for mode in ("clip", "copy"):
            prefix = f"bench-ops-{token}-{n}-{mode}/"
            env = {
                **stack.env,
                "CLIPSEARCH_LOG_LEVEL": "WARNING",
                "CLIPSEARCH_QUERY_BUCKET": UNTRIGGERED,
                "CLIPSEARCH_FETCH_MODE": mode,
                "CLIPSEARCH_RESULTS_PREFIX": prefix,
            }
            client = storage.Client(project=stack.names.project)
            counter = CountingSession(client)
            publisher = CountingPublisher(PubSubPublisher(pubsub_v1.PublisherClient()))
            service = build_service(
                Settings.from_env(env),
                storage_client=client,
                publisher=publisher,
                logger=logging.getLogger("bench"),
            )
            states = (
                ("first sight", "index in memory")
                if mode == "clip"
                else (
                    "first copy",
                    "copy present",
                )
            )
            for i, state in enumerate(states):
                data = query_image_bytes(video, 4.0 + 7.3 * i + n)
                name = f"bench/ops-{token}-{n}-{mode}-{i}.jpg"
                resource = upload_query(stack, name, data)
                if mode == "clip" and i == 1:  # every clip cut again; the index stays in memory
                    for old in stack.storage.list_blobs(stack.names.results_bucket, prefix=prefix):
                        old.delete()
                time.sleep(1.1)  # the stand-in's 1 search/s
                counter.calls.clear()
                publisher.messages.clear()
                billed = stack.standin.stats.billed_searches
                downloaded = stack.standin.stats.download_bytes
                started = time.perf_counter()
                outcome = service.handle_event(
                    f"ops-{token}-{n}-{mode}-{i}",
                    "google.cloud.storage.object.v1.finalized",
                    resource,
                )
                wall = time.perf_counter() - started
                assert outcome.status == "success", outcome.message
                clips = (outcome.message or {}).get("clips", [])
                rows.append(
                    {
                        "hits": n,
                        "mode": mode,
                        "state": state,
                        "clips": len(clips),
                        "fallbacks": sum(1 for c in clips if c.get("fallback_reason")),
                        "event_ms": round(wall * 1000, 1),
                        "searches": stack.standin.stats.billed_searches - billed,
                        "api_download_bytes": stack.standin.stats.download_bytes - downloaded,
                        "pubsub_messages": len(publisher.messages),
                        "pubsub_bytes": sum(publisher.messages),
                        **counter.totals(),
                    }
                )
    stack.standin.knobs.merge({"top_k": 5})
    return rows


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


summary = coldstart.summary


def main(runs: int = 5, cold_runs: int = 10, e2e_runs: int = 20) -> dict[str, Any]:
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
            "cold_start": coldstart.summarize(
                coldstart.cold_start(stack, video, cold_runs, [THIS_TREE]), [THIS_TREE]
            )[0],
            "end_to_end": summary(end_to_end(stack, video, e2e_runs)),
            "operations": operations(stack, video, (1, 5, 10)),
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
    cold = report["cold_start"]
    lines += [
        "",
        "- cold start in clip mode, a new query object and a new results prefix per run (no "
        "duplicate, no reusable clip, no index sidecar; `python -m bench.coldstart` compares "
        f"trees): `import main`: {fmt(cold['import_main_s'])}; spawn → port listening: "
        f"{fmt(cold['listening_s'])}; spawn → first outcome received by a subscriber: "
        f"{fmt(cold['outcome_s'])}; clips cut: {cold['clips_cut']} of {cold['clips']}",
        f"- end to end on the local stack (upload → result received): {fmt(report['end_to_end'])}",
    ]
    lines += [
        "",
        "Per query, counted (GCS requests of the function's storage client by billing class; "
        "Pub/Sub bytes = data + attributes):",
        "",
        "| hits | mode | state | clips (fallbacks) | event ms | searches | GCS class A "
        "| GCS class B | GCS bytes down | GCS bytes up | Pub/Sub msgs (bytes) "
        "| API download bytes |",
        "|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report.get("operations", []):
        lines.append(
            f"| {r['hits']} | {r['mode']} | {r['state']} | {r['clips']} ({r['fallbacks']}) | "
            f"{r['event_ms']:.0f} | {r['searches']} | {r['class_a']} | {r['class_b']} | "
            f"{r['bytes_down']:,} | {r['bytes_up']:,} | {r['pubsub_messages']} "
            f"({r['pubsub_bytes']:,}) | {r['api_download_bytes']:,} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
