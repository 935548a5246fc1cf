"""The `clipsearch` entry point: argument parsing, configuration, one-line errors, exit codes.

Exit codes: 0 every outcome was a success (or there was nothing to wait for); 1 a refusal,
an error outcome, a timeout or a failed call; 2 a usage or configuration error; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import TextIO

from clipsearch_cli import backfill, report, results, status, submit
from clipsearch_cli.config import CliSettings, UsageError, apply_env_file
from clipsearch_cli.context import CommandError, Context
from clipsearch_cli.ports import Storage, Subscriber


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipsearch",
        description="Submit query images to clipsearch, read their outcomes, backfill a bucket,"
        " and write HTML reports. Works against the local stack (.devstack/env) and against"
        " Google Cloud (application default credentials).",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        help="read KEY=VALUE exports first (default: .devstack/env when it exists and"
        " CLIPSEARCH_QUERY_BUCKET is not set)",
    )
    parser.add_argument(
        "--no-env-file", action="store_true", help="never read .devstack/env implicitly"
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bars on stderr (auto: when stderr is a terminal)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (submit, results, backfill, report, status):
        module.add_parser(commands)
    return parser


def _default_storage(settings: CliSettings) -> Callable[[], Storage]:
    def make() -> Storage:
        from google.cloud import storage  # noqa: PLC0415  (slow import; not for --help)

        from clipsearch_cli.google_adapters import GcsStorage  # noqa: PLC0415

        client = storage.Client(project=settings.project or None)
        return GcsStorage(client, emulator_host=settings.storage_emulator_host)

    return make


def _default_subscriber() -> Subscriber:
    from google.cloud import pubsub_v1  # noqa: PLC0415

    from clipsearch_cli.google_adapters import PubsubSubscriber  # noqa: PLC0415

    return PubsubSubscriber(pubsub_v1.SubscriberClient())


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: MutableMapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    make_storage: Callable[[], Storage] | None = None,
    make_subscriber: Callable[[], Subscriber] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
    wall: Callable[[], float] | None = None,
) -> int:
    """Run one command; the keyword arguments are for tests (fakes, fixed clocks)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = build_parser().parse_args(argv)  # exits 2 with argparse's own message on misuse
    env = os.environ if environ is None else environ
    try:
        apply_env_file(args.env_file, env, use_default=not args.no_env_file)
        settings = CliSettings.from_env(env)
        extras = {
            k: v for k, v in {"sleep": sleep, "clock": clock, "wall": wall}.items() if v is not None
        }
        ctx = Context(
            settings=settings,
            stdout=out,
            stderr=err,
            make_storage=make_storage or _default_storage(settings),
            make_subscriber=make_subscriber or _default_subscriber,
            progress={"auto": None, "always": True, "never": False}[args.progress],
            **extras,  # type: ignore[arg-type]
        )
        code: int = args.run(args, ctx)
    except UsageError as error:
        err.write(f"clipsearch: {error}\n")
        return 2
    except CommandError as error:
        err.write(f"clipsearch: {error}\n")
        return 1
    except KeyboardInterrupt:
        err.write("clipsearch: interrupted\n")
        return 130
    except Exception as error:  # one clear line, not a traceback, for cloud and I/O failures
        err.write(f"clipsearch: {type(error).__name__}: {_first_line(error)}\n")
        return 1
    return code


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or repr(error)
    return text.splitlines()[0][:500]
