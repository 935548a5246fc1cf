"""`make demo`: the whole job end to end on the local stack, then everything stopped."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from clipsearch_dev.media import make_video, query_image_bytes
from clipsearch_dev.outcomes import OutcomeCollector, Received
from clipsearch_dev.stack import LocalStack

VIDEO_NO = "VI625239098370850816"
QUERY_TIMES = (12.3, 47.0, 95.5)


def describe(outcome: Received) -> str:
    body = outcome.body
    query = body["query"]
    lines = [
        f"gs://{query['bucket']}/{query['object']} (generation {query['generation']})"
        f" -> {body['status']} via {outcome.subscription.rsplit('/', 1)[-1]}"
    ]
    if body["status"] == "error":
        error = body["error"]
        lines.append(f"    error {error['reason']}: {error['message']}")
    for clip in body["clips"]:
        artifact = clip["artifact"]
        if artifact is None:
            where = f"(not fetched: {clip['fetch_error'] or clip['fallback_reason']})"
        elif artifact["mode"] == "clip":
            where = (
                f"clip {artifact['start_time']:.1f}-{artifact['end_time']:.1f}s,"
                f" {artifact['size']:,} B: {artifact['uri']}"
            )
        else:
            where = f"{artifact['mode']}: {artifact['uri']}"
        lines.append(
            f"    #{clip['rank']} {clip['start_time']:7.2f}s - {clip['end_time']:7.2f}s"
            f"  score {clip['score']:.3f}  {where}"
        )
    lines.append(f"    result JSON: {body['result_uri']}")
    return "\n".join(lines)


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, LocalStack() as stack:
        print(
            f"local stack up in {time.monotonic() - started:.1f}s; function at "
            f"{stack.function_url}",
            flush=True,
        )
        video = Path(tmp) / "sample.mp4"
        info = make_video(video, seconds=120, gop=20)
        stack.upload_video(video, VIDEO_NO)
        print(
            f"sample video: {info.seconds:.0f}s, {info.width}x{info.height} as "
            f"gs://{stack.names.source_bucket}/{VIDEO_NO}.mp4",
            flush=True,
        )
        collector = OutcomeCollector(
            [stack.names.results_subscription, stack.names.errors_subscription],
        ).start()
        keys = []
        for t in QUERY_TIMES:
            name = f"demo/frame-at-{t:05.1f}s.jpg"
            metadata = {"video_no": VIDEO_NO, "prompt": "find this exact moment"}
            generation = stack.drop_query(name, query_image_bytes(video, t), metadata)
            keys.append((stack.names.query_bucket, name, str(generation)))
            print(f"dropped {name} (frame at {t}s)", flush=True)
        bad = "demo/no-prompt.jpg"
        generation = stack.drop_query(bad, query_image_bytes(video, 5.0), {"video_no": VIDEO_NO})
        keys.append((stack.names.query_bucket, bad, str(generation)))
        print(f"dropped {bad} (no prompt: expect an error outcome)\n", flush=True)
        outcomes = collector.wait_for(keys, timeout_s=120)
        collector.stop()
        failures = 0
        times: list[float | None] = [*QUERY_TIMES, None]
        for key, at in zip(keys, times, strict=True):
            outcome = outcomes[key]
            print(describe(outcome))
            if at is not None:
                top = outcome.body["clips"][0] if outcome.body["clips"] else None
                hit = top is not None and top["start_time"] <= at <= top["end_time"]
                print(f"    top clip contains {at}s: {'yes' if hit else 'NO'}")
                failures += not hit
            else:
                failures += outcome.body["status"] != "error"
            print()
    print(f"demo finished in {time.monotonic() - started:.1f}s; everything stopped.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
