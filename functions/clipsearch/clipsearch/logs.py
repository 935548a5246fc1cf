"""Structured logs: one JSON object per line, in Cloud Logging's format."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import IO, Any

SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
ALERT = logging.CRITICAL + 5  # Cloud Logging's ALERT: somebody must act (key, credits)
logging.addLevelName(ALERT, "ALERT")
SEVERITY[ALERT] = "ALERT"
CONTEXT_FIELDS = ("event_id", "object", "generation", "video_no", "reason", "status")
# Measurement fields, read by the log-based metrics in infra/monitoring (docs/operations.md).
# `event` names the kind of line: outcome, search_sent, duplicate, rate_wait, clip, retry,
# download (a source copied or routed), download_request (one per request to the vendor's
# download endpoint). The vendor_* fields: what a query spent at that endpoint.
METRIC_FIELDS = (
    "event",
    "attempt",
    "timings_ms",
    "wait_s",
    "fallback_reason",
    "bytes_read",
    "requests",
    "clip_bytes",
    "clip_ms",
    "index_path",
    "vendor_requests",
    "vendor_bytes",
    "vendor_restarts",
    "vendor_metadata_calls",
    "route",
    "range_honoured",
    "source_bytes",
    "download_ms",
    "source_changed",
    "restarts",
)
TRACE_FIELD = "logging.googleapis.com/trace"


class JsonFormatter(logging.Formatter):
    """Renders records as Cloud Logging JSON, with every secret replaced by ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "logger": record.name,
        }
        for field in CONTEXT_FIELDS + METRIC_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        trace = getattr(record, "trace", None)
        if trace:
            entry[TRACE_FIELD] = trace
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        line = json.dumps(entry, ensure_ascii=False, default=str)
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line


def configure(
    level: str, secrets: Iterable[str] = (), stream: IO[str] | None = None
) -> logging.Logger:
    """Route the package's logs (and the root's) through the JSON formatter, once."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_clipsearch", False):
            root.removeHandler(existing)
    handler._clipsearch = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return logging.getLogger("clipsearch")


class ContextLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the event's context to every line; per-call `extra` adds to it, not replaces it."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs
