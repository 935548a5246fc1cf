"""Deterministic output names, and the checks that keep foreign names from shaping them."""

from __future__ import annotations

import unicodedata

MAX_BLOB_CHARS = 1024


def is_safe_blob_name(name: str) -> bool:
    """A blob name from the API may become part of our object names: refuse tricks."""
    if not name or len(name) > MAX_BLOB_CHARS or name.startswith("/"):
        return False
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def video_copy_name(prefix: str, source_bucket: str, source_blob: str) -> str:
    return f"{prefix}videos/{source_bucket}/{source_blob}"


def result_name(prefix: str, query_bucket: str, query_object: str, generation: int) -> str:
    return f"{prefix}results/{query_bucket}/{query_object}/{generation}.json"


def clip_name(
    prefix: str,
    source_bucket: str,
    source_blob: str,
    version: str,
    start: float,
    end: float,
    exact: bool,
) -> str:
    """One name per (source version, requested range, mode): a repeat query reuses the clip."""
    suffix = "-exact" if exact else ""
    return (
        f"{prefix}clips/{source_bucket}/{source_blob}/{version}/{start:.3f}-{end:.3f}{suffix}.mp4"
    )


def index_name(prefix: str, cache_key: str) -> str:
    """The sidecar holding a source's parsed MP4 index, shared by every instance."""
    return f"{prefix}index/{cache_key.removeprefix('gs://').replace('#', '/')}.idx"


def record_prefix(prefix: str) -> str:
    """Where idempotency records live: PREFIX/records/BUCKET/OBJECT/GENERATION.json."""
    return f"{prefix}records/"
