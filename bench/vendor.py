"""Clip mode at the search rate on the production path: sources only through the vendor's
download endpoint (`CLIPSEARCH_FETCH_SOURCE=api`), at the vendor's documented limits.

On the local stack (the real function server, the stand-in at 1 search/s and 12 downloads a
minute), N queries are uploaded at R per second over S sources of 10 min to 1 h (low
resolution), each answered with 5 hits; once per stand-in profile (`Range` honoured, ignored).
Measured: queries per minute sustained (first upload to last outcome), outcomes per query,
redeliveries, vendor download requests and bytes (the stand-in's counters and each outcome
line's), first-sight latency per source size, bytes read from our copy per clip.

`--before REF` runs the same load against the function as it was at git REF (extracted with
`git archive`, nothing checked out), for at most `--before-minutes`.

Run: make bench-vendor  (or .venv/bin/python -m bench.vendor); writes bench/out/vendor.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.coldstart import extract_tree
from clipsearch_dev.media import make_video, query_image_bytes
from clipsearch_dev.outcomes import OutcomeCollector
from clipsearch_dev.stack import LocalStack, StackOptions

OUT = Path(__file__).parent / "out"
MEDIA = OUT / "vendor-media"
SOURCE_MINUTES = (10, 20, 40, 60)


def sources() -> list[tuple[str, Path, float]]:
    """(video_no, path, seconds) of the benchmark's sources, made once and kept."""
    MEDIA.mkdir(parents=True, exist_ok=True)
    made = []
    for minutes in SOURCE_MINUTES:
        path = MEDIA / f"src-{minutes}min.mp4"
        if not path.exists():
            make_video(path, seconds=minutes * 60, fps=2, width=160, height=120, gop=10)
        made.append((f"VI-VENDOR-{minutes:03d}MIN", path, minutes * 60.0))
    return made


