"""What can be proven about infra/ without the Google provider: format, structure, checkov."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from clipsearch.settings import SETTINGS
from tests.infra.hcl import (
    INFRA,
    REPO,
    all_blocks,
    block,
    config,
    parsed_files,
    resource,
    resources,
)

SECRET_SETTING = "CLIPSEARCH_API_KEY"
# Settings the rate-limiter issue adds to clipsearch/settings.py. Terraform already wires them;
# once they are in SETTINGS this set no longer matters (and can be emptied).
PENDING_SETTINGS: set[str] = set()

FUNCTION = ("google_cloudfunctions2_function", "clipsearch")
RUNTIME_SA = "google_service_account.runtime"
TRIGGER_SA = "google_service_account.trigger"


def _function() -> Any:
    return resource(*FUNCTION)


def _tf_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(INFRA.glob("*.tf")))


# ---- terraform fmt --------------------------------------------------------------------------


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip(reason="terraform is not on PATH: `terraform fmt -check` not run")
    proc = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(INFRA)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


# ---- the trigger ---------------------------------------------------------------------------


def test_trigger_is_storage_finalize_on_the_query_bucket_in_its_region() -> None:
    trigger = block(_function(), "event_trigger")
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    filters = {f["attribute"]: f["value"] for f in all_blocks(trigger, "event_filters")}
    assert filters == {"bucket": "${google_storage_bucket.query.name}"}
    assert trigger["trigger_region"] == "${lower(google_storage_bucket.query.location)}"
    # ... and the function and the query bucket are in the one region.
    assert _function()["location"] == "${var.region}"
    assert resource("google_storage_bucket", "query")["location"] == "${var.region}"


def test_trigger_retries_and_uses_its_own_identity() -> None:
    trigger = block(_function(), "event_trigger")
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["service_account_email"] == f"${{{TRIGGER_SA}.email}}"
    runtime = block(_function(), "service_config")["service_account_email"]
    assert runtime == f"${{{RUNTIME_SA}.email}}"


def test_function_entry_point_and_content_addressed_source() -> None:
    build = block(_function(), "build_config")
    assert build["runtime"] == "python311"
    assert build["entry_point"] == "on_object_finalized"
    archive = config()["data"]["archive_file"]["source"]
    source_dir = INFRA / archive["source_dir"].replace("${path.module}/", "").replace(
        "${var.function_source_dir}", config()["variable"]["function_source_dir"]["default"]
    )
    main_py = (source_dir / "main.py").read_text(encoding="utf-8")
    assert "def on_object_finalized(" in main_py
    assert (source_dir / "requirements.txt").is_file()
    obj = resource("google_storage_bucket_object", "source")
    assert "${data.archive_file.source.output_md5}" in obj["name"]
    storage_source = block(block(build, "source"), "storage_source")
    assert storage_source["object"] == "${google_storage_bucket_object.source.name}"


# ---- sizing from the rate-limit variables -----------------------------------------------------


def test_instance_cap_and_concurrency_come_from_the_rate_limiter_variables() -> None:
    service = block(_function(), "service_config")
    env = config()["locals"]["function_env"]
    assert service["max_instance_count"] == "${var.max_instances}"
    assert "var.max_instances" in env["CLIPSEARCH_MAX_INSTANCES"]
    assert service["max_instance_request_concurrency"] == "${var.concurrency}"
    assert "var.search_rate_per_s" in env["CLIPSEARCH_SEARCH_RATE_PER_S"]
    for name in ("max_instances", "concurrency", "search_rate_per_s"):
        assert "validation" in config()["variable"][name], name
    # Memory and timeout are set (sized for clip cutting), not left to defaults.
    assert service["available_memory"] == "${var.memory}"
    assert service["timeout_seconds"] == "${var.timeout_seconds}"
    # ...and the function's deadline and idempotency lease follow that same timeout.
    env = config()["locals"]["function_env"]
    assert env["CLIPSEARCH_FUNCTION_TIMEOUT_S"] == "${tostring(var.timeout_seconds)}"


def test_default_memory_holds_the_index_cache_twice_over_with_the_server_and_a_cut() -> None:
    """docs/cost.md#memory: ~100 MiB of server, clients and engine (bench.memory), the
    index cache's cap, and one cut's peak (~110 MiB measured on first sight of a 10 h
    source, bench.scaling; 150 here for slack) must fit in half the default memory."""
    variables = config()["variable"]
    memory = variables["memory"]["default"]
    mib = int(memory[:-2]) * (1024 if memory.endswith("Gi") else 1)
    cache_mib = variables["index_cache_bytes"]["default"] / 2**20
    assert 100 + cache_mib + 150 <= mib / 2 + 1, (memory, cache_mib)


# ---- settings wiring ----------------------------------------------------------------------


def test_every_setting_is_an_env_var_and_the_key_a_secret_env_var() -> None:
    service = block(_function(), "service_config")
    assert service["environment_variables"] == "${merge(local.function_env, local.retention_env)}"
    plain = set(config()["locals"]["function_env"]) | set(config()["locals"]["retention_env"])
    assert not set(config()["locals"]["function_env"]) & set(config()["locals"]["retention_env"])
    settings = {s.env for s in SETTINGS}
    secrets = {s["key"]: s for s in all_blocks(service, "secret_environment_variables")}

    assert SECRET_SETTING in settings
    missing = settings - {SECRET_SETTING} - plain
    assert not missing, f"settings not wired as env vars in infra/locals.tf: {sorted(missing)}"
    unknown = plain - settings - PENDING_SETTINGS
    assert not unknown, f"env vars the code does not read: {sorted(unknown)}"
    assert SECRET_SETTING not in plain, "the API key must not be a plain env var"
    assert set(secrets) == {SECRET_SETTING}
    key = secrets[SECRET_SETTING]
    assert key["secret"] == "${google_secret_manager_secret.api_key.secret_id}"
    assert key["version"] == "latest"


def test_the_secret_value_never_enters_terraform() -> None:
    assert "api_key" in resources("google_secret_manager_secret")
    # No version resource (its data would be in state), no data source reading a value.
    assert not resources("google_secret_manager_secret_version")
    data = config()["data"]
    assert "google_secret_manager_secret_version" not in data
    assert "google_secret_manager_secret_version_access" not in data
    sensitive = [n for n in config()["variable"] if "key" in n.lower() and "api" in n.lower()]
    assert not sensitive, f"no variable may carry the API key: {sensitive}"


def test_output_loop_is_impossible_buckets_differ() -> None:
    names = config()["locals"]["names"]
    assert names["query_bucket"] != names["results_bucket"]
    env = config()["locals"]["function_env"]
    assert env["CLIPSEARCH_QUERY_BUCKET"] == "${google_storage_bucket.query.name}"
    assert env["CLIPSEARCH_RESULTS_BUCKET"] == "${google_storage_bucket.results.name}"
    assert env["CLIPSEARCH_RESULTS_TOPIC"] == "${google_pubsub_topic.results.id}"
    assert env["CLIPSEARCH_ERRORS_TOPIC"] == "${google_pubsub_topic.errors.id}"
    assert config()["variable"]["source_buckets"]["default"] == ["mavi-resource"]


# ---- IAM ----------------------------------------------------------------------------------

_WIDE_IAM = re.compile(r"^google_(project|folder|organization|billing_account)_iam_")


def _members(body: dict[str, Any]) -> list[str]:
    found = [body["member"]] if "member" in body else []
    found += body.get("members", [])
    return [str(m) for m in found]


def test_runtime_identity_has_no_project_level_roles() -> None:
    for rtype, named in config()["resource"].items():
        if not _WIDE_IAM.match(rtype):
            continue
        for name, body in named.items():
            text = json.dumps(body)
            assert RUNTIME_SA not in text, f"{rtype}.{name} grants a wide role to the runtime SA"


PLANNER_SA = "google_service_account.planner[0]"
READ_ONLY_PLAN_ROLES = {"roles/viewer", "roles/iam.securityReviewer", "roles/logging.logWriter"}


def test_project_level_grants_are_the_justified_ones() -> None:
    wide = {
        (rtype, name): body
        for rtype, named in config()["resource"].items()
        if _WIDE_IAM.match(rtype)
        for name, body in named.items()
    }
    granted = {(body["role"], *_members(body)) for body in wide.values()}
    assert granted == {
        ("roles/eventarc.eventReceiver", f"${{{TRIGGER_SA}.member}}"),
        ("roles/pubsub.publisher", "${data.google_storage_project_service_account.gcs.member}"),
        # The plan trigger's identity: reads the project and its IAM, writes its build logs.
        *{(role, f"${{{PLANNER_SA}.member}}") for role in READ_ONLY_PLAN_ROLES},
    }
    assert set(wide) <= {(rtype, n) for rtype, n in wide if rtype == "google_project_iam_member"}
    # Each one carries its justification right above it.
    for _, name in wide:
        (tf_text,) = [
            p.read_text(encoding="utf-8")
            for p in INFRA.glob("*.tf")
            if f'resource "google_project_iam_member" "{name}"' in p.read_text(encoding="utf-8")
        ]
        before = tf_text.split(f'resource "google_project_iam_member" "{name}"')[0]
        assert "PROJECT-LEVEL, justified" in before.rsplit("\n\n", 1)[-1], name


def test_runtime_grants_are_resource_scoped_to_our_resources() -> None:
    runtime = f"${{{RUNTIME_SA}.member}}"
    grants = {
        (rtype, body["role"], body.get("bucket") or body.get("topic") or body.get("secret_id"))
        for rtype, named in config()["resource"].items()
        if rtype.endswith("_iam_member")
        for body in named.values()
        if runtime in _members(body)
    }
    assert grants == {
        (
            "google_storage_bucket_iam_member",
            "roles/storage.objectViewer",
            "${google_storage_bucket.query.name}",
        ),
        (
            "google_storage_bucket_iam_member",
            "roles/storage.objectUser",
            "${google_storage_bucket.results.name}",
        ),
        (
            "google_pubsub_topic_iam_member",
            "roles/pubsub.publisher",
            "${google_pubsub_topic.results.name}",
        ),
        (
            "google_pubsub_topic_iam_member",
            "roles/pubsub.publisher",
            "${google_pubsub_topic.errors.name}",
        ),
        (
            "google_secret_manager_secret_iam_member",
            "roles/secretmanager.secretAccessor",
            "${google_secret_manager_secret.api_key.id}",
        ),
    }


def test_trigger_may_invoke_this_function_only() -> None:
    invokers = [
        body
        for rtype, named in config()["resource"].items()
        if rtype.endswith("_iam_member") or rtype.endswith("_iam_binding")
        for body in named.values()
        if body["role"] in ("roles/run.invoker", "roles/cloudfunctions.invoker")
    ]
    assert len(invokers) == 1
    (grant,) = invokers
    assert grant["member"] == f"${{{TRIGGER_SA}.member}}"
    service = "${google_cloudfunctions2_function.clipsearch.service_config[0].service}"
    assert grant["name"] == service


def test_no_public_principals_anywhere() -> None:
    text = _tf_text()
    for principal in ("allUsers", "allAuthenticatedUsers"):
        assert principal not in text


# ---- storage, topics, secret ----------------------------------------------------------------


def test_buckets_are_uniform_and_never_public() -> None:
    buckets = resources("google_storage_bucket")
    assert set(buckets) == {"query", "results", "source"}
    for name, body in buckets.items():
        assert body["uniform_bucket_level_access"] is True, name
        assert body["public_access_prevention"] == "enforced", name


# What each delete rule of the results bucket counts its days from.
_CLOCKS = ("age", "days_since_custom_time")


def _delete_ages_by_prefix() -> dict[str, tuple[str, str]]:
    """{prefix: (age | days_since_custom_time, days)} over the results bucket's delete rules."""
    rules = all_blocks(resource("google_storage_bucket", "results"), "lifecycle_rule")
    ages: dict[str, tuple[str, str]] = {}
    for rule in rules:
        condition = block(rule, "condition")
        clocks = [c for c in _CLOCKS if c in condition]
        if block(rule, "action")["type"] != "Delete" or not clocks:
            continue
        assert len(clocks) == 1, f"one clock per rule: {condition}"
        for prefix in condition.get("matches_prefix", []):
            assert prefix not in ages, f"{prefix} is in two delete rules"
            ages[prefix] = (clocks[0], condition[clocks[0]])
    return ages


