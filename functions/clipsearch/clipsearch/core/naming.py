"""Deterministic output names, and the checks that keep foreign names from shaping them."""

from __future__ import annotations

import hashlib
import unicodedata

MAX_BLOB_CHARS = 1024
MAX_NAME_BYTES = 1024  # Cloud Storage's limit on an object name, in UTF-8 bytes
_DIGEST_CHARS = 32
_MAX_TAIL_BYTES = 200


def is_safe_blob_name(name: str) -> bool:
    """A blob name from the API may become part of our object names: refuse tricks."""
    if not name or len(name) > MAX_BLOB_CHARS or name.startswith("/"):
        return False
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def fit_name(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """`name` itself when it fits Cloud Storage's limit, else a deterministic shorter one.

    Names built from an upload's or the vendor's names can be too long. The shortened name
    keeps its start (so prefixes still tell our outputs apart) and its last segment (the
    generation, times and extension), with a hash of the whole name in between: distinct
    names stay distinct, and a repeat builds the same one.
    """
    data = name.encode()
    if len(data) <= limit:
        return name
    digest = hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]
    head, _, tail = name.rpartition("/")
    if len(tail.encode()) > _MAX_TAIL_BYTES:
        stem, dot, ext = tail.rpartition(".")
        tail = f"{digest}.{ext}" if dot and stem and len(ext) <= 16 else digest
        if len(f"{head}/{tail}".encode()) <= limit:
            return f"{head}/{tail}"
    marker = f"/~{digest}/{tail}"
    room = limit - len(marker.encode())
    kept = head.encode()[:room].decode("utf-8", "ignore").rstrip("/")
    return f"{kept}{marker}"


def video_copy_name(prefix: str, source_bucket: str, source_blob: str) -> str:
    return fit_name(f"{prefix}videos/{source_bucket}/{source_blob}")


def result_name(prefix: str, query_bucket: str, query_object: str, generation: int) -> str:
    return fit_name(f"{prefix}results/{query_bucket}/{query_object}/{generation}.json")


def record_name(prefix: str, key: str) -> str:
    """An idempotency record's name, from its key BUCKET/OBJECT#GENERATION."""
    bucket_object, generation = key.rsplit("#", 1)
    return fit_name(f"{prefix}{bucket_object}/{generation}.json")


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
    return fit_name(
        f"{prefix}clips/{source_bucket}/{source_blob}/{version}/{start:.3f}-{end:.3f}{suffix}.mp4"
    )


def index_name(prefix: str, cache_key: str) -> str:
    """The sidecar holding a source's parsed MP4 index, shared by every instance."""
    return fit_name(f"{prefix}index/{cache_key.removeprefix('gs://').replace('#', '/')}.idx")


def record_prefix(prefix: str) -> str:
    """Where idempotency records live: PREFIX/records/BUCKET/OBJECT/GENERATION.json."""
    return f"{prefix}records/"
