"""Cold start of the function: import of main, spawn → port listening, spawn → first outcome.

Each variant is a function tree (this one, or another commit's, extracted with `git archive`)
run from this venv, with bytecode (what the deploy's builder leaves) or without it (every
module compiled from source, as a venv installed without bytecode and a process with
PYTHONDONTWRITEBYTECODE=1 does: PYTHONPYCACHEPREFIX points at an empty folder). Variants are
interleaved run by run, so the machine's noise falls on all of them alike.

Every run posts a new query object (its own frame, so its own hits) and gives the new process
a results prefix of its own: no run takes the duplicate path, finds an earlier clip to reuse,
or finds an index sidecar. Each run searches, opens the source cold, cuts every hit and
publishes; the clock stops when a subscriber receives the outcome.

Run: .venv/bin/python -m bench.coldstart --baseline REV [--runs N]
     (make bench-coldstart BASELINE=REV); writes bench/out/coldstart.{json,md}.
"""

from __future__ import annotations

import argparse
import compileall
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from clipsearch_dev.media import make_video, query_image_bytes
from clipsearch_dev.net import free_port
from clipsearch_dev.outcomes import OutcomeCollector
from clipsearch_dev.stack import FUNCTION_ROOT, FUNCTION_TARGET, REPO, LocalStack, StackOptions

OUT = Path(__file__).parent / "out"
UNTRIGGERED = "clipsearch-bench-queries"  # no trigger: only the spawned server sees the event
VIDEO_NO = "VI-BENCH-0001"
IMPORT_MAIN = (
    "import time; t, c = time.perf_counter(), time.process_time(); import main; "
    "print(time.perf_counter() - t, time.process_time() - c)"
)
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Variant:
    label: str
    root: Path  # the tree's functions/clipsearch (main.py and the clipsearch package)
    bytecode: bool

    @property
    def key(self) -> str:
        return f"{self.label}, {'with' if self.bytecode else 'no'} bytecode"

    def env(self, base: Mapping[str, str], no_pycache: Path) -> dict[str, str]:
        env = {**base, "PYTHONPATH": str(self.root)}  # ahead of the venv's editable install
        if not self.bytecode:
            env["PYTHONPYCACHEPREFIX"] = str(no_pycache)
        return env


def extract_tree(rev: str, into: Path) -> Path:
    """The function's deploy root as it was at `rev`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "functions/clipsearch"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "functions" / "clipsearch"


def import_main_s(variant: Variant, env: Mapping[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of `import main` in a new interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_MAIN],
        cwd=variant.root,
        env=dict(env),
        check=True,
        capture_output=True,
        text=True,
    )
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children, alive or reaped: on a
    shared machine the CPU a start-up costs varies far less than its wall time."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) * TICK_S  # utime stime cutime cstime
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_s(int(child)) for child in children)


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout_s: float = 60) -> None:
    """Poll every 2 ms: the figure is a few hundred ms, so a coarse poll would blur it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"function exited with {process.returncode} at start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.002)
    raise TimeoutError(f"function did not listen on {port} in {timeout_s}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def new_query(
    stack: LocalStack, video: Path, name: str, t: float
) -> tuple[tuple[str, str, str], dict[str, str], bytes]:
    """Upload a query image (the frame at `t` s) to the untriggered bucket; its outcome's key
    and the finalize CloudEvent for it, in binary mode (headers, body)."""
    data = query_image_bytes(video, t)
    blob = stack.storage.bucket(UNTRIGGERED).blob(name)
    blob.metadata = {"video_no": VIDEO_NO, "prompt": "bench"}
    blob.upload_from_string(data, content_type="image/jpeg")
    resource = {
        "bucket": UNTRIGGERED,
        "name": name,
        "generation": str(blob.generation),
        "size": str(len(data)),
        "contentType": "image/jpeg",
        "metadata": blob.metadata,
    }
    headers, body = to_binary(
        CloudEvent(
            {
                "id": name,
                "type": "google.cloud.storage.object.v1.finalized",
                "source": "//storage.googleapis.com/projects/_/buckets/x",
            },
            resource,
        )
    )
    return (UNTRIGGERED, name, resource["generation"]), dict(headers), body


def one_cold_start(
    stack: LocalStack,
    collector: OutcomeCollector,
    variant: Variant,
    env: dict[str, str],
    video: Path,
    name: str,
    t: float,
) -> dict[str, Any]:
    key, headers, body = new_query(stack, video, name, t)
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "functions-framework"),
        f"--target={FUNCTION_TARGET}",
        f"--source={variant.root / 'main.py'}",
        "--signature-type=cloudevent",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    time.sleep(1.1)  # let the stand-in's 1/s token refill, so no 0429 wait is measured
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_listening(process, port)
        listening = time.monotonic()
        listening_cpu = cpu_s(process.pid)
        response = requests.post(
            f"http://127.0.0.1:{port}/", headers=headers, data=body, timeout=60
        )
        answered = time.monotonic()
        assert response.status_code == 200, response.text
        outcome = collector.wait_for([key], timeout_s=60)[key]
        outcome_cpu = cpu_s(process.pid)
    finally:
        stop(process)
    assert outcome.body["status"] == "success", outcome.body
    clips = outcome.body["clips"]
    cut = [c for c in clips if c["artifact"] and not c["fallback_reason"]]
    assert cut, f"no clip cut: {clips}"
    return {
        "variant": variant.key,
        "listening_s": listening - started,
        "answered_s": answered - started,
        "outcome_s": outcome.arrived_at - started,
        "listening_cpu_s": listening_cpu,
        "outcome_cpu_s": outcome_cpu,
        "clips": len(clips),
        "clips_cut": len(cut),
    }