def test_every_prefix_the_function_writes_has_one_lifetime() -> None:
    # Everything under the results prefix: core/naming.py's names, and the locals naming them.
    ages = _delete_ages_by_prefix()
    locals_ = config()["locals"]
    for local in ("videos_prefix", "clips_prefix", "index_prefix"):
        # Artifacts count from their customTime, which a reuse moves forward (adapters/gcs.py).
        assert ages[f"${{local.{local}}}"] == (
            "days_since_custom_time",
            "${var.clip_retention_days + 1}",
        ), local
        assert locals_[local].startswith("${var.results_prefix}"), local
    for local in ("results_records_prefix", "idempotency_prefix"):
        assert ages[f"${{local.{local}}}"] == ("age", "${var.result_retention_days}"), local
    from clipsearch.core import naming  # noqa: PLC0415

    written = {
        naming.video_copy_name("P/", "b", "v.mp4").split("/")[1],
        naming.clip_name("P/", "b", "v.mp4", "1", 0.0, 1.0, False).split("/")[1],
        naming.index_name("P/", "gs://b/v.mp4#1").split("/")[1],
        naming.result_name("P/", "q", "a.jpg", 1).split("/")[1],
        naming.record_prefix("P/").split("/")[1],
    }
    covered = {
        locals_[name].removeprefix("${var.results_prefix}").rstrip("/")
        for name in (
            "videos_prefix", "clips_prefix", "index_prefix", "results_records_prefix",
            "idempotency_prefix",
        )
    }  # fmt: skip
    assert written == covered, f"prefixes without a lifecycle rule: {written - covered}"


