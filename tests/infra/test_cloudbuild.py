"""cloudbuild.yaml (apply) and cloudbuild-plan.yaml (plan): valid against Cloud Build's schema,
shaped as the pipeline we promise, and run by triggers (infra/cloudbuild_triggers.tf) that keep
the deployer's rights away from branches."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.infra.hcl import REPO, block, config, resource
from tests.infra.tfexpr import text

CLOUDBUILD = REPO / "cloudbuild.yaml"
PLAN = REPO / "cloudbuild-plan.yaml"
ORDER = ["install", "lint", "typecheck", "tests", "tf-fmt", "tf-init", "tf-validate", "tf-plan"]
IMAGE_SUBSTITUTIONS = {"_PYTHON_IMAGE", "_CLOUD_SDK_IMAGE", "_TERRAFORM_IMAGE"}


@cache
def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def _build() -> Any:
    return _load(CLOUDBUILD)


def _steps(path: Path = CLOUDBUILD) -> dict[str, Any]:
    return {step.get("id"): step for step in _load(path)["steps"]}


def _script(step: Any) -> str:
    return " ".join(map(str, step.get("args", [])))


@pytest.mark.parametrize("path", [CLOUDBUILD, PLAN], ids=["apply", "plan"])
def test_validates_against_the_cloud_build_schema(path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.cloudbuild",
            str(path),
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


@pytest.mark.parametrize("path", [CLOUDBUILD, PLAN], ids=["apply", "plan"])
def test_builder_images_are_pinned_by_digest_through_the_triggers(path: Path) -> None:
    # Every step image is a substitution, empty by default (an unpinned build fails to start)...
    build = _load(path)
    for step in build["steps"]:
        (name,) = re.findall(r"^\$\{(_[A-Z_]+)\}$", step["name"]) or [None]
        assert name in IMAGE_SUBSTITUTIONS, f"{step['id']}: image {step['name']} is not pinned"
    assert {k: build["substitutions"][k] for k in IMAGE_SUBSTITUTIONS} == dict.fromkeys(
        IMAGE_SUBSTITUTIONS, ""
    )
    # ...that both triggers fill from var.builder_images, which only accepts digests.
    subs = text(config()["locals"]["build_substitutions"])
    assert "local.builder_substitutions" in subs
    images = config()["locals"]["builder_substitutions"]
    for key in IMAGE_SUBSTITUTIONS:
        assert key in images
    for trigger in ("plan", "apply"):
        assert resource("google_cloudbuild_trigger", trigger)["substitutions"] == (
            "${local.build_substitutions}"
        )
    validations = config()["variable"]["builder_images"]["validation"]
    (condition,) = [text(v["condition"]) for v in validations if "sha256" in v["condition"]]
    pattern = text(re.findall(r'regex\("(.*?)", i\)', condition)[0])
    digest = "sha256:" + "0123456789abcdef" * 4
    assert re.search(pattern, f"hashicorp/terraform:1.11.4@{digest}")
    assert not re.search(pattern, "hashicorp/terraform:1.11.4")
    assert not re.search(pattern, "python:3.11.12-slim-bookworm@sha256:abc")


def test_substitutions_for_project_region_prefix() -> None:
    subs = _build()["substitutions"]
    assert {"_REGION", "_PREFIX", "_TF_STATE_BUCKET"} <= set(subs)
    plan = " ".join(map(str, _steps()["tf-plan"]["args"]))
    for needle in ("${PROJECT_ID}", "${_REGION}", "${_PREFIX}"):
        assert needle in plan


def test_apply_runs_from_the_saved_plan_and_only_in_the_apply_build() -> None:
    script = _script(_steps()["tf-apply"])
    assert re.search(r'if \[ "\$\{?BRANCH_NAME\}?" = "main" \]', script)  # second line only
    assert "apply -input=false tfplan" in script
    others = [s for s in _build()["steps"] if s["id"] != "tf-apply"]
    assert not any(" apply " in _script(s) for s in others)


def test_plan_build_cannot_change_anything() -> None:
    steps = _steps(PLAN)
    assert set(ORDER) <= set(steps)
    assert "tf-apply" not in steps
    assert not any(
        re.search(r"\b(apply|import|state (rm|mv|push)|taint)\b", _script(s))
        for s in steps.values()
    )
    assert "-lock=false" in _script(steps["tf-plan"])  # the planner may not write the state
    # Same checks as the apply build, so a branch is tested as main will be.
    assert {k: v for k, v in steps.items() if k != "tf-plan"} == {
        k: v for k, v in _steps().items() if k not in ("tf-plan", "tf-apply")
    }


def test_triggers_split_plan_from_approved_apply() -> None:
    plan = resource("google_cloudbuild_trigger", "plan")
    apply = resource("google_cloudbuild_trigger", "apply")
    assert plan["filename"] == "cloudbuild-plan.yaml"
    assert apply["filename"] == "cloudbuild.yaml"
    assert (PLAN.is_file(), CLOUDBUILD.is_file()) == (True, True)
    plan_push = block(block(plan, "repository_event_config"), "push")
    apply_push = block(block(apply, "repository_event_config"), "push")
    assert plan_push["branch"] == ".*"
    assert apply_push["branch"] == "^main$"
    assert block(apply, "approval_config") == {"approval_required": True}
    assert "approval_config" not in plan  # plans need nobody's approval: they change nothing
    assert plan["service_account"] == "${google_service_account.planner[0].id}"
    assert "var.deployer_service_account" in apply["service_account"]


def test_the_plan_identity_is_read_only() -> None:
    planner = "${google_service_account.planner[0].member}"
    grants = [
        (rtype, body)
        for rtype, named in config()["resource"].items()
        if rtype.endswith(("_iam_member", "_iam_binding"))
        for body in named.values()
        if planner in json.dumps(body)
    ]
    roles = {(rtype, body["role"]) for rtype, body in grants}
    assert roles == {
        ("google_project_iam_member", "roles/viewer"),
        ("google_project_iam_member", "roles/iam.securityReviewer"),
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
    }
    (state,) = [b for t, b in grants if t == "google_storage_bucket_iam_member"]
    assert state["bucket"] == "${var.tf_state_bucket}"


def test_deploy_dependencies_are_installed_with_require_hashes() -> None:
    for path in (CLOUDBUILD, PLAN):
        script = _script(_steps(path)["deploy-deps"])
        assert "--require-hashes" in script
        assert "functions/clipsearch/requirements.txt" in script
        assert "deploy-deps" in _steps(path)["tests"]["waitFor"]


def test_tests_step_gets_java_and_the_emulator_jar() -> None:
    script = " ".join(map(str, _steps()["tests"]["args"]))
    assert "openjdk" in script
    assert "pubsub-emulator/lib" in script
    assert "pytest" in script
