"""`clipsearch submit`: upload query images with their metadata, optionally wait for outcomes.

Each image is checked first with the function's own validation, so what the function would
refuse is refused here with the same reason code and message, before any upload. `--wait`
finds each upload's own outcome at its deterministic result name (bucket, object and the
generation the upload returned), which the function writes before it publishes the message:
no subscription is read, so no other client's messages are consumed.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipsearch.core.naming import result_name
from clipsearch.core.validation import EXTENSION_KINDS, check_image_bytes, validate_query
from clipsearch.errors import PermanentError
from clipsearch.model import QueryObject
from clipsearch_cli.config import UsageError, require
from clipsearch_cli.context import Context
from clipsearch_cli.output import CLIP_HEADER, Progress, clip_rows, json_line, table


@dataclass(frozen=True)
class Submission:
    image: Path
    bucket: str
    name: str
    generation: int
    result_name: str

    @property
    def key(self) -> str:
        return f"gs://{self.bucket}/{self.name}#{self.generation}"


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "submit",
        help="upload query images with metadata; --wait for their outcomes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--video-no", required=True, help="video to search (metadata video_no)")
    parser.add_argument("--prompt", required=True, help="what to look for (metadata prompt)")
    parser.add_argument("--unique-id", help="namespace of the video (metadata unique_id)")
    parser.add_argument("--bucket", help="query bucket (default: $CLIPSEARCH_QUERY_BUCKET)")
    parser.add_argument("--prefix", default="", help="object-name prefix, e.g. 'shots/'")
    parser.add_argument("--wait", action="store_true", help="wait for each upload's outcome")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds --wait waits in all (300)"
    )
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.set_defaults(run=run)


def content_type_for(name: str) -> str:
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    kind = EXTENSION_KINDS.get(extension)
    return f"image/{kind}" if kind else "application/octet-stream"


def check_locally(
    bucket: str, name: str, data: bytes, metadata: dict[str, str], ctx: Context
) -> str:
    """The function's checks, in its order; returns the content type to upload with."""
    content_type = content_type_for(name)
    obj = QueryObject(
        bucket=bucket,
        name=name,
        generation=0,
        size=len(data),
        content_type=content_type,
        metadata=metadata,
        event_id="",
        event_time="",
    )
    limits = ctx.settings
    query = validate_query(
        obj, max_image_bytes=limits.max_image_bytes, max_metadata_chars=limits.max_metadata_chars
    )
    check_image_bytes(query, data, limits.max_image_bytes)
    return content_type


def run(args: argparse.Namespace, ctx: Context) -> int:
    bucket = args.bucket or require(
        ctx.settings.query_bucket, "query bucket", "--bucket", "CLIPSEARCH_QUERY_BUCKET"
    )
    if args.wait:
        require(
            ctx.settings.results_bucket,
            "results bucket to wait on",
            "--env-file",
            "CLIPSEARCH_RESULTS_BUCKET",
        )
    names = [args.prefix + path.name for path in args.images]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"two images would share the object name {duplicates[0]!r}")
    metadata = {"video_no": args.video_no, "prompt": args.prompt}
    if args.unique_id is not None:
        metadata["unique_id"] = args.unique_id

    failed = False
    submissions: list[Submission] = []
    progress = Progress(len(args.images), "upload", ctx.stderr, enabled=ctx.progress)
    for path, name in zip(args.images, names, strict=True):
        try:
            data = path.read_bytes()
        except OSError as error:
            ctx.warn(f"cannot read {path}: {error.strerror}")
            failed = True
            progress.advance()
            continue
        try:
            content_type = check_locally(bucket, name, data, metadata, ctx)
        except PermanentError as error:
            ctx.warn(f"refused {path}: {error.reason.value}: {error.message}")
            failed = True
            progress.advance()
            continue
        generation = ctx.storage.upload(bucket, name, data, content_type, metadata)
        submissions.append(
            Submission(
                path,
                bucket,
                name,
                generation,
                result_name(ctx.settings.results_prefix, bucket, name, generation),
            )
        )
        progress.advance(name)
    progress.close()

    if not args.wait:
        _print_submitted(submissions, args.json, ctx)
        return 1 if failed else 0
    outcomes = wait_for_outcomes(submissions, args.timeout, ctx)
    rows: list[list[str]] = []
    for submission in submissions:
        outcome = outcomes.get(submission)
        if outcome is None:
            failed = True
            ctx.warn(
                f"no outcome for {submission.key} within {args.timeout:g}s (expected at"
                f" gs://{ctx.settings.results_bucket}/{submission.result_name})"
            )
            continue
        failed = failed or outcome["status"] != "success"
        if args.json:
            json_line(outcome, ctx.stdout)
        else:
            rows.extend(clip_rows(outcome))
    if not args.json and rows:
        table(rows, CLIP_HEADER, ctx.stdout)
    return 1 if failed else 0


def _print_submitted(submissions: list[Submission], as_json: bool, ctx: Context) -> None:
    results_bucket = ctx.settings.results_bucket or "RESULTS_BUCKET"
    rows = []
    for s in submissions:
        result_uri = f"gs://{results_bucket}/{s.result_name}"
        if as_json:
            json_line(
                {
                    "image": str(s.image),
                    "bucket": s.bucket,
                    "object": s.name,
                    "generation": str(s.generation),
                    "result_uri": result_uri,
                },
                ctx.stdout,
            )
        else:
            rows.append([str(s.image), s.key, result_uri])
    if rows:
        table(rows, ("image", "uploaded", "outcome will be at"), ctx.stdout)


def wait_for_outcomes(
    submissions: list[Submission], timeout_s: float, ctx: Context
) -> dict[Submission, dict[str, Any]]:
    """Poll each submission's own result JSON with backoff until all are found or time is up."""
    found: dict[Submission, dict[str, Any]] = {}
    deadline = ctx.clock() + timeout_s
    delay = 0.25
    progress = Progress(len(submissions), "wait", ctx.stderr, enabled=ctx.progress)
    while True:
        for submission in submissions:
            if submission in found:
                continue
            raw = ctx.storage.read(ctx.settings.results_bucket, submission.result_name)
            if raw is not None:
                found[submission] = json.loads(raw)
                progress.advance(submission.name)
        remaining = deadline - ctx.clock()
        if len(found) == len(submissions) or remaining <= 0:
            break
        ctx.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 5.0)
    progress.close()
    return found
