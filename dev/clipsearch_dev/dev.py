"""`make dev`: the local stack in the foreground until Ctrl-C, with a sample video loaded."""

from __future__ import annotations

import signal
import sys
import threading

from clipsearch_dev.demo import VIDEO_NO
from clipsearch_dev.media import make_video
from clipsearch_dev.stack import LocalStack


def main() -> int:
    stop = threading.Event()
    # Ctrl-C and SIGTERM both stop cleanly (even where SIGINT was inherited as ignored).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with LocalStack() as stack:
        state = stack.options.state_dir
        video = state / "sample.mp4"
        make_video(video, seconds=120, gop=20)
        stack.upload_video(video, VIDEO_NO)
        env_file = state / "env"
        print(
            f"""local stack running (Ctrl-C stops it)
  function        {stack.function_url}   (log: {state / "function.log"})
  search stand-in {stack.env["CLIPSEARCH_API_BASE_URL"]}
  query bucket    gs://{stack.names.query_bucket}
  results bucket  gs://{stack.names.results_bucket}
  sample video    gs://{stack.names.source_bucket}/{VIDEO_NO}.mp4 ({video}), video_no {VIDEO_NO}
  environment     source {env_file}

Drop a query from another shell:
  source {env_file}
  .venv/bin/python -m clipsearch_dev.drop {video} 30 --video-no {VIDEO_NO}
""",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        print("stopping...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
