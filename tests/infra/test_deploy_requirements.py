"""The deploy root's requirements.txt: every file pinned by hash, and pip told to insist."""

from __future__ import annotations

import re

from tests.infra.hcl import REPO

REQUIREMENTS = REPO / "functions" / "clipsearch" / "requirements.txt"
MAKEFILE = REPO / "Makefile"


def _requirements() -> dict[str, list[str]]:
    """name==version -> its hashes (continuation lines joined)."""
    joined = REQUIREMENTS.read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in joined.splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-]+==[^\s;]+)", line)
        if pin:
            found[pin[1]] = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
    return found


def test_pip_is_told_to_require_hashes_before_any_requirement() -> None:
    lines = [
        x.strip()
        for x in REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if x.strip() and not x.startswith("#")
    ]
    assert lines[0] == "--require-hashes"


def test_every_requirement_is_pinned_with_hashes() -> None:
    found = _requirements()
    assert len(found) > 10
    unhashed = [name for name, hashes in found.items() if not hashes]
    assert not unhashed, f"pinned without a hash: {unhashed}"
    assert any(name.startswith("functions-framework==") for name in found)


def test_make_lock_generates_it_that_way() -> None:
    text = MAKEFILE.read_text(encoding="utf-8")
    lock = text.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    (compile_line,) = [
        x
        for x in lock.splitlines()
        if "functions/clipsearch/requirements.txt" in x and "compile" in x
    ]
    assert "--generate-hashes" in compile_line
    assert "--require-hashes" in lock
