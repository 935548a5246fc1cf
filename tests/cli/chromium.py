"""Headless Chromium (Debian's) running a report page's self-test, for the browser tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest


def run_selftest(
    page: Path, profile: Path, *extra: str, budget_ms: int
) -> subprocess.CompletedProcess[str]:
    """Open `page?selftest=1` and return Chromium's run: the DOM after it ran, on stdout."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip(reason="chromium is not installed (Debian: apt-get install -y chromium)")
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--autoplay-policy=no-user-gesture-required",
            *extra,
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            f"{page.resolve().as_uri()}?selftest=1",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def pre(dom: str, element_id: str) -> Any:
    """The JSON the page's self-test wrote into `<pre id=element_id>`."""
    start = dom.index(f'<pre id="{element_id}">') + len(f'<pre id="{element_id}">')
    return json.loads(dom[start : dom.index("</pre>", start)])
