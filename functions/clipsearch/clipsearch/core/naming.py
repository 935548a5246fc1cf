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
