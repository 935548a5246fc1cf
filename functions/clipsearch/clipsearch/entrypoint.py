"""CloudEvent → service call. Returning acknowledges; raising (HTTP 500) asks for redelivery."""

from __future__ import annotations

from typing import Any

from clipsearch.bootstrap import ServiceHolder, project_of
from clipsearch.service import Outcome

SERVICE = ServiceHolder()


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
