"""infra/monitoring.tf against the log lines the function really writes, offline.

The lines come from the functional tier's harness (the real functions-framework app around
in-memory fakes); each is turned into the LogEntry Cloud Logging would store, and the Terraform
filters and extractors are evaluated against it (tests/infra/logfilter.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from clipsearch import logs
from clipsearch.errors import OPERATOR_ALERT_REASONS, PermanentError, Reason, TransientError
from clipsearch.model import Hit, SourceVideo, VideoMetadata
from tests.fakes import FakeSearchApi
from tests.images import image_bytes
from tests.infra import logfilter
from tests.infra.hcl import INFRA, REPO, all_blocks, block, config, resources
from tests.infra.tfexpr import Resolver, for_each_keys, text

SERVICE = "acme-clipsearch-on-query"  # local.names.function for name_prefix acme-clipsearch
SRC = SourceVideo("mavi-resource", "V1.mp4")
HITS = [Hit(12.5, 18.2, 0.86, SRC)]
OPERATIONS = REPO / "docs" / "operations.md"


# ---- helpers ----------------------------------------------------------------------------------


def _metrics() -> dict[str, dict[str, Any]]:
    """Every log-based metric instance by its resolved name, with filter and extractors."""
    out: dict[str, dict[str, Any]] = {}
    resolver = Resolver()
    for rname, body in resources("google_logging_metric").items():
        for key in for_each_keys(body):
            labels = {
                k: resolver.resolve(text(v), key)
                for k, v in (body.get("label_extractors") or {}).items()
            }
            descriptor = block(body, "metric_descriptor")
            out[resolver.resolve(text(body["name"]), key)] = {
                "resource": rname,
                "filter": resolver.resolve(text(body["filter"]), key),
                "labels": labels,
                "declared": {text(lb["key"]) for lb in all_blocks(descriptor, "labels")},
                "value": resolver.resolve(text(body.get("value_extractor", "")), key),
                "kind": descriptor["value_type"],
            }
    return out


def _policies() -> dict[str, Any]:
    return resources("google_monitoring_alert_policy")


def _log_conditions() -> dict[str, list[str]]:
    resolver = Resolver()
    found: dict[str, list[str]] = {}
    for name, body in _policies().items():
        for condition in all_blocks(body, "conditions"):
            for log_match in all_blocks(condition, "condition_matched_log"):
                found.setdefault(name, []).append(resolver.resolve(text(log_match["filter"])))
    return found


def _entries(harness: Any) -> list[dict[str, Any]]:
    return [logfilter.to_log_entry(line, SERVICE) for line in harness.log_lines()]


def _outcome(entries: list[dict[str, Any]]) -> dict[str, Any]:
    outcomes = [e for e in entries if e["jsonPayload"].get("event") == "outcome"]
    assert len(outcomes) == 1, (
        "expected exactly one event=outcome line (log-field contract, COMMON.md / logs.py):\n"
        + "\n".join(json.dumps(e["jsonPayload"]) for e in entries)
    )
    return outcomes[0]


def _refused(make_harness: Any, reason: Reason) -> list[dict[str, Any]]:
    api = FakeSearchApi(PermanentError(reason, f"API code for {reason}"))
    api.metadata["V1"] = VideoMetadata("V1", "PARSE", 60.0, SRC)
    harness = make_harness(api)
    assert harness.deliver("a.jpg", image_bytes()).status_code == 200
    return _entries(harness)


def _matching(entry: dict[str, Any]) -> set[str]:
    return {name for name, m in _metrics().items() if logfilter.matches(m["filter"], entry)}


# ---- metrics ----------------------------------------------------------------------------------


def test_every_reason_is_told_apart_by_the_outcome_metric_labels(make_harness: Any) -> None:
    # The real error outcome line, then the same line for every Reason in errors.py.
    real = _outcome(_refused(make_harness, Reason.API_REJECTED))
    assert real["jsonPayload"]["reason"] == "api_rejected"
    (outcomes,) = [m for m in _metrics().values() if m["resource"] == "outcomes"]
    assert logfilter.matches(outcomes["filter"], real)
    assert set(outcomes["labels"]) <= outcomes["declared"]

    seen: dict[tuple[tuple[str, str], ...], Reason] = {}
    for reason in Reason:
        entry = json.loads(json.dumps(real))
        entry["jsonPayload"]["reason"] = reason.value
        assert logfilter.matches(outcomes["filter"], entry), reason
        labels = tuple(
            sorted((k, logfilter.extract(x, entry)) for k, x in outcomes["labels"].items())
        )
        assert labels not in seen, f"{reason} and {seen.get(labels)} share labels {labels}"
        assert ("status", "error") in labels
        assert ("reason", reason.value) in labels
        seen[labels] = reason
    assert len(seen) == len(Reason)


def test_success_outcome_and_search_sent_lines_feed_their_metrics(make_harness: Any) -> None:
    harness = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="none")
    assert harness.deliver("a.jpg", image_bytes()).status_code == 200
    entries = _entries(harness)
    outcome = _outcome(entries)
    assert "acme-clipsearch/outcomes" in _matching(outcome)
    (outcomes,) = [m for m in _metrics().values() if m["resource"] == "outcomes"]
    assert logfilter.extract(outcomes["labels"]["status"], outcome) == "success"
    # Stage latencies come from this same line, one distribution per stage, in milliseconds.
    for stage in ("read", "search", "fetch", "total"):
        metric = _metrics()[f"acme-clipsearch/latency_{stage}"]
        assert logfilter.matches(metric["filter"], outcome)
        assert float(logfilter.extract(metric["value"], outcome)) >= 0
        assert metric["kind"] == "DISTRIBUTION"
    sent = [e for e in entries if e["jsonPayload"].get("event") == "search_sent"]
    assert len(sent) == len(harness.api.searches) == 1
    assert _matching(sent[0]) == {"acme-clipsearch/searches_sent"}


def test_duplicate_and_retry_lines_feed_their_metrics(make_harness: Any) -> None:
    harness = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="none")
    harness.deliver("a.jpg", image_bytes())
    harness.deliver("a.jpg", image_bytes())  # the same event again
    duplicates = [e for e in _entries(harness) if e["jsonPayload"].get("event") == "duplicate"]
    assert len(duplicates) == 1
    assert _matching(duplicates[0]) == {"acme-clipsearch/duplicates"}

    failing = make_harness(FakeSearchApi(TransientError("API code 0429: too busy")))
    assert failing.deliver("b.jpg", image_bytes()).status_code == 500
    retries = [e for e in _entries(failing) if e["jsonPayload"].get("event") == "retry"]
    assert retries, "a transient failure logs event=retry"
    assert all("acme-clipsearch/retries" in _matching(e) for e in retries)
    assert not any(e["jsonPayload"].get("event") == "outcome" for e in _entries(failing))


def test_search_unconfirmed_metric_counts_only_that_reason(make_harness: Any) -> None:
    real = _outcome(_refused(make_harness, Reason.API_REJECTED))
    metric = _metrics()["acme-clipsearch/search_unconfirmed"]
    assert not logfilter.matches(metric["filter"], real)
    real["jsonPayload"]["reason"] = Reason.SEARCH_UNCONFIRMED.value
    assert logfilter.matches(metric["filter"], real)


def test_clip_and_rate_wait_metrics_read_contract_fields() -> None:
    # Clip mode needs real media (tests/functional/test_clip_mode.py); here: a line shaped by
    # the contract's fields, through the same JsonFormatter the function uses.
    import logging  # noqa: PLC0415

    record = logging.LogRecord("clipsearch", logging.INFO, __file__, 1, "clip cut", None, None)
    for key, value in {
        "event": "clip",
        "bytes_read": 123456,
        "requests": 3,
        "clip_bytes": 98765,
        "clip_ms": 12.5,
        "fallback_reason": "clip_too_long",
    }.items():
        setattr(record, key, value)
    entry = logfilter.to_log_entry(json.loads(logs.JsonFormatter().format(record)), SERVICE)
    matched = _matching(entry)
    assert {
        "acme-clipsearch/clip_bytes_read",
        "acme-clipsearch/clip_requests",
        "acme-clipsearch/clip_clip_bytes",
        "acme-clipsearch/clip_fallbacks",
    } == matched
    metrics = _metrics()
    assert logfilter.extract(metrics["acme-clipsearch/clip_bytes_read"]["value"], entry) == "123456"
    fallback = metrics["acme-clipsearch/clip_fallbacks"]
    assert logfilter.extract(fallback["labels"]["fallback_reason"], entry) == "clip_too_long"
    del entry["jsonPayload"]["fallback_reason"]
    assert "acme-clipsearch/clip_fallbacks" not in _matching(entry)

    record = logging.LogRecord("clipsearch", logging.INFO, __file__, 1, "paced", None, None)
    record.event = "rate_wait"
    record.wait_s = 0.25
    entry = logfilter.to_log_entry(json.loads(logs.JsonFormatter().format(record)), SERVICE)
    assert _matching(entry) == {"acme-clipsearch/rate_wait_s"}


def test_vendor_download_metrics_read_the_lines_the_function_writes(make_harness: Any) -> None:
    """Each download-endpoint request is a download_request line; each outcome line carries
    the bytes its query downloaded (0 when nothing came from the vendor)."""
    import logging  # noqa: PLC0415

    record = logging.LogRecord(
        "clipsearch", logging.INFO, __file__, 1, "download request", None, None
    )
    record.event = "download_request"
    entry = logfilter.to_log_entry(json.loads(logs.JsonFormatter().format(record)), SERVICE)
    assert _matching(entry) == {"acme-clipsearch/vendor_download_requests"}

    harness = make_harness(FakeSearchApi(HITS), CLIPSEARCH_FETCH_MODE="none")
    assert harness.deliver("a.jpg", image_bytes()).status_code == 200
    outcome = _outcome(_entries(harness))
    metric = _metrics()["acme-clipsearch/vendor_bytes"]
    assert metric["kind"] == "DISTRIBUTION"
    assert logfilter.matches(metric["filter"], outcome)
    assert logfilter.extract(metric["value"], outcome) == "0"
    assert outcome["jsonPayload"]["vendor_requests"] == 0


def test_filters_and_extractors_use_only_fields_the_function_logs() -> None:
    known = set(logs.CONTEXT_FIELDS) | set(logs.METRIC_FIELDS) | {"message", "logger"}
    for name, metric in _metrics().items():
        used = logfilter.fields(metric["filter"])
        used |= {
            re.sub(r"^EXTRACT\((.*)\)$", r"\1", x)
            for x in [*metric["labels"].values(), metric["value"]]
            if x
        }
        for path in used:
            if path.startswith("jsonPayload."):
                top = path.split(".")[1]
                assert top in known, f"{name} reads jsonPayload.{top}, which logs.py never writes"
            else:
                assert path in {"resource.type", "resource.labels.service_name", "severity"}, path


# ---- alert policies ---------------------------------------------------------------------------


@pytest.mark.parametrize("reason", sorted(OPERATOR_ALERT_REASONS))
def test_every_operator_alert_reason_is_paged(make_harness: Any, reason: Reason) -> None:
    line = _outcome(_refused(make_harness, reason))
    assert line["severity"] == "ALERT"
    paging = [
        n for n, fs in _log_conditions().items() if any(logfilter.matches(f, line) for f in fs)
    ]
    assert paging, f"no alert policy matches the {reason} outcome line: {line}"
    for name in paging:
        assert text(_policies()[name]["severity"]) == "CRITICAL"
        extractors = block(block(_policies()[name], "conditions"), "condition_matched_log")
        assert logfilter.extract(text(extractors["label_extractors"]["reason"]), line) == reason


def test_the_page_is_not_raised_by_ordinary_errors_or_other_services(make_harness: Any) -> None:
    line = _outcome(_refused(make_harness, Reason.API_REJECTED))
    assert line["severity"] == "WARNING"
    filters = [f for fs in _log_conditions().values() for f in fs]
    assert filters
    assert not any(logfilter.matches(f, line) for f in filters)
    alert = _outcome(_refused(make_harness, Reason.API_UNAUTHORIZED))
    alert["resource"]["labels"]["service_name"] = "someone-else"
    assert not any(logfilter.matches(f, alert) for f in filters)


def test_every_policy_is_documented_and_can_be_turned_off() -> None:
    names = [text(n) for n in config()["locals"]["alert_names"]]
    assert set(names) == set(_policies())
    validation = json.dumps(config()["variable"]["disabled_alerts"]["validation"])
    doc = OPERATIONS.read_text(encoding="utf-8")
    for name, body in _policies().items():
        assert f'local.alert_enabled[\\"{name}\\"]' in json.dumps(body["count"]) or (
            f'local.alert_enabled["{name}"]' in str(body["count"])
        ), f"{name}: count must depend on local.alert_enabled[{name!r}]"
        assert name in validation, f"{name} missing from var.disabled_alerts' validation"
        documentation = block(body, "documentation")
        content = text(documentation["content"])
        assert len(content) > 200, f"{name}: documentation too short"
        assert re.search(r"^\s*1\. ", content, re.MULTILINE), f"{name}: no steps to follow"
        assert f'section "{name}"' in content, f"{name}: no pointer to its runbook section"
        assert text(documentation["mime_type"]) == "text/markdown"
        assert body["notification_channels"] == "${local.notification_channels}", name
        assert re.search(rf"^#+ .*`{name}`", doc, re.MULTILINE), f"docs/operations.md: {name}"
    assert "local.runbook" in json.dumps([block(b, "documentation") for b in _policies().values()])


def test_alert_filters_name_existing_metrics() -> None:
    metric_types = {f"logging.googleapis.com/user/{n}" for n in _metrics()}
    resolver = Resolver()
    for name, body in _policies().items():
        for condition in all_blocks(body, "conditions"):
            for threshold in all_blocks(condition, "condition_threshold"):
                for key in ("filter", "denominator_filter"):
                    if key not in threshold:
                        continue
                    query = resolver.resolve(text(threshold[key]))
                    (mtype,) = re.findall(r'metric\.type="([^"]+)"', query)
                    if mtype.startswith("logging.googleapis.com/user/"):
                        assert mtype in metric_types, f"{name}: {mtype} is not defined"
                    else:
                        assert mtype.split("/")[0] in {
                            "run.googleapis.com",
                            "pubsub.googleapis.com",
                        }, f"{name}: unexpected metric {mtype}"
                    if "cloud_run_revision" in query and "service_name" in query:
                        assert f'service_name="{SERVICE}"' in query, name


def test_notification_channels_email_by_default_any_id_accepted() -> None:
    email = resources("google_monitoring_notification_channel")["email"]
    assert text(email["type"]) == "email"
    assert email["for_each"] == "${toset(var.notification_emails)}"
    channels = text(config()["locals"]["notification_channels"])
    assert "google_monitoring_notification_channel.email" in channels
    assert "var.notification_channels" in channels
    validation = block(config()["variable"]["notification_channels"], "validation")
    pattern = text(validation["condition"]).split('regex("')[1].split('", c)')[0]
    pattern = pattern.replace("\\\\", "\\")
    assert re.search(pattern, "projects/my-project/notificationChannels/123")
    assert not re.search(pattern, "slack-channel")


# ---- dashboard ------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    body = resources("google_monitoring_dashboard")["clipsearch"]
    call = body["dashboard_json"]
    assert 'templatefile("${path.module}/dashboards/clipsearch.json"' in call
    passed = set(re.findall(r"(\w+)\s*=", call.split("{", 1)[1]))
    raw = (INFRA / "dashboards" / "clipsearch.json").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(\w+)\}", raw))
    assert used == passed, f"template variables used {sorted(used)} != passed {sorted(passed)}"
    values = {
        "title": "clipsearch acme-clipsearch",
        "metrics": "logging.googleapis.com/user/acme-clipsearch",
        "service": SERVICE,
        "region": "us-central1",
        "dead_letter_sub": "acme-clipsearch-results-dead-letter",
        "search_rate_per_min": "60",
        "download_rate_limit": "12",
        "max_instances": "1",
        "timeout_ms": "540000",
    }
    rendered = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], raw)
    loaded: dict[str, Any] = json.loads(rendered)
    return loaded


def _filters(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "filter"] + [
            f for v in node.values() for f in _filters(v)
        ]
    if isinstance(node, list):
        return [f for v in node for f in _filters(v)]
    return []


def test_dashboard_references_only_existing_metrics_and_shows_each() -> None:
    dashboard = _dashboard()
    filters = _filters(dashboard)
    assert len(filters) >= 10
    user = {f"logging.googleapis.com/user/{n}" for n in _metrics()}
    shown = set()
    for query in filters:
        (mtype,) = re.findall(r'metric\.type="([^"]+)"', query)
        if mtype.startswith("logging.googleapis.com/user/"):
            assert mtype in user, f"the dashboard charts {mtype}, which no metric defines"
        shown.add(mtype)
    assert user <= shown, f"metrics not on the dashboard: {sorted(user - shown)}"
    titles = " ".join(t["widget"]["title"] for t in dashboard["mosaicLayout"]["tiles"]).lower()
    for topic in (
        "outcomes by reason",
        "searches sent",
        "latency by stage",
        "clip bytes",
        "vendor download requests",
        "vendor bytes",
    ):
        assert topic in titles, topic
    for topic in ("fallbacks", "instances", "backlog"):
        assert topic in titles, topic
