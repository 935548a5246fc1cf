"""Where a cold start's CPU goes, in one interpreter per run: the function's imports, its first
event, and the garbage collector's share of both.

Each run is a new interpreter that imports `functions_framework` and loads the function's
main module through `functions_framework.create_app` (as the framework's CLI does), then hands
one CloudEvent to that app through Flask's test client: a new query object and results prefix,
clip mode, the local stack, as in bench.coldstart, but with no server and no fork, so what is
measured is the tree's own work. The collector's time is summed from `gc.callbacks`. Variants
(this tree, and each baseline commit's function tree; all with bytecode) run interleaved.

Run: .venv/bin/python -m bench.startup --baseline REV [--baseline REV ...] [--runs N]
     writes bench/out/startup.{json,md}.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.coldstart import (
    OUT,
    UNTRIGGERED,
    VIDEO_NO,
    Variant,
    extract_tree,
    function_env,
    new_query,
    summary,
)
from clipsearch_dev.media import make_video
from clipsearch_dev.stack import FUNCTION_ROOT, FUNCTION_TARGET, LocalStack, StackOptions

CHILD = """
import gc, json, sys, time
collected = [0.0]
started = [0.0]

def on_collection(phase, info):
    if phase == "start":
        started[0] = time.process_time()
    else:
        collected[0] += time.process_time() - started[0]

gc.callbacks.append(on_collection)
root, target, event_file = sys.argv[1:4]
cpu, wall = time.process_time(), time.perf_counter()
import functions_framework
app = functions_framework.create_app(target, root + "/main.py", "cloudevent")
import_cpu, import_wall = time.process_time() - cpu, time.perf_counter() - wall
event = json.load(open(event_file))
cpu, wall = time.process_time(), time.perf_counter()
body = event["body"].encode("latin-1")
response = app.test_client().post("/", headers=event["headers"], data=body)
event_cpu, event_wall = time.process_time() - cpu, time.perf_counter() - wall
assert response.status_code == 200, response.data
print(json.dumps({"import_cpu_s": import_cpu, "import_s": import_wall, "event_cpu_s": event_cpu,
                  "event_s": event_wall, "gc_cpu_s": collected[0]}))
"""

MEASURES = (
    ("import_cpu_s", "imports: CPU"),
    ("event_cpu_s", "first event: CPU"),
    ("total_cpu_s", "imports + first event: CPU"),
    ("gc_cpu_s", "of which garbage collection"),
    ("total_s", "imports + first event: wall"),
)


def one_run(variant: Variant, env: dict[str, str], event: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(variant.root), FUNCTION_TARGET, str(event)],
        cwd=variant.root,
        env={**env, "FUNCTION_TARGET": FUNCTION_TARGET},  # the function loads its settings
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    row["total_cpu_s"] = row["import_cpu_s"] + row["event_cpu_s"]
    row["total_s"] = row["import_s"] + row["event_s"]
    return {"variant": variant.label, **row}


def measure(
    stack: LocalStack, video: Path, runs: int, variants: list[Variant], tmp: Path
) -> list[dict[str, Any]]:
    token = uuid.uuid4().hex[:8]
    event = tmp / "event.json"
    rows = []
    for i in range(runs):
        for v, variant in enumerate(variants):
            name = f"bench/startup-{token}-{v}-{i}.jpg"
            _, headers, body = new_query(
                stack, video, name, 2.0 + (i * len(variants) + v) * 1.7 % 55
            )
            event.write_text(json.dumps({"headers": headers, "body": body.decode("latin-1")}))
            env = function_env(stack, variant, f"bench-startup-{token}-{v}-{i}/", tmp / "unused")
            time.sleep(1.1)  # let the stand-in's 1/s token refill, so no 0429 wait is measured
            rows.append(one_run(variant, env, event))
    return rows


def render(rows: list[dict[str, Any]], variants: list[Variant], note: str) -> str:
    lines = [
        note,
        "",
        "| tree | "
        + " | ".join(f"{title}, median / p90 ms" for _, title in MEASURES)
        + " | runs |",
        "|---|" + "--:|" * (len(MEASURES) + 1),
    ]
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant.label]
        stats = [summary([r[key] for r in mine]) for key, _ in MEASURES]
        cells = [f"{s['median_ms']:.0f} / {s['p90_ms']:.0f}" for s in stats]
        lines.append(f"| {variant.label} | " + " | ".join(cells) + f" | {len(mine)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", action="append", default=[], help="a commit to run beside")
    parser.add_argument("--runs", type=int, default=10, help="runs per variant")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        variants = [Variant("this tree", FUNCTION_ROOT, bytecode=True)]
        variants += [
            Variant(rev, extract_tree(rev, tmp / f"tree-{rev}"), bytecode=True)
            for rev in args.baseline
        ]
        for variant in variants:
            compileall.compile_dir(variant.root, quiet=1)
        with LocalStack(StackOptions(state_dir=tmp / "state")) as stack:
            video = tmp / "v.mp4"
            make_video(video, seconds=60, gop=20)
            stack.upload_video(video, VIDEO_NO)
            stack.storage.create_bucket(UNTRIGGERED)
            rows = measure(stack, video, args.runs, variants, tmp)
    command = " ".join(["python -m bench.startup", *(argv if argv is not None else sys.argv[1:])])
    note = (
        f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
        f"{load:.1f} at the start, {os.cpu_count()} cores; one interpreter per run, variants "
        "interleaved."
    )
    report = {"note": note, "runs": rows}
    (OUT / "startup.json").write_text(json.dumps(report, indent=2))
    (OUT / "startup.md").write_text(render(rows, variants, note))
    print(render(rows, variants, note))
    return report


if __name__ == "__main__":
    main()
