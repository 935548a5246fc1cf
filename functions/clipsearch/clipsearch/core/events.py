"""Turn a storage `finalized` CloudEvent's data into a QueryObject."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from clipsearch.core.validation import SIZE_UNKNOWN
from clipsearch.errors import PermanentError, Reason
from clipsearch.model import QueryObject

FINALIZED = "google.cloud.storage.object.v1.finalized"


def parse_finalized_event(
    event_id: str, event_type: str, data: Any, *, event_time: str = "", trace: str | None = None
) -> QueryObject:
    if event_type != FINALIZED:
        raise PermanentError(Reason.BAD_EVENT, f"unexpected event type {event_type!r}")
    if not isinstance(data, Mapping):
        raise PermanentError(Reason.BAD_EVENT, "event data is not a JSON object")
    bucket, name = data.get("bucket"), data.get("name")
    if not isinstance(bucket, str) or not bucket or not isinstance(name, str) or not name:
        raise PermanentError(Reason.BAD_EVENT, "event data lacks bucket or name")
    raw_size = data.get("size")
    try:
        generation = int(data.get("generation", ""))
        # Google's own samples (and curl replays) often leave size out: the read will tell.
        size = SIZE_UNKNOWN if raw_size is None or raw_size == "" else int(raw_size)
    except (TypeError, ValueError):
        raise PermanentError(Reason.BAD_EVENT, "event generation or size is not a number") from None
    if raw_size not in (None, "") and size < 0:
        raise PermanentError(Reason.BAD_EVENT, f"event size {size} is negative")
    raw_metadata = data.get("metadata") or {}
    if not isinstance(raw_metadata, Mapping):
        raise PermanentError(Reason.BAD_EVENT, "event metadata is not an object")
    metadata = {str(k): str(v) for k, v in raw_metadata.items()}
    return QueryObject(
        bucket=bucket,
        name=name,
        generation=generation,
        size=size,
        content_type=str(data.get("contentType") or ""),
        metadata=metadata,
        event_id=event_id,
        event_time=event_time,
        trace=trace,
    )


def event_age_s(event_time: str, now: float) -> float:
    """Seconds since the event happened (0 when the event carries no usable time)."""
    try:
        happened = datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    return max(0.0, now - happened)
