"""A small evaluator of the Cloud Logging query-language subset our filters use.

Supported: terms joined by AND; `field="text"`, `field!="text"`, `field:*` (field present),
`severity>=NAME` (and >, <, <=, =) with Logging's severity order. Anything else raises, so a
filter outside the subset cannot pass a test by accident. Also `EXTRACT(field)` extractors and
`to_log_entry`, which turns a line the function printed into the LogEntry Cloud Logging makes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SEVERITIES = [
    "DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY",
]  # fmt: skip
TRACE_FIELD = "logging.googleapis.com/trace"
_TERM = re.compile(r'^([A-Za-z_][\w.]*)\s*(>=|<=|!=|=|>|<|:)\s*("(?:[^"\\]|\\.)*"|\*|[A-Z]+)$')
_MISSING = object()


def to_log_entry(line: Mapping[str, Any], service: str) -> dict[str, Any]:
    """What Cloud Logging stores for one JSON line on a Cloud Run service's stdout: severity and
    trace are lifted out of the payload; every other key (message included) stays in it."""
    payload = dict(line)
    severity = payload.pop("severity", "DEFAULT")
    trace = payload.pop(TRACE_FIELD, None)
    entry: dict[str, Any] = {
        "severity": severity,
        "jsonPayload": payload,
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": service}},
        "logName": "projects/p/logs/run.googleapis.com%2Fstdout",
    }
    if trace:
        entry["trace"] = trace
    return entry


def lookup(entry: Mapping[str, Any], path: str) -> Any:
    node: Any = entry
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _split_and(query: str) -> list[str]:
    terms, current, quoted, i = [], "", False, 0
    while i < len(query):
        ch = query[i]
        if ch == "\\" and quoted:
            current += query[i : i + 2]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if not quoted and query.startswith(" AND ", i):
            terms.append(current.strip())
            current, i = "", i + 5
            continue
        current += ch
        i += 1
    terms.append(current.strip())
    return terms


def _term(entry: Mapping[str, Any], term: str) -> bool:
    match = _TERM.match(term)
    if not match:
        raise ValueError(f"outside the evaluator's subset: {term!r}")
    field, op, literal = match.groups()
    value = lookup(entry, field)
    if literal == "*":
        assert op == ":", term
        return value is not _MISSING
    if field == "severity":
        want = SEVERITIES.index(literal.strip('"'))
        have = SEVERITIES.index(str(entry.get("severity", "DEFAULT")))
        return {
            "=": have == want, "!=": have != want, ">=": have >= want,
            ">": have > want, "<=": have <= want, "<": have < want,
        }[op]  # fmt: skip
    if not literal.startswith('"') or op not in ("=", "!="):
        raise ValueError(f"outside the evaluator's subset: {term!r}")
    text = re.sub(r"\\(.)", r"\1", literal[1:-1])
    equal = value is not _MISSING and str(value) == text
    return equal if op == "=" else not equal


def matches(query: str, entry: Mapping[str, Any]) -> bool:
    return all(_term(entry, term) for term in _split_and(query))


def extract(extractor: str, entry: Mapping[str, Any]) -> str:
    """A label/value extractor's result; only EXTRACT(field) is in the subset."""
    match = re.fullmatch(r"EXTRACT\(([\w.]+)\)", extractor)
    if not match:
        raise ValueError(f"outside the evaluator's subset: {extractor!r}")
    value = lookup(entry, match[1])
    return "" if value is _MISSING or value is None else str(value)


def fields(query: str) -> set[str]:
    """The field paths a filter tests."""
    return {m.group(1) for t in _split_and(query) if (m := _TERM.match(t))}
