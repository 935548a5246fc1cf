"""CloudEvent → service call. Returning acknowledges; raising (HTTP 500) asks for redelivery."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clipsearch.bootstrap import ServiceHolder, project_of
from clipsearch.service import Outcome

SERVICE = ServiceHolder()


def under_framework(env: Mapping[str, str], argv: Sequence[str]) -> bool:
    """Whether this process is the function's server (Cloud Functions, or the framework's
    CLI run locally), rather than a test or a tool importing the module."""
    if env.get("FUNCTION_TARGET") or env.get("K_SERVICE"):
        return True
    program = Path(argv[0]).name if argv else ""
    return program == "functions-framework" or (
        program == "__main__.py" and "functions_framework" in argv[0]
    )


if under_framework(os.environ, sys.argv):
    SERVICE.load()  # a bad setting fails the start-up, not every event


def trace_of(event: Any, project: str) -> str | None:
    """Cloud Logging trace name from the W3C `traceparent` extension, when the event has one."""
    traceparent = event.get("traceparent") if hasattr(event, "get") else None
    if not traceparent:
        return None
    parts = str(traceparent).split("-")
    return f"projects/{project}/traces/{parts[1]}" if len(parts) >= 2 else None


def handle_cloud_event(event: Any, holder: ServiceHolder = SERVICE) -> Outcome:
    service = holder.get()
    return service.handle_event(
        str(event["id"]),
        str(event["type"]),
        event.data,
        event_time=str(event.get("time") or ""),
        trace=trace_of(event, project_of(service.settings.results_topic)),
    )
