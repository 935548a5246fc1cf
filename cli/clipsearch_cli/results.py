"""`clipsearch results`: read outcome messages from the results and errors subscriptions.

Messages are decoded from Avro's JSON encoding (`clipsearch.contract.from_avro_json`) to the
plain shape stored at `result_uri`, printed, then acknowledged: this command CONSUMES what it
prints, as any subscriber on that subscription would. Give it a subscription of its own
(or `--peek`, which hands every message back unacknowledged) when others read the same one.
Without `--follow` it stops once the subscriptions are drained.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
from collections.abc import Iterator
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


@contextlib.contextmanager
def interrupt_between_pulls() -> Iterator[threading.Event]:
    """Ctrl-C sets the event the pull loop checks, instead of raising inside a pull.

    A KeyboardInterrupt raised while gRPC waits on its completion queue can leave the
    process unable to exit; with the event, the pull in flight ends within `--poll` seconds,
    what it brought is printed and acknowledged, and the command exits 130. A second Ctrl-C
    raises at once. Off the main thread (no signal handlers there) nothing changes.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_interrupt(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
    if stop.is_set():
        raise KeyboardInterrupt


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
    reader = _Reader(args, ctx)
    with interrupt_between_pulls() as stop:
        while not stop.is_set():
            got_any = False
            for subscription in subscriptions:
                want = 100 if args.max is None else min(100, args.max - reader.printed)
                if want <= 0:
                    break
                got_any = reader.pull(subscription, want) or got_any
            if args.max is not None and reader.printed >= args.max:
                break
            if not got_any and not args.follow:
                break
    return 1 if reader.failed else 0


class _Reader:
    """Pulls, prints and acknowledges (or hands back, with --peek) one batch at a time."""

    def __init__(self, args: argparse.Namespace, ctx: Context) -> None:
        self.args, self.ctx = args, ctx
        self.printed = 0
        self.failed = False
        self.header_shown = False

    def pull(self, subscription: str, want: int) -> bool:
        """One pull of up to `want` messages; whether any arrived."""
        subscriber, ctx = self.ctx.subscriber, self.ctx
        batch = subscriber.pull(subscription, want, self.args.poll)
        handled: list[str] = []
        for pulled in batch:
            try:
                outcome = decode(pulled)
            except ValueError as error:
                ctx.warn(f"skipping message {pulled.message_id} on {subscription}: {error}")
                subscriber.nack(subscription, [pulled.ack_id])
                continue
            self.show(outcome)
            handled.append(pulled.ack_id)
        if self.args.peek:
            subscriber.nack(subscription, handled)
        else:
            subscriber.ack(subscription, handled)
        return bool(batch)

    def show(self, outcome: dict[str, Any]) -> None:
        self.failed = self.failed or outcome["status"] != "success"
        self.printed += 1
        if self.args.json:
            json_line(outcome, self.ctx.stdout)
            return
        table(clip_rows(outcome), CLIP_HEADER, self.ctx.stdout, show_header=not self.header_shown)
        self.header_shown = True
        self.ctx.stdout.flush()
