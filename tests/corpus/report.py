"""Cut the whole corpus and print the results table (markdown) for docs/corpus.md.

    .venv/bin/python -m tests.corpus.report [--failures] [--kinds a,b] [--json out.json]

Each table cell is one hit in the three modes (cold / sequential / sidecar): R right,
F fallback (allowed by tests/corpus/allowlist.py), f fallback NOT allowed, W wrong, C crash,
H hang (a cut over 60 s).
Bytes read ÷ clip size: the median over the kind's clips, cold (index walked and fetched)
and cached (index from the sidecar); "open ÷ file" is what a cold open reads (the index the
sidecar keeps) as a share of the file (12 s files: 64 KiB reads make 14-28% the floor here).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from clipsearch.clipping import ClipSource, FileRangeSource
from tests.corpus.recipes import KINDS, RECIPES, _ffmpeg_version, build, command
from tests.corpus.runner import MODES, Outcome, hit_names, run

CODE = {"right": "R", "wrong": "W", "crash": "C", "hang": "H"}


def _code(o: Outcome) -> str:
    if o.status == "fallback":
        return "F" if o.reason in o.allowed else "f"
    return CODE[o.status]


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def open_share(kind: str) -> str:
    """Bytes a cold open reads (the index the sidecar keeps) ÷ the file's size."""
    path = build(kind)
    source = FileRangeSource(path)
    try:
        with ClipSource(source):
            pass
    except Exception:
        return "-"
    return f"{source.bytes_read / path.stat().st_size:.0%}"


def collect(kinds: tuple[str, ...]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for mode in MODES:
                outcomes += run(kind, mode, hit_names(), Path(tmp) / kind / mode).values()
    return outcomes


def table(outcomes: list[Outcome], kinds: tuple[str, ...]) -> str:
    hits = hit_names()
    by = {(o.kind, o.mode, o.hit): o for o in outcomes}
    lines = [
        "| kind | " + " | ".join(hits) + " | cold ÷ clip | cached ÷ clip | open ÷ file |",
        "|---|" + "---|" * len(hits) + "---|---|---|",
    ]
    for kind in kinds:
        cells = ["".join(_code(by[kind, m, h]) for m in MODES) for h in hits]
        cold = [by[kind, "cold", h].ratio for h in hits if by[kind, "cold", h].clip_size]
        cached = [by[kind, "sidecar", h].ratio for h in hits if by[kind, "sidecar", h].clip_size]
        lines.append(
            f"| {kind} | "
            + " | ".join(cells)
            + f" | {_median(cold)} | {_median(cached)} | {open_share(kind)} |"
        )
    return "\n".join(lines)


def totals(outcomes: list[Outcome]) -> str:
    status = Counter(o.status for o in outcomes)
    allowed = Counter(o.reason for o in outcomes if o.status == "fallback" and _code(o) == "F")
    other = Counter(o.reason for o in outcomes if o.status == "fallback" and _code(o) == "f")
    parts = [
        f"{len(outcomes)} cuts: {status['right']} right",
        f"{sum(allowed.values())} honest fallbacks ("
        + ", ".join(f"{r} {n}" for r, n in sorted(allowed.items()))
        + ")",
        f"{sum(other.values())} fallbacks with a wrong reason ("
        + ", ".join(f"{r} {n}" for r, n in sorted(other.items()))
        + ")",
        f"{status['wrong']} wrong",
        f"{status['crash']} crashes",
        f"{status['hang']} hangs",
    ]
    paths = Counter(o.index_path for o in outcomes if o.status in ("right", "wrong"))
    index = ", ".join(f"{p} {n}" for p, n in sorted(paths.items()))
    return ", ".join(parts) + f". Clips by index: {index}."


def failures(outcomes: list[Outcome]) -> str:
    lines = []
    for o in outcomes:
        if _code(o) in ("R", "F"):
            continue
        what = o.detail if o.status != "fallback" else f"fallback {o.reason}: {o.detail}"
        lines.append(
            f"- **{o.kind}** / {o.hit} / {o.mode}: {o.status} — {what[:400]}\n"
            f"  reproduce: `.venv/bin/pytest tests/corpus -q -k '{o.kind}-{o.hit}-{o.mode}'`"
        )
    return "\n".join(lines)


def grouped(outcomes: list[Outcome]) -> str:
    """Failures grouped by (kind, problem), for the engine owner's list."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for o in outcomes:
        if _code(o) in ("R", "F"):
            continue
        problem = o.detail if o.status != "fallback" else f"{o.reason}: {o.detail}"
        first = problem.split("; ")[0]
        # numbers vary per hit; group on the words
        shape = "".join(c for c in first if not c.isdigit())[:90]
        groups.setdefault((o.kind, o.status, shape), []).append(f"{o.hit}/{o.mode}: {problem}")
    lines = []
    for (kind, status, _), cases in groups.items():
        which = ", ".join(c.split(":")[0] for c in cases)
        lines.append(
            f"- **{kind}** — {status}, {len(cases)} cut(s) [{which}]\n"
            f"  e.g. {cases[0][:500]}\n"
            f"  source: `{command(kind)}`\n"
            f"  reproduce: `.venv/bin/pytest tests/corpus -q -k '{kind}-'` "
            f"or `.venv/bin/python -m tests.corpus.report --kinds {kind} --failures`"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="", help="comma-separated kinds (default: all)")
    parser.add_argument("--failures", action="store_true", help="also list every failure")
    parser.add_argument("--json", type=Path, help="write every outcome here")
    parser.add_argument("--grouped", action="store_true", help="failures grouped by problem")
    parser.add_argument("--from-json", type=Path, help="report a saved run instead of cutting")
    args = parser.parse_args()
    kinds = tuple(args.kinds.split(",")) if args.kinds else KINDS
    started = time.perf_counter()
    if args.from_json:
        outcomes = [Outcome(**o) for o in json.loads(args.from_json.read_text())]
        kinds = tuple(k for k in kinds if any(o.kind == k for o in outcomes))
    else:
        outcomes = collect(kinds)
    elapsed = time.perf_counter() - started
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ffmpeg = _ffmpeg_version().split(" Copyright")[0]
    print(f"Corpus run {now}, {ffmpeg} (files), PyAV's FFmpeg (engine), {elapsed:.0f} s.\n")
    print(totals(outcomes) + "\n")
    print(table(outcomes, kinds) + "\n")
    print("Kinds:\n")
    for kind in kinds:
        print(f"- `{kind}`: {RECIPES[kind].what} — `{command(kind)}`")
    if args.failures:
        print("\nFailures:\n")
        print(failures(outcomes))
    if args.grouped:
        print("\nFailures by problem:\n")
        print(grouped(outcomes))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))


if __name__ == "__main__":
    main()
