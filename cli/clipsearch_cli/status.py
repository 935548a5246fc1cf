"""`clipsearch status`: what happened in a time window, from the stored result JSON.

Reads every outcome under `PREFIX/results/` of the results bucket whose `produced_at` falls in
the window and prints: outcomes by status and reason, queries that reached the search API,
p50/p95 latency of each stage (read, search, fetch, total), and clip artifacts (count, bytes
stored, fallbacks by reason). The same view as the Cloud Monitoring dashboard, without it: run
it when an alert fires (docs/operations.md). Works against the local stack and Google Cloud.

"searched" counts outcomes whose query reached the vendor's search: successes and the reasons
the API or its index produced (api_*, video_*, search_unconfirmed). It is one per query; the
log-based metric `searches_sent` counts each request sent, retries included.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clipsearch_cli.config import UsageError
from clipsearch_cli.context import Context
from clipsearch_cli.output import json_line, table

STAGES = ("read", "search", "fetch", "total")
SEARCHED_PREFIXES = ("api_", "video_", "search_")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "status",
        help="summarise the outcomes of a time window from the stored result JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--since",
        default="1h",
        metavar="WHEN",
        help="window start: a duration back from now (90s, 15m, 1h, 2d) or an RFC 3339 time (1h)",
    )
    parser.add_argument(
        "--until", metavar="WHEN", help="window end: an RFC 3339 time or a duration ago (now)"
    )
    parser.add_argument(
        "--prefix",
        help="results prefix the function writes under (default: $CLIPSEARCH_RESULTS_PREFIX)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    parser.set_defaults(run=run)


# ---- pure core ----------------------------------------------------------------------------


def parse_when(value: str, now: datetime) -> datetime:
    """A duration back from `now` (e.g. 15m) or an RFC 3339 timestamp."""
    duration = _DURATION.match(value.strip())
    if duration:
        return now - timedelta(seconds=float(duration[1]) * _UNITS[duration[2]])
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"not a duration (15m, 1h, 2d) or an RFC 3339 time: {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: a value that occurred, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Summary:
    start: datetime
    end: datetime
    outcomes: int
    by_status: Mapping[str, int]
    by_reason: Mapping[str, int]
    searched: int
    latency_ms: Mapping[str, Mapping[str, float | None]]
    clips: int
    clip_bytes: int
    reused_clips: int
    fallbacks: Mapping[str, int]
    unreadable: int = 0
    skipped: Sequence[str] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return {
            "window": {"start": _iso(self.start), "end": _iso(self.end)},
            "outcomes": self.outcomes,
            "by_status": dict(self.by_status),
            "by_reason": dict(self.by_reason),
            "searched": self.searched,
            "latency_ms": {k: dict(v) for k, v in self.latency_ms.items()},
            "clips": {
                "count": self.clips,
                "bytes": self.clip_bytes,
                "reused": self.reused_clips,
                "fallbacks": dict(self.fallbacks),
            },
            "unreadable": self.unreadable,
        }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def produced_at(outcome: Mapping[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(outcome["produced_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def searched(outcome: Mapping[str, Any]) -> bool:
    if outcome.get("status") == "success":
        return True
    reason = str((outcome.get("error") or {}).get("reason") or "")
    return reason.startswith(SEARCHED_PREFIXES)


def summarise(
    outcomes: Iterable[Mapping[str, Any]], start: datetime, end: datetime, unreadable: int = 0
) -> Summary:
    """Counts and percentiles over the outcomes produced in [start, end)."""
    by_status: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    fallbacks: Counter[str] = Counter()
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    total = searches = clips = clip_bytes = reused = 0
    for outcome in outcomes:
        when = produced_at(outcome)
        if when is None or not start <= when < end:
            continue
        total += 1
        by_status[str(outcome.get("status"))] += 1
        if outcome.get("status") != "success":
            by_reason[str((outcome.get("error") or {}).get("reason"))] += 1
        searches += searched(outcome)
        for stage in STAGES:
            value = (outcome.get("timings_ms") or {}).get(stage)
            if isinstance(value, int | float):
                stages[stage].append(float(value))
        for clip in outcome.get("clips") or []:
            if clip.get("fallback_reason"):
                fallbacks[str(clip["fallback_reason"])] += 1
            artifact = clip.get("artifact")
            if not artifact:
                continue
            clips += 1
            if artifact.get("reused"):
                reused += 1  # stored by an earlier query: not new bytes
            else:
                clip_bytes += int(artifact.get("size") or 0)
    latency = {
        stage: {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}
        for stage, values in stages.items()
    }
    return Summary(
        start=start,
        end=end,
        outcomes=total,
        by_status=dict(sorted(by_status.items())),
        by_reason=dict(by_reason.most_common()),
        searched=searches,
        latency_ms=latency,
        clips=clips,
        clip_bytes=clip_bytes,
        reused_clips=reused,
        fallbacks=dict(fallbacks.most_common()),
        unreadable=unreadable,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def render(summary: Summary) -> list[tuple[Sequence[str], list[list[str]]]]:
    """The tables to print: (header, rows) each."""
    window = f"{_iso(summary.start)} .. {_iso(summary.end)}"
    overview = [
        ["window", window],
        ["outcomes", str(summary.outcomes)],
        *[[f"  {status}", str(n)] for status, n in summary.by_status.items()],
        ["searched", str(summary.searched)],
        ["clips stored", f"{summary.clips} ({summary.reused_clips} reused)"],
        ["clip bytes (new)", str(summary.clip_bytes)],
    ]
    if summary.unreadable:
        overview.append(["unreadable results", str(summary.unreadable)])
    reasons = [[reason, str(n)] for reason, n in summary.by_reason.items()] or [["-", "0"]]
    latency = [
        [stage, _ms(v["p50"]), _ms(v["p95"]), str(int(v["n"] or 0))]
        for stage, v in summary.latency_ms.items()
    ]
    fallbacks = [[reason, str(n)] for reason, n in summary.fallbacks.items()] or [["-", "0"]]
    return [
        (("summary", "value"), overview),
        (("error reason", "outcomes"), reasons),
        (("stage", "p50 ms", "p95 ms", "n"), latency),
        (("clip fallback", "clips"), fallbacks),
    ]


# ---- the command --------------------------------------------------------------------------


def run(args: argparse.Namespace, ctx: Context) -> int:
    bucket = ctx.settings.results_bucket
    if not bucket:
        raise UsageError("no results bucket: set CLIPSEARCH_RESULTS_BUCKET (or use --env-file)")
    now = datetime.fromtimestamp(ctx.wall(), UTC)
    start = parse_when(args.since, now)
    end = parse_when(args.until, now) if args.until else now
    if start >= end:
        raise UsageError("--since must be before --until")
    prefix = f"{args.prefix if args.prefix is not None else ctx.settings.results_prefix}results/"
    outcomes: list[dict[str, Any]] = []
    unreadable = 0
    for obj in ctx.storage.list(bucket, prefix):
        if not obj.name.endswith(".json"):
            continue
        data = ctx.storage.read(bucket, obj.name)
        try:
            body = json.loads(data or b"")
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            ctx.warn(f"skipping {obj.uri}: not an outcome")
            unreadable += 1
            continue
        outcomes.append(body)
    summary = summarise(outcomes, start, end, unreadable)
    if args.json:
        json_line(summary.as_json(), ctx.stdout)
        return 0
    for index, (header, rows) in enumerate(render(summary)):
        if index:
            ctx.stdout.write("\n")
        table(rows, header, ctx.stdout)
    ctx.stdout.flush()
    return 0
