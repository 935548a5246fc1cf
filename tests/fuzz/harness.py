"""Run clip cases in worker processes, each case bounded in time from outside.

A case that does not answer within `timeout` is a hang: its worker is killed (by its own
pid) and a fresh one takes the remaining cases. A worker that dies is a crash.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    id: int
    path: str
    cuts: tuple[tuple[float, float, bool], ...]
    label: str = ""
    judge: bool = False  # run the oracle's cheap checks on each clip the case makes


@dataclass
class Result:
    case: Case
    outcomes: list[str] = field(default_factory=list)
    hang: bool = False
    crash: bool = False
    rss_kb: int = 0


class _Worker:
    def __init__(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "functions/clipsearch")]),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            text=True,
        )
        self.case: Case | None = None
        self.started = 0.0
        self.ready = False

    def send(self, case: Case) -> None:
        assert self.proc.stdin is not None
        self.case = case
        self.started = time.monotonic()
        self.proc.stdin.write(
            json.dumps({"id": case.id, "path": case.path, "cuts": case.cuts, "judge": case.judge})
            + "\n"
        )
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run_cases(cases: Iterable[Case], *, workers: int = 2, timeout: float = 30.0) -> list[Result]:
    """Every case's outcomes; hangs and crashes are recorded, never raised."""
    todo = list(cases)[::-1]
    results: list[Result] = []
    selector = selectors.DefaultSelector()
    pool: list[_Worker] = []

    def spawn() -> None:
        worker = _Worker()
        assert worker.proc.stdout is not None
        selector.register(worker.proc.stdout, selectors.EVENT_READ, worker)
        pool.append(worker)

    def retire(worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        selector.unregister(worker.proc.stdout)
        worker.kill()
        pool.remove(worker)

    for _ in range(min(workers, max(1, len(todo)))):
        spawn()
    try:
        while todo or any(w.case is not None for w in pool):
            for worker in list(pool):
                if worker.ready and worker.case is None and todo:
                    worker.send(todo.pop())
            for key, _ in selector.select(timeout=0.5):
                worker = key.data
                assert worker.proc.stdout is not None
                line = worker.proc.stdout.readline()
                if not line:  # the worker died
                    if worker.case is not None:
                        results.append(Result(worker.case, crash=True))
                    retire(worker)
                    if todo or len(pool) == 0:
                        spawn()
                    continue
                message = json.loads(line)
                if message.get("ready"):
                    worker.ready = True
                    continue
                assert worker.case is not None
                assert message["id"] == worker.case.id
                results.append(Result(worker.case, message["outcomes"], rss_kb=message["rss_kb"]))
                worker.case = None
                if message.get("exit"):  # it leaves to measure the next case's peak afresh
                    retire(worker)
                    spawn()
            now = time.monotonic()
            for worker in list(pool):
                if worker.case is not None and now - worker.started > timeout:
                    results.append(Result(worker.case, hang=True))
                    retire(worker)
                    spawn()
            if not todo and all(w.case is None for w in pool):
                break
    finally:
        for worker in list(pool):
            retire(worker)
    return results