def test_the_artifact_rules_extra_day_covers_what_precedes_produced_at() -> None:
    """expires_at = produced_at + result_retention_days must hold for the artifacts a result
    names. An artifact's customTime is at most REFRESH_AFTER (a skipped refresh) plus one run
    of the function (timeout_seconds) older than produced_at; the rule's extra day covers it."""
    from clipsearch.adapters.gcs import REFRESH_AFTER  # noqa: PLC0415

    validations = json.dumps(config()["variable"]["timeout_seconds"]["validation"])
    bound = re.search(r"var\.timeout_seconds <= (\d+)", validations)
    assert bound is not None, "timeout_seconds needs an upper bound"
    longest_run = int(bound.group(1))
    assert REFRESH_AFTER + timedelta(seconds=longest_run) < timedelta(days=1)
    # clip_retention_days >= 1 too: the provider ignores days_since_custom_time = 0.
    assert "var.clip_retention_days >= 1" in json.dumps(
        config()["variable"]["clip_retention_days"]["validation"]
    )


def test_result_json_never_outlives_the_clips_it_names_and_outlives_redeliveries() -> None:
    validations = json.dumps(config()["variable"]["result_retention_days"]["validation"])
    assert "var.result_retention_days >= 2" in validations
    assert "var.result_retention_days <= var.clip_retention_days" in validations
    variables = config()["variable"]
    assert (
        variables["result_retention_days"]["default"] <= variables["clip_retention_days"]["default"]
    )
    query = config()["variable"]["query_retention_days"]
    assert query["default"] == 0
    assert "0 keeps them" in query["description"]
    bucket = resource("google_storage_bucket", "query")
    dynamic = [d["lifecycle_rule"] for d in all_blocks(bucket, "dynamic") if "lifecycle_rule" in d]
    assert [d["for_each"] for d in dynamic] == ["${var.query_retention_days > 0 ? [1] : []}"]
    condition = block(block(dynamic[0], "content"), "condition")
    assert condition == {"age": "${var.query_retention_days}"}


