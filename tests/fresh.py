"""Python code run in a new interpreter from the function's deploy root: what a module does to
the process at import (what it loads, the collector, FFmpeg's limits) shows there, untouched
by what the test run has already imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).parents[1] / "functions" / "clipsearch"


def run_fresh(code: str, *args: str) -> Any:
    """What the code prints last, as JSON; the code must exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