def log_entries(stack: LocalStack) -> list[dict[str, Any]]:
    text = stack.function_log.read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def run(
    profile: str,
    *,
    queries: int,
    rate: float,
    function_root: Path | None = None,
    budget_s: float | None = None,
    fetch_source: str = "api",
) -> dict[str, Any]:
    media = sources()
    rng = random.Random(21)
    with tempfile.TemporaryDirectory() as tmp:
        options = StackOptions(
            state_dir=Path(tmp) / "state",
            function_env={
                "CLIPSEARCH_FETCH_SOURCE": fetch_source,
                "CLIPSEARCH_FETCH_MODE": "clip",
            },
            standin_profile=profile,
        )
        if function_root is not None:
            options.function_root = function_root
        with LocalStack(options) as stack:
            assert stack.standin is not None
            sizes: dict[str, int] = {}
            for video_no, path, _ in media:
                blob = stack.upload_video(path, video_no)
                sizes[blob] = path.stat().st_size
            plan = []
            for i in range(queries):
                video_no, path, seconds = media[i % len(media)]
                at = round(rng.uniform(1.0, seconds - 1.0), 1)
                plan.append(
                    (f"vendor/{i:03d}-{video_no}-{at}.jpg", video_no, query_image_bytes(path, at))
                )
            stack.standin.stats.reset()
            with OutcomeCollector(
                [stack.names.results_subscription, stack.names.errors_subscription]
            ) as collector:
                started = time.monotonic()
                keys = []
                first_of: dict[str, tuple[str, str, str]] = {}
                for i, (name, video_no, image) in enumerate(plan):
                    time.sleep(max(0.0, started + i / rate - time.monotonic()))
                    generation = stack.drop_query(
                        name, image, {"video_no": video_no, "prompt": "p"}
                    )
                    key = (stack.names.query_bucket, name, str(generation))
                    keys.append(key)
                    first_of.setdefault(video_no, key)
                timeout = budget_s if budget_s is not None else queries / rate * 3 + 300
                try:
                    outcomes = collector.wait_for(
                        keys, timeout_s=max(1.0, started + timeout - time.monotonic())
                    )
                except TimeoutError:
                    outcomes = {k: r[0] for k in keys if (r := collector.for_key(k))}
                collector.settle(5.0)  # would a second outcome of any query arrive?
                per_key = {k: len(collector.for_key(k)) for k in keys}
            arrivals = sorted(r.arrived_at for r in outcomes.values())
            elapsed = (arrivals[-1] - started) if arrivals else 0.0
            # Steady pace: outcomes after the first, over the time between first and last.
            spread = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
            stats = stack.standin.stats.as_dict()
            entries = log_entries(stack)
    answered = len(outcomes)
    lines = [e for e in entries if e.get("event") == "outcome"]
    clip_lines = [e for e in entries if e.get("event") == "clip" and e.get("clip_bytes")]
    cut = [e for e in clip_lines if e.get("requests")]
    ratios = [e["bytes_read"] / e["clip_bytes"] for e in cut if e.get("index_path") == "tables"]
    downloads = [e for e in entries if e.get("event") == "download" and e.get("source_bytes")]
    statuses: dict[str, int] = {}
    for received in outcomes.values():
        statuses[received.body["status"]] = statuses.get(received.body["status"], 0) + 1
    modes: dict[str, int] = {}
    for received in outcomes.values():
        for clip in received.body["clips"]:
            mode = (clip["artifact"] or {}).get("mode", "none")
            modes[mode] = modes.get(mode, 0) + 1
    first_sight = []
    by_object = {o.body["query"]["object"]: o for o in outcomes.values()}
    for video_no, key in first_of.items():
        first = by_object.get(key[1])
        line = next((d for d in downloads if f"/{video_no}.mp4" in d.get("message", "")), None)
        first_sight.append(
            {
                "video_no": video_no,
                "source_bytes": sizes.get(f"{video_no}.mp4"),
                "answer_wait_ms": None if line is None else line.get("wait_s", 0) * 1000,
                "download_ms": None if line is None else line.get("download_ms"),
                "fetch_ms": None if first is None else first.body["timings_ms"]["fetch"],
                "total_ms": None if first is None else first.body["timings_ms"]["total"],
            }
        )
    return {
        "profile": profile,
        "function": ("this tree" if function_root is None else str(function_root))
        + ("" if fetch_source == "api" else f", source {fetch_source}"),
        "queries": queries,
        "rate_per_s": rate,
        "answered": answered,
        "outcomes_per_query_max": max(per_key.values()) if per_key else 0,
        "duplicates": sum(1 for n in per_key.values() if n > 1),
        "statuses": statuses,
        "artifact_modes": modes,
        "elapsed_s": elapsed,
        "queries_per_min": answered / elapsed * 60 if elapsed else 0.0,
        "sustained_per_min": (answered - 1) / spread * 60 if spread else 0.0,
        "first_outcome_s": (arrivals[0] - started) if arrivals else None,
        "redeliveries": sum(1 for e in entries if e.get("event") == "retry"),
        "vendor_download_requests": stats["requests"].get("download", 0),
        "vendor_download_bytes": stats["download_bytes"],
        "vendor_bytes_by_source": stats["download_bytes_by_blob"],
        "source_bytes": sizes,
        "searches_billed": stats["billed_searches"],
        "outcome_line_vendor_requests": sum(e.get("vendor_requests", 0) for e in lines),
        "outcome_line_vendor_bytes": sum(e.get("vendor_bytes", 0) for e in lines),
        "first_sight": first_sight,
        "clips_cut": len(cut),
        "clips_reused": len(clip_lines) - len(cut),
        "copy_bytes_per_clip_ratio_median": statistics.median(ratios) if ratios else None,
        "copy_bytes_per_clip_ratio_max": max(ratios) if ratios else None,
        "copy_bytes_per_clip_n": len(ratios),
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| function | stand-in profile | answered | queries/min (first upload to last outcome) | "
        "sustained (first to last outcome) | outcomes per query (max) | redeliveries | "
        "vendor download requests | per query | vendor bytes ÷ sources' bytes |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        total = sum(r["source_bytes"].values())
        out.append(
            f"| {r['function']} | {r['profile']} | {r['answered']}/{r['queries']} | "
            f"{r['queries_per_min']:.1f} | {r.get('sustained_per_min', 0.0):.1f} | "
            f"{r['outcomes_per_query_max']} | {r['redeliveries']} | "
            f"{r['vendor_download_requests']} | "
            f"{r['vendor_download_requests'] / max(1, r['answered']):.3f} | "
            f"{r['vendor_download_bytes'] / total:.3f} |"
        )
    out += [
        "",
        "| stand-in profile | source | bytes | rate slot + answer | body into our copy | "
        "first query's fetch | first query's total |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        for f in r["first_sight"]:
            out.append(
                f"| {r['profile']} | {f['video_no']} | {f['source_bytes'] or 0:,} | "
                f"{f['answer_wait_ms'] or 0:.0f} ms | "
                f"{f['download_ms'] or 0:.0f} ms | {f['fetch_ms'] or 0:.0f} ms | "
                f"{f['total_ms'] or 0:.0f} ms |"
            )
    out += [
        "",
        "| stand-in profile | clips cut | reused | bytes read from our copy ÷ clip (median, max) |",
        "|---|--:|--:|--:|",
    ]
    for r in rows:
        med, top = r["copy_bytes_per_clip_ratio_median"], r["copy_bytes_per_clip_ratio_max"]
        shown = "—" if med is None else f"{med:.2f}, {top:.2f} (n={r['copy_bytes_per_clip_n']})"
        out.append(f"| {r['profile']} | {r['clips_cut']} | {r['clips_reused']} | {shown} |")
    return "\n".join(out) + "\n"


def medians(rows: list[dict[str, Any]]) -> str:
    """Queries per minute per profile over the repeated runs: median (min-max)."""
    out = [
        "",
        "| function | stand-in profile | runs | queries/min median (min-max) | "
        "sustained median (min-max) |",
        "|---|---|--:|--:|--:|",
    ]
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in rows:
        pair = (r["queries_per_min"], r.get("sustained_per_min", 0.0))
        groups.setdefault((r["function"], r["profile"]), []).append(pair)
    for (function, profile), pairs in groups.items():
        rates = sorted(p[0] for p in pairs)
        steady = sorted(p[1] for p in pairs)
        out.append(
            f"| {function} | {profile} | {len(pairs)} | {statistics.median(rates):.1f} "
            f"({rates[0]:.1f}-{rates[-1]:.1f}) | {statistics.median(steady):.1f} "
            f"({steady[0]:.1f}-{steady[-1]:.1f}) |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m bench.vendor")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--profiles", default="default,range-ignored")
    parser.add_argument("--repeat", type=int, default=1, help="runs per profile, interleaved")
    parser.add_argument("--before", default=None, help="also run the function at this git ref")
    parser.add_argument("--before-minutes", type=float, default=5.0)
    parser.add_argument(
        "--gcs",
        action="store_true",
        help="also run with CLIPSEARCH_FETCH_SOURCE=gcs, for comparison",
    )
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for _ in range(args.repeat):
        for profile in args.profiles.split(","):
            rows.append(run(profile, queries=args.queries, rate=args.rate))
            print(json.dumps(rows[-1], indent=1), flush=True)
    if args.gcs:
        rows.append(run("default", queries=args.queries, rate=args.rate, fetch_source="gcs"))
        print(json.dumps(rows[-1], indent=1), flush=True)
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            root = extract_tree(args.before, Path(tmp))
            row = run(
                "default",
                queries=args.queries,
                rate=args.rate,
                function_root=root,
                budget_s=args.before_minutes * 60,
            )
            row["function"] = f"git {args.before}"
            rows.append(row)
            print(json.dumps(row, indent=1), flush=True)
    (OUT / "vendor.json").write_text(json.dumps(rows, indent=2))
    text = table(rows) + medians(rows)
    (OUT / "vendor.md").write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
