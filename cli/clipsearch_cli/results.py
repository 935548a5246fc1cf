"""`clipsearch results`: read outcome messages from the results and errors subscriptions.

Messages are decoded from Avro's JSON encoding (`clipsearch.contract.from_avro_json`) to the
plain shape stored at `result_uri`, printed, then acknowledged: this command CONSUMES what it
prints, as any subscriber on that subscription would. Give it a subscription of its own
(or `--peek`, which hands every message back unacknowledged) when others read the same one.
Without `--follow` it stops once the subscriptions are drained.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from clipsearch.contract import from_avro_json
from clipsearch_cli.config import UsageError
from clipsearch_cli.context import Context
from clipsearch_cli.output import CLIP_HEADER, clip_rows, json_line, table
from clipsearch_cli.ports import Pulled


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "results",
        help="read outcome messages from the subscriptions (table or JSON lines)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--subscription",
        action="append",
        metavar="SUB",
        help="projects/P/subscriptions/S (repeatable; default: $CLIPSEARCH_RESULTS_SUBSCRIPTION"
        " and $CLIPSEARCH_ERRORS_SUBSCRIPTION)",
    )
    parser.add_argument("--follow", action="store_true", help="keep reading until interrupted")
    parser.add_argument("--json", action="store_true", help="one plain-JSON outcome per line")
    parser.add_argument("--max", type=int, help="stop after this many outcomes")
    parser.add_argument(
        "--peek", action="store_true", help="do not acknowledge: leave the messages for others"
    )
    parser.add_argument(
        "--poll", type=float, default=2.0, help="seconds one pull waits for messages (2)"
    )
    parser.set_defaults(run=run)


def decode(pulled: Pulled) -> dict[str, Any]:
    """The outcome in its plain-JSON shape; ValueError when it is not an outcome message."""
    body = from_avro_json(json.loads(pulled.data))
    if not isinstance(body, dict) or "status" not in body or "query" not in body:
        raise ValueError("not an outcome message")
    return body


def run(args: argparse.Namespace, ctx: Context) -> int:
    subscriptions = args.subscription or [
        s for s in (ctx.settings.results_subscription, ctx.settings.errors_subscription) if s
    ]
    if not subscriptions:
        raise UsageError(
            "no subscription: pass --subscription or set CLIPSEARCH_RESULTS_SUBSCRIPTION"
        )
    if args.max is not None and args.max < 1:
        raise UsageError("--max must be at least 1")
    subscriber = ctx.subscriber
    printed = 0
    failed = False
    header_shown = False
    while True:
        got_any = False
        for subscription in subscriptions:
            want = 100 if args.max is None else min(100, args.max - printed)
            if want <= 0:
                break
            batch = subscriber.pull(subscription, want, args.poll)
            got_any = got_any or bool(batch)
            handled: list[str] = []
            for pulled in batch:
                try:
                    outcome = decode(pulled)
                except ValueError as error:
                    ctx.warn(f"skipping message {pulled.message_id} on {subscription}: {error}")
                    subscriber.nack(subscription, [pulled.ack_id])
                    continue
                failed = failed or outcome["status"] != "success"
                if args.json:
                    json_line(outcome, ctx.stdout)
                else:
                    table(clip_rows(outcome), CLIP_HEADER, ctx.stdout, show_header=not header_shown)
                    header_shown = True
                    ctx.stdout.flush()
                handled.append(pulled.ack_id)
                printed += 1
            if args.peek:
                subscriber.nack(subscription, handled)
            else:
                subscriber.ack(subscription, handled)
        if args.max is not None and printed >= args.max:
            break
        if not got_any and not args.follow:
            break
    return 1 if failed else 0
