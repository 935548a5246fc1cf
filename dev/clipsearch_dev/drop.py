"""Drop one query image (a frame of a local video) into the dev stack and print its outcome.

Usage: python -m clipsearch_dev.drop VIDEO.mp4 SECONDS --video-no V [--prompt P]
Reads the emulator hosts and names from the environment (`source .devstack/env`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from google.cloud import storage

from clipsearch_dev.media import query_image_bytes
from clipsearch_dev.outcomes import OutcomeCollector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--video-no", required=True)
    parser.add_argument("--prompt", default="find this moment")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    env = os.environ
    bucket = env["CLIPSEARCH_QUERY_BUCKET"]
    name = f"dev/{args.video.stem}-at-{args.seconds:.1f}s.jpg"
    blob = storage.Client(project=env["GOOGLE_CLOUD_PROJECT"]).bucket(bucket).blob(name)
    blob.metadata = {"video_no": args.video_no, "prompt": args.prompt}
    blob.upload_from_string(query_image_bytes(args.video, args.seconds), content_type="image/jpeg")
    print(f"dropped gs://{bucket}/{name} generation {blob.generation}", file=sys.stderr)
    collector = OutcomeCollector(
        [env["CLIPSEARCH_RESULTS_SUBSCRIPTION"], env["CLIPSEARCH_ERRORS_SUBSCRIPTION"]],
    )
    key = (bucket, name, str(blob.generation))
    with collector:
        outcome = collector.wait_for([key], timeout_s=args.timeout)[key]
    print(json.dumps(outcome.body, indent=2))
    return 0 if outcome.body["status"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
