"""The outcome message: one per query, success or error, same shape either way."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from clipsearch.core.validation import metadata_value
from clipsearch.errors import Reason
from clipsearch.model import ClipResult, Query, QueryObject, Timings

SCHEMA_VERSION = 1
_FRACTION = re.compile(r"T[0-9:]+\.([0-9]+)")


def _query_section(obj: QueryObject, query: Query | None) -> dict[str, Any]:
    return {
        "bucket": obj.bucket,
        "object": obj.name,
        "generation": str(obj.generation),
        "video_no": query.video_no if query else metadata_value(obj.metadata, "video_no"),
        "prompt": query.prompt if query else metadata_value(obj.metadata, "prompt"),
        "unique_id": query.unique_id if query else metadata_value(obj.metadata, "unique_id"),
        "event_id": obj.event_id,
    }


def _clip_section(clip: ClipResult) -> dict[str, Any]:
    artifact = clip.artifact
    return {
        "rank": clip.rank,
        "start_time": clip.hit.start_time,
        "end_time": clip.hit.end_time,
        "score": clip.hit.score,
        "source": (
            {"bucket": clip.source.bucket, "blob": clip.source.blob, "uri": clip.source.uri}
            if clip.source
            else None
        ),
        "artifact": (
            {
                "bucket": artifact.bucket,
                "object": artifact.name,
                "uri": artifact.uri,
                "mode": artifact.mode,
                "size": artifact.size,
                "reused": artifact.reused,
                "start_time": artifact.start_time,
                "end_time": artifact.end_time,
                "keyframe_snapped": artifact.keyframe_snapped,
                "poster_uri": artifact.poster_uri,
            }
            if artifact
            else None
        ),
        "fetch_error": clip.fetch_error,
        "fallback_reason": clip.fallback_reason,
    }


def expires_at(produced_at: str, retention_days: int | None) -> str | None:
    """produced_at plus the results bucket's retention, written the way produced_at is.

    Until then the stored result and every artifact it names are kept (docs/operations.md
    "Retention"); None when no retention is known, i.e. no promise.
    """
    if retention_days is None:
        return None
    produced = datetime.fromisoformat(produced_at)
    if produced.utcoffset() is None:
        raise ValueError(f"produced_at needs a UTC offset, got {produced_at!r}")
    fraction = _FRACTION.search(produced_at)
    digits = len(fraction.group(1)) if fraction else 0
    spec = "seconds" if not digits else "milliseconds" if digits <= 3 else "microseconds"
    text = (produced + timedelta(days=retention_days)).isoformat(timespec=spec)
    return text.removesuffix("+00:00") + "Z" if produced_at.endswith("Z") else text


def success_message(
    query: Query,
    clips: list[ClipResult],
    timings: Timings,
    result_uri: str,
    produced_at: str,
    *,
    retention_days: int | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "success",
        "query": _query_section(query.object, query),
        "clips": [_clip_section(c) for c in clips],
        "error": None,
        "result_uri": result_uri,
        "timings_ms": _timings(timings),
        "produced_at": produced_at,
        "expires_at": expires_at(produced_at, retention_days),
    }


def error_message(
    obj: QueryObject,
    query: Query | None,
    reason: Reason,
    message: str,
    timings: Timings,
    result_uri: str,
    produced_at: str,
    *,
    retention_days: int | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "error",
        "query": _query_section(obj, query),
        "clips": [],
        "error": {"reason": reason.value, "message": message},
        "result_uri": result_uri,
        "timings_ms": _timings(timings),
        "produced_at": produced_at,
        "expires_at": expires_at(produced_at, retention_days),
    }


def _timings(timings: Timings) -> dict[str, float]:
    return {
        "read": round(timings.read_ms, 3),
        "search": round(timings.search_ms, 3),
        "fetch": round(timings.fetch_ms, 3),
        "total": round(timings.total_ms, 3),
    }


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def attributes(message: dict[str, Any]) -> dict[str, str]:
    """Routing attributes: subscribers can filter without parsing the body."""
    query = message["query"]
    attrs = {
        "schema_version": str(message["schema_version"]),
        "status": message["status"],
        "video_no": str(query["video_no"] or ""),
        "query_bucket": query["bucket"],
        "query_object": query["object"],
        "generation": query["generation"],
        "clip_count": str(len(message["clips"])),
    }
    if message["error"]:
        attrs["reason"] = message["error"]["reason"]
    # Pub/Sub caps attribute values at 1024 bytes.
    return {k: v.encode()[:1024].decode(errors="ignore") for k, v in attrs.items()}