def test_expires_at_retention_is_the_lifecycle_rules_variable() -> None:
    """The function's CLIPSEARCH_RESULT_RETENTION_DAYS (what expires_at promises) is set from
    the variable that deletes result JSON, and its default is that variable's default."""
    env = config()["locals"]["retention_env"]
    assert env == {"CLIPSEARCH_RESULT_RETENTION_DAYS": "${tostring(var.result_retention_days)}"}
    setting = {s.env: s for s in SETTINGS}["CLIPSEARCH_RESULT_RETENTION_DAYS"]
    assert setting.default is not None
    assert int(setting.default) == config()["variable"]["result_retention_days"]["default"]


_FROM_ONE_VARIABLE = re.compile(r"\$\{(?:tostring\()?var\.(\w+)\)?\}")
_JOINED_VARIABLE = re.compile(r'\$\{join\(",", var\.(\w+)\)\}')


def test_every_setting_wired_from_a_variable_has_that_variables_default() -> None:
    """settings == Terraform: a deploy with default variables runs the code's defaults."""
    env = {**config()["locals"]["function_env"], **config()["locals"]["retention_env"]}
    defaults = {s.env: s.default for s in SETTINGS}
    checked = 0
    for name, expression in env.items():
        plain = _FROM_ONE_VARIABLE.fullmatch(expression)
        joined = _JOINED_VARIABLE.fullmatch(expression)
        found = plain or joined
        if found is None:
            continue  # a resource's name or id, not a tunable
        variable = config()["variable"][found.group(1)]
        value = variable["default"]
        if joined is not None:
            shown = ",".join(value)
        elif isinstance(value, bool):
            shown = str(value).lower()
        elif isinstance(value, (int, float)):
            assert float(value) == float(defaults[name] or "nan"), name
            checked += 1
            continue
        else:
            shown = str(value)
        assert shown == defaults[name], name
        checked += 1
    assert checked >= 25


