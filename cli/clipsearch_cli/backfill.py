"""`clipsearch backfill gs://BUCKET/PREFIX`: process images that predate the service.

The function runs on object *finalize*, so an existing object is processed by finalizing it
again: it is rewritten onto itself (a server-side copy, no bytes through this machine), only if
it is still at the generation that was examined (a precondition, so a concurrent upload is
never clobbered), with every property kept and one extra custom metadata key,
`clipsearch_backfill_at` (epoch seconds). The rewrite gives it a new generation whose outcome
the function writes as usual.

Resumable: an object whose current generation already has a stored result is skipped, and so
is one marked by a backfill less than `--pending-for` seconds ago (triggered, outcome not yet
written). Objects the function would refuse without searching (bad name, missing metadata) are
listed as invalid and not triggered. Each trigger costs one search: `--budget` is a hard cap on
the number of objects rewritten per run (attempts count, failed or not), listing stops when it is
spent, and triggers are paced at `--rate` per second (the API allows 1 search/s per account).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from clipsearch.core.naming import result_name
from clipsearch.core.validation import validate_query
from clipsearch.errors import PermanentError
from clipsearch.model import QueryObject
from clipsearch_cli.config import UsageError
from clipsearch_cli.context import Context
from clipsearch_cli.output import Progress, json_line, table
from clipsearch_cli.ports import ObjectChanged, StoredObject

MARKER = "clipsearch_backfill_at"
DEFAULT_BUDGET = 50


@dataclass(frozen=True)
class Row:
    """What backfill did with one object."""

    object: StoredObject
    action: str  # done | pending | invalid | output | changed | triggered | would-trigger
    detail: str = ""
    new_generation: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "bucket": self.object.bucket,
            "object": self.object.name,
            "generation": str(self.object.generation),
            "action": self.action,
            "detail": self.detail,
            "new_generation": None if self.new_generation is None else str(self.new_generation),
        }


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "backfill",
        help="trigger processing of existing objects, within a hard budget",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("location", metavar="gs://BUCKET/PREFIX")
    parser.add_argument(
        "--budget",
        type=int,
        default=DEFAULT_BUDGET,
        help=f"most objects to trigger (= searches) in this run ({DEFAULT_BUDGET})",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be triggered")
    parser.add_argument("--rate", type=float, default=1.0, help="triggers per second at most (1.0)")
    parser.add_argument(
        "--pending-for",
        type=float,
        default=900.0,
        help="seconds a triggered object without outcome is left alone (900)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.set_defaults(run=run)


def parse_location(location: str) -> tuple[str, str]:
    if not location.startswith("gs://"):
        raise UsageError(f"expected gs://BUCKET/PREFIX, got {location!r}")
    bucket, _, prefix = location.removeprefix("gs://").partition("/")
    if not bucket:
        raise UsageError(f"no bucket in {location!r}")
    return bucket, prefix


def classify(obj: StoredObject, ctx: Context, pending_for_s: float) -> Row | None:
    """The row of an object that must not be triggered, or None for a candidate."""
    settings = ctx.settings
    if obj.bucket == settings.results_bucket and obj.name.startswith(settings.results_prefix):
        return Row(obj, "output", "written by clipsearch")
    query_object = QueryObject(
        bucket=obj.bucket,
        name=obj.name,
        generation=obj.generation,
        size=obj.size,
        content_type=obj.content_type,
        metadata=dict(obj.metadata),
        event_id="",
        event_time="",
    )
    try:
        validate_query(
            query_object,
            max_image_bytes=settings.max_image_bytes,
            max_metadata_chars=settings.max_metadata_chars,
        )
    except PermanentError as error:
        return Row(obj, "invalid", f"{error.reason.value}: {error.message}")
    name = result_name(settings.results_prefix, obj.bucket, obj.name, obj.generation)
    if ctx.storage.stat(settings.results_bucket, name) is not None:
        return Row(obj, "done", f"gs://{settings.results_bucket}/{name}")
    marked = obj.metadata.get(MARKER)
    if marked is not None:
        try:
            age = ctx.wall() - float(marked)
        except ValueError:
            age = pending_for_s
        if age < pending_for_s:
            return Row(obj, "pending", f"triggered {age:.0f}s ago, no outcome yet")
    return None


def _check_args(args: argparse.Namespace, ctx: Context) -> tuple[str, str]:
    if args.budget < 0:
        raise UsageError("--budget must be >= 0")
    if args.rate <= 0:
        raise UsageError("--rate must be > 0")
    if not ctx.settings.results_bucket:
        raise UsageError("no results bucket: set CLIPSEARCH_RESULTS_BUCKET (or --env-file)")
    return parse_location(args.location)


def run(args: argparse.Namespace, ctx: Context) -> int:
    bucket, prefix = _check_args(args, ctx)
    interval = 1.0 / args.rate
    spent = 0
    last_trigger: float | None = None
    rows: list[Row] = []
    progress = Progress(args.budget, "backfill", ctx.stderr, enabled=ctx.progress)
    exhausted = False

    def emit(row: Row) -> None:
        if args.json:
            json_line(row.as_json(), ctx.stdout)
        else:
            rows.append(row)

    for obj in ctx.storage.list(bucket, prefix):
        skipped = classify(obj, ctx, args.pending_for)
        if skipped is not None:
            emit(skipped)
            continue
        if spent >= args.budget:
            exhausted = True
            break
        spent += 1  # counted before the attempt: a failed call may still have triggered
        if args.dry_run:
            emit(Row(obj, "would-trigger"))
            progress.advance(obj.name)
            continue
        if last_trigger is not None:
            wait = last_trigger + interval - ctx.clock()
            if wait > 0:
                ctx.sleep(wait)
        last_trigger = ctx.clock()
        metadata = {**obj.metadata, MARKER: f"{ctx.wall():.3f}"}
        try:
            new_generation = ctx.storage.refinalize(obj, metadata)
        except ObjectChanged as error:
            emit(Row(obj, "changed", str(error)))
        else:
            emit(Row(obj, "triggered", new_generation=new_generation))
        progress.advance(obj.name)
    progress.close()

    if not args.json:
        _print_table(rows, ctx)
    verb = "would trigger" if args.dry_run else "triggered"
    summary = f"{verb} {spent} of a budget of {args.budget}"
    if exhausted:
        summary += "; budget spent before the listing ended: run again to continue"
    ctx.warn(summary)
    return 0


def _print_table(rows: list[Row], ctx: Context) -> None:
    def detail(row: Row) -> str:
        if row.detail or row.new_generation is None:
            return row.detail
        return f"new generation {row.new_generation}"

    table(
        [[r.object.uri, str(r.object.generation), r.action, detail(r)] for r in rows],
        ("object", "generation", "action", "detail"),
        ctx.stdout,
    )