def function_env(
    stack: LocalStack, variant: Variant, results_prefix: str, no_pycache: Path
) -> dict[str, str]:
    """The function's environment on the local stack: clip mode, events from the untriggered
    bucket, results under a prefix of the run's own."""
    base = {
        **os.environ,
        **stack.env,
        "CLIPSEARCH_FETCH_MODE": "clip",
        "CLIPSEARCH_QUERY_BUCKET": UNTRIGGERED,
        "CLIPSEARCH_RESULTS_PREFIX": results_prefix,
    }
    return variant.env(base, no_pycache)


def cold_start(
    stack: LocalStack, video: Path, runs: int, variants: list[Variant]
) -> list[dict[str, Any]]:
    """`runs` cold starts of each variant, interleaved; each row also times `import main`."""
    collector = OutcomeCollector(
        [stack.names.results_subscription, stack.names.errors_subscription]
    ).start()
    token = uuid.uuid4().hex[:8]
    rows = []
    try:
        with tempfile.TemporaryDirectory() as no_pycache:
            for i in range(runs):
                for v, variant in enumerate(variants):
                    env = function_env(
                        stack, variant, f"bench-cold-{token}-{v}-{i}/", Path(no_pycache)
                    )
                    row = one_cold_start(
                        stack,
                        collector,
                        variant,
                        env,
                        video,
                        f"bench/cold-{token}-{v}-{i}.jpg",
                        2.0 + (i * len(variants) + v) * 1.7 % 55,
                    )
                    row["import_main_s"], row["import_main_cpu_s"] = import_main_s(variant, env)
                    rows.append(row)
    finally:
        collector.stop()
    return rows


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "median_ms": statistics.median(values) * 1000,
        "p90_ms": ordered[round(0.9 * (len(ordered) - 1))] * 1000,
        "min_ms": ordered[0] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


MEASURES = (
    ("import_main_s", "`import main`"),
    ("listening_s", "spawn → port listening"),
    ("outcome_s", "spawn → first outcome"),
)
CPU_MEASURES = (
    ("import_main_cpu_s", "`import main`"),
    ("listening_cpu_s", "spawn → port listening"),
    ("outcome_cpu_s", "spawn → first outcome"),
)


def summarize(rows: list[dict[str, Any]], variants: list[Variant]) -> list[dict[str, Any]]:
    out = []
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant.key]
        out.append(
            {
                "variant": variant.label,
                "bytecode": variant.bytecode,
                "clips_cut": sum(r["clips_cut"] for r in mine),
                "clips": sum(r["clips"] for r in mine),
                **{key: summary([r[key] for r in mine]) for key, _ in MEASURES + CPU_MEASURES},
            }
        )
    return out


def render(table: list[dict[str, Any]], note: str) -> str:
    lines = [note]
    for measures, what in ((MEASURES, "wall"), (CPU_MEASURES, "CPU (user + system)")):
        lines += [
            "",
            "| tree | bytecode | "
            + " | ".join(f"{title}: {what} median / p90 ms" for _, title in measures)
            + " | runs | clips cut |",
            "|---|---|" + "--:|" * len(measures) + "--:|--:|",
        ]
        for row in table:
            cells = " | ".join(
                f"{row[key]['median_ms']:.0f} / {row[key]['p90_ms']:.0f}" for key, _ in measures
            )
            lines.append(
                f"| {row['variant']} | {'yes' if row['bytecode'] else 'no'} | {cells} "
                f"| {row['outcome_s']['n']} | {row['clips_cut']} of {row['clips']} |"
            )
    return "\n".join(lines) + "\n"


def variants_for(baseline: str | None, tmp: Path) -> list[Variant]:
    """This tree with bytecode; with a baseline, that tree with and without bytecode too."""
    here = Variant("this tree", FUNCTION_ROOT, bytecode=True)
    found = [here]
    if baseline:
        before = extract_tree(baseline, tmp / "baseline")
        found += [
            Variant(f"{baseline} (before)", before, bytecode=True),
            Variant(f"{baseline} (before)", before, bytecode=False),
        ]
    for variant in found:
        if variant.bytecode:
            compileall.compile_dir(variant.root, quiet=1)
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a commit whose function tree runs beside this one")
    parser.add_argument("--runs", type=int, default=10, help="cold starts per variant")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        variants = variants_for(args.baseline, Path(tmp))
        with LocalStack(StackOptions(state_dir=Path(tmp) / "state")) as stack:
            video = Path(tmp) / "v.mp4"
            make_video(video, seconds=60, gop=20)
            stack.upload_video(video, VIDEO_NO)
            stack.storage.create_bucket(UNTRIGGERED)
            rows = cold_start(stack, video, args.runs, variants)
    table = summarize(rows, variants)
    command = " ".join(["python -m bench.coldstart", *(argv if argv is not None else sys.argv[1:])])
    note = (
        f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load average {load:.1f} at the start, {os.cpu_count()} cores; clip mode, a new query "
        "object and results prefix per run; variants interleaved run by run."
    )
    report = {"note": note, "table": table, "runs": rows}
    (OUT / "coldstart.json").write_text(json.dumps(report, indent=2))
    (OUT / "coldstart.md").write_text(render(table, note))
    print(render(table, note))
    return report


if __name__ == "__main__":
    main()