def test_results_and_errors_topics_carry_the_avro_schema_as_json() -> None:
    schema = resource("google_pubsub_schema", "clip_result")
    assert schema["type"] == "AVRO"
    assert schema["definition"] == (
        '${file("${path.module}/../functions/clipsearch/clipsearch/schemas/clip_result.avsc")}'
    )
    assert (INFRA.parent / "functions/clipsearch/clipsearch/schemas/clip_result.avsc").is_file()
    for topic in ("results", "errors"):
        settings = block(resource("google_pubsub_topic", topic), "schema_settings")
        assert settings == {"schema": "${google_pubsub_schema.clip_result.id}", "encoding": "JSON"}


def test_example_subscription_has_dead_letter_and_retry_policies() -> None:
    sub = resource("google_pubsub_subscription", "results_example")
    assert sub["topic"] == "${google_pubsub_topic.results.id}"
    dead = block(sub, "dead_letter_policy")
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter[0].id}"
    assert dead["max_delivery_attempts"] == "${var.example_max_delivery_attempts}"
    retry = block(sub, "retry_policy")
    assert retry["minimum_backoff"]
    assert retry["maximum_backoff"]
    # The dead-letter topic is kept by a subscription, and Pub/Sub's agent may use both ends.
    dl_sub = resource("google_pubsub_subscription", "dead_letter")
    assert dl_sub["topic"] == "${google_pubsub_topic.dead_letter[0].id}"
    assert resource("google_pubsub_topic_iam_member", "pubsub_agent_dead_letters")
    assert resource("google_pubsub_subscription_iam_member", "pubsub_agent_acks_dead_lettered")


# ---- module hygiene -----------------------------------------------------------------------


def test_files_are_split_by_entity() -> None:
    expected = {"versions.tf", "variables.tf", "outputs.tf", "storage.tf", "pubsub.tf"}
    expected |= {"iam.tf", "secrets.tf", "function.tf"}
    assert expected <= set(parsed_files())


def test_variables_are_typed_and_described() -> None:
    for name, body in config()["variable"].items():
        assert body.get("type"), f"variable {name} has no type"
        assert len(body.get("description", "")) > 10, f"variable {name} has no description"


def test_provider_versions_are_bounded_and_nothing_is_random() -> None:
    terraform = [b for b in config()["terraform"] if "required_providers" in b]
    assert len(terraform) == 1
    assert "<" in terraform[0]["required_version"]
    providers = block(terraform[0], "required_providers")
    assert set(providers) >= {"google"}
    for name, spec in providers.items():
        assert re.search(r">=\s*[\d.]+", spec["version"]), name
        assert "<" in spec["version"], name
    assert "random" not in providers
    assert not [r for r in config()["resource"] if r.startswith("random_")]


def test_tfvars_example_sets_only_declared_variables() -> None:
    import hcl2  # noqa: PLC0415

    with (INFRA / "terraform.tfvars.example").open(encoding="utf-8") as handle:
        example = hcl2.load(handle)
    declared = set(config()["variable"])
    keys = {k.strip('"') for k in example if not k.startswith("__")}
    assert keys <= declared, sorted(keys - declared)
    required = {n for n, b in config()["variable"].items() if "default" not in b}
    assert required <= keys, sorted(required - keys)


# ---- checkov ------------------------------------------------------------------------------


def _checkov() -> list[str] | None:
    configured = os.environ.get("CLIPSEARCH_CHECKOV")
    candidates = [
        Path(configured) if configured else None,
        REPO / ".venv" / "checkov" / "bin" / "checkov",  # its own venv: it pins old packaging
        Path(sys.executable).parent / "checkov",
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return [str(candidate)]
    on_path = shutil.which("checkov")
    return [on_path] if on_path else None


def test_every_checkov_skip_is_justified() -> None:
    skips = re.findall(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?", _tf_text())
    assert skips, "expected the documented skips"
    for check, reason in skips:
        assert len((reason or "").strip()) >= 30, f"{check}: skip without a justification"


def test_checkov_passes() -> None:
    argv = _checkov()
    if argv is None:
        pytest.skip(reason="checkov not installed (make venv installs it into .venv/checkov)")
    proc = subprocess.run(
        [
            *argv,
            "--directory",
            str(INFRA),
            "--framework",
            "terraform",
            "--skip-download",  # offline: no policy metadata from the vendor's API
            "--compact",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert proc.stdout, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    summary = [f"{c['check_id']} {c['resource']} {c['file_path']}" for c in failed]
    assert not failed, "checkov failures:\n" + "\n".join(summary)
    assert proc.returncode == 0, proc.stderr[-2000:]
    passed = sum(r["summary"]["passed"] for r in reports)
    assert passed > 10, "checkov scanned suspiciously little"
