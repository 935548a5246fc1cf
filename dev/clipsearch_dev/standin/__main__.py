"""Run the stand-in as its own process (for the local dev stack).

    python -m clipsearch_dev.standin --gcs-endpoint http://127.0.0.1:4443 --port 8790

The API key comes from the environment (STANDIN_API_KEY), never from the command line, so it
does not show up in process listings. Prints the base URL on stdout once it is listening.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

import google.auth.credentials
from google.cloud import storage

from clipsearch_dev.standin.faults import PROFILES
from clipsearch_dev.standin.server import StandinServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m clipsearch_dev.standin")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--gcs-endpoint",
        default=os.environ.get("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443"),
    )
    parser.add_argument("--project", default="test")
    parser.add_argument("--search-rate-per-s", type=float, default=1.0)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=os.environ.get("CLIPSEARCH_STANDIN_PROFILE") or "default",
        help="which reading of the vendor's open behaviours to play (faults.PROFILES)",
    )
    args = parser.parse_args(argv)
    api_key = os.environ.get("STANDIN_API_KEY", "")
    if not api_key:
        parser.error("set STANDIN_API_KEY")
    client = storage.Client(
        project=args.project,
        client_options={"api_endpoint": args.gcs_endpoint},
        credentials=google.auth.credentials.AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = StandinServer(
        client,
        api_key=api_key,
        search_rate_per_s=args.search_rate_per_s,
        profile=args.profile,
        port=args.port,
    )
    with server:
        print(server.base_url, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
