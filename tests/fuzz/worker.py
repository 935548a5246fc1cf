"""One fuzz/hostile-file worker process: cases in on stdin, outcomes out on stdout (JSON lines).

Run by `tests.fuzz.harness`, which times each case from outside (a hang inside FFmpeg cannot
be interrupted from within) and restarts the worker after a hang or a crash.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from clipsearch.clipping import (
    ClipSource,
    ClipUnavailable,
    FileRangeSource,
    poster_frame,
    tune_process,
)
from tests.corpus.oracle import cheap_defects

ADDRESS_SPACE_LIMIT = 4 * 1024**3  # a runaway allocation fails here instead of swapping
CASE_DEADLINE_S = 20.0
RESTART_RSS_KB = 160 * 1024


def run_case(path: str, cuts: list[list[float]], workdir: Path, judge: bool = False) -> list[str]:
    """Open the file and cut each (start, end, exact): 'ok', 'fallback:<reason>' or other.

    `judge`: each clip also passes the oracle's cheap checks (`tests.corpus.oracle`): its
    declared durations agree with its streams, its audio is one contiguous run of the
    source's packets. 'ok:judged' if so, 'wrong:<why>' if not.
    """
    outcomes: list[str] = []
    deadline = time.monotonic() + CASE_DEADLINE_S
    try:
        with ClipSource(FileRangeSource(path), deadline=deadline) as clips:
            for i, (start, end, exact) in enumerate(cuts):
                out = workdir / f"clip-{i}.mp4"
                try:
                    info = clips.cut(start, end, out, exact=bool(exact))
                    poster_frame(info.path)
                    defects = cheap_defects(path, out, info.start) if judge else []
                    if defects:
                        outcomes.append(f"wrong:{'; '.join(defects)[:300]}")
                    else:
                        outcomes.append("ok:judged" if judge else "ok")
                except ClipUnavailable as error:
                    outcomes.append(_fallback(error, workdir))
                finally:
                    out.unlink(missing_ok=True)
    except ClipUnavailable as error:
        outcomes.append(_fallback(error, workdir))
    except Exception as error:  # what the engine must never let out
        outcomes.append(f"unexpected:{type(error).__name__}: {str(error)[:200]}")
    return outcomes


def _fallback(error: ClipUnavailable, workdir: Path) -> str:
    if str(workdir) in str(error) or "/tmp" in str(error):
        return f"leak:{error}"
    if error.transient:
        return f"transient:{error}"
    if error.reason.value == "engine_error":  # clean, but worth reading: what raised
        return f"fallback:engine_error|{error.message[:160]}"
    return f"fallback:{error.reason.value}"


def peak_rss_kb() -> int:
    """This process image's peak RSS (VmHWM).

    Not ru_maxrss: Linux carries the parent's high-water mark across fork and exec, so under a
    pytest process grown past RESTART_RSS_KB every case would look that large (and restart).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    tune_process()  # as the function's composition root does
    with tempfile.TemporaryDirectory(prefix="fuzz-worker-") as tmp:
        workdir = Path(tmp)
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            case = json.loads(line)
            outcomes = run_case(case["path"], case["cuts"], workdir, bool(case.get("judge")))
            rss_kb = peak_rss_kb()
            # The peak is per process: past RESTART_RSS_KB a fresh worker measures the next case.
            leaving = rss_kb > RESTART_RSS_KB
            result = {"id": case["id"], "outcomes": outcomes, "rss_kb": rss_kb, "exit": leaving}
            print(json.dumps(result), flush=True)
            if leaving:
                return


if __name__ == "__main__":
    main()
