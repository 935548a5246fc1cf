"""cloudbuild.yaml: valid against Cloud Build's schema, and shaped as the pipeline we promise."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from typing import Any

from ruamel.yaml import YAML

from tests.infra.hcl import REPO

CLOUDBUILD = REPO / "cloudbuild.yaml"
ORDER = ["install", "lint", "typecheck", "tests", "tf-fmt", "tf-init", "tf-validate", "tf-plan"]


@cache
def _build() -> Any:
    return YAML(typ="safe").load(CLOUDBUILD.read_text(encoding="utf-8"))


def _steps() -> dict[str, Any]:
    return {step.get("id"): step for step in _build()["steps"]}


def test_validates_against_the_cloud_build_schema() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.cloudbuild",
            str(CLOUDBUILD),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_step_has_a_name_and_a_unique_id() -> None:
    steps = _build()["steps"]
    for index, step in enumerate(steps):
        assert step.get("name"), f"step {index} has no name (builder image)"
        assert step.get("id"), f"step {index} has no id"
    ids = [s["id"] for s in steps]
    assert len(ids) == len(set(ids))


def test_wait_for_names_existing_earlier_steps_and_orders_the_pipeline() -> None:
    steps = _build()["steps"]
    seen: set[str] = set()
    for step in steps:
        for dep in step.get("waitFor", []):
            assert dep == "-" or dep in seen, f"{step['id']} waits for unknown/later {dep!r}"
        seen.add(step["id"])

    def upstream(step_id: str) -> set[str]:
        deps = set(_steps()[step_id].get("waitFor", []) or [])
        deps.discard("-")
        if "waitFor" not in _steps()[step_id]:  # Cloud Build: wait for all previous steps
            index = [s["id"] for s in steps].index(step_id)
            deps = {s["id"] for s in steps[:index]}
        return deps | {d for dep in deps for d in upstream(dep)}

    assert set(ORDER) <= set(_steps())
    assert {"install"} <= upstream("lint")
    assert {"install"} <= upstream("typecheck")
    assert {"lint", "typecheck", "emulator-jar"} <= upstream("tests")
    assert {"tf-fmt", "tf-init"} <= upstream("tf-validate")
    assert {"tests", "tf-validate"} <= upstream("tf-plan")
    assert "tf-plan" in upstream("tf-apply")


def test_builder_images_are_pinned() -> None:
    for step in _build()["steps"]:
        image = step["name"]
        assert "@sha256:" in image or re.search(r":[\w.-]*\d[\w.-]*$", image), (
            f"{step['id']}: pin {image} to a version tag or digest"
        )
        assert not image.endswith((":latest", ":emulators", ":slim")), image


def test_substitutions_for_project_region_prefix() -> None:
    subs = _build()["substitutions"]
    assert {"_REGION", "_PREFIX", "_TF_STATE_BUCKET"} <= set(subs)
    plan = " ".join(map(str, _steps()["tf-plan"]["args"]))
    for needle in ("${PROJECT_ID}", "${_REGION}", "${_PREFIX}"):
        assert needle in plan


def test_apply_runs_on_main_only_from_the_saved_plan() -> None:
    script = " ".join(map(str, _steps()["tf-apply"]["args"]))
    assert re.search(r'if \[ "\$\{?BRANCH_NAME\}?" = "main" \]', script)
    assert "apply -input=false tfplan" in script
    others = [s for s in _build()["steps"] if s["id"] != "tf-apply"]
    assert not any(" apply " in " ".join(map(str, s.get("args", []))) for s in others)


def test_tests_step_gets_java_and_the_emulator_jar() -> None:
    script = " ".join(map(str, _steps()["tests"]["args"]))
    assert "openjdk" in script
    assert "pubsub-emulator/lib" in script
    assert "pytest" in script
