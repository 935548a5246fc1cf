"""How a source video's bytes reach the clip engine on the API path: the rules, no I/O.

The vendor's download endpoint is the scarce resource (12 requests a minute per account, every
byte billed), so a source is downloaded whole, once, into our results bucket, and every clip of
every later query is cut from that copy by Cloud Storage ranged reads. Only a source larger
than a set size, on an endpoint that honours `Range`, is read by ranged vendor requests instead
(a few requests per clip, a few MB billed, instead of the whole file). docs/cost.md gives the
figures behind the rule.

A copy records what the endpoint said of the file when it was downloaded (its validators), and
what the metadata endpoint said of the video just before (its duration, the bucket/blob it
names: `VendorFacts`); a later answer about the same source that disagrees with either means
the source changed, and the copy is not used again (`judge_copy`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # clipsearch.model imports this module
    from clipsearch.model import VideoMetadata

# Custom metadata keys on a copy (Cloud Storage lowercases nothing; keep them lowercase).
META_SOURCE = "clipsearch-source"  # the same key copy mode uses: a copy serves both modes
META_SIZE = "clipsearch-source-size"
META_ETAG = "clipsearch-source-etag"
META_MODIFIED = "clipsearch-source-modified"
META_VERSION = "clipsearch-source-version"
META_CHECKED = "clipsearch-source-checked"  # when the endpoint last confirmed the file
# What the metadata endpoint said of the video (before the download, or at the first check of
# a copy made without it).
META_DURATION = "clipsearch-source-duration"
META_VENDOR_BUCKET = "clipsearch-source-vendor-bucket"
META_VENDOR_BLOB = "clipsearch-source-vendor-blob"

# Durations within this many seconds are the same video (the endpoint rounds them).
DURATION_TOLERANCE_S = 0.05

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class Route(StrEnum):
    """How a source's bytes arrive for clip cutting."""

    COPY = "copy"  # one whole download into our bucket; clips from the copy
    RANGED = "ranged"  # ranged vendor requests for this query's clips; nothing kept


@dataclass(frozen=True)
class Validators:
    """What the endpoint told of the file: total size, ETag, Last-Modified (any may be absent)."""

    size: int | None
    etag: str | None = None
    last_modified: str | None = None

    @property
    def version(self) -> str:
        """A short stable name for this content: clips cut from it are named by it."""
        text = f"{self.size}|{self.etag or ''}|{self.last_modified or ''}"
        return "v" + hashlib.sha256(text.encode()).hexdigest()[:16]

    def metadata(self, source_uri: str) -> dict[str, str]:
        meta = {META_SOURCE: source_uri, META_VERSION: self.version}
        if self.size is not None:
            meta[META_SIZE] = str(self.size)
        if self.etag:
            meta[META_ETAG] = self.etag
        if self.last_modified:
            meta[META_MODIFIED] = self.last_modified
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> Validators | None:
        """The validators a copy was stored with; None for a copy without them."""
        size = meta.get(META_SIZE, "")
        if not size.isdigit():
            return None
        return cls(int(size), meta.get(META_ETAG) or None, meta.get(META_MODIFIED) or None)


def changed(recorded: Validators, seen: Validators) -> str | None:
    """Why `seen` is not the file `recorded` describes, or None when nothing disagrees.

    Only what both sides know is compared: an endpoint that sends no ETag still gives a size.
    """
    if recorded.size is not None and seen.size is not None and recorded.size != seen.size:
        return f"size {recorded.size} became {seen.size}"
    if recorded.etag and seen.etag and recorded.etag != seen.etag:
        return "ETag changed"
    modified = recorded.last_modified, seen.last_modified
    if all(modified) and modified[0] != modified[1]:
        return "Last-Modified changed"
    return None


@dataclass(frozen=True)
class VendorFacts:
    """What the metadata endpoint said of a video: its duration and the bucket/blob it names."""

    duration: float | None
    bucket: str | None = None
    blob: str | None = None

    @classmethod
    def of(cls, metadata: VideoMetadata) -> VendorFacts:
        source = metadata.source
        return cls(
            metadata.duration,
            None if source is None else source.bucket,
            None if source is None else source.blob,
        )

    def metadata(self) -> dict[str, str]:
        meta: dict[str, str] = {}
        if self.duration is not None:
            meta[META_DURATION] = repr(float(self.duration))
        if self.bucket and self.blob:
            meta[META_VENDOR_BUCKET] = self.bucket
            meta[META_VENDOR_BLOB] = self.blob
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> VendorFacts | None:
        """What a copy recorded of the metadata endpoint; None for a copy without it."""
        try:
            duration: float | None = float(meta[META_DURATION])
        except (KeyError, ValueError):
            duration = None
        bucket = meta.get(META_VENDOR_BUCKET) or None
        blob = meta.get(META_VENDOR_BLOB) or None
        if duration is None and not (bucket and blob):
            return None
        return cls(duration, bucket, blob)


def facts_comparable(recorded: VendorFacts, seen: VendorFacts) -> bool:
    """Whether the two share anything `facts_changed` can compare."""
    return (recorded.duration is not None and seen.duration is not None) or bool(
        recorded.bucket and recorded.blob and seen.bucket and seen.blob
    )


def facts_changed(
    recorded: VendorFacts, seen: VendorFacts, tolerance_s: float = DURATION_TOLERANCE_S
) -> str | None:
    """Why the metadata endpoint's answer is not the video a copy recorded, or None.

    Only what both sides know is compared, as for the validators.
    """
    durations = recorded.duration, seen.duration
    if (
        durations[0] is not None
        and durations[1] is not None
        and abs(durations[0] - durations[1]) > tolerance_s
    ):
        return f"duration {durations[0]:g} s became {durations[1]:g} s"
    both_named = recorded.bucket and recorded.blob and seen.bucket and seen.blob
    if both_named and (recorded.bucket, recorded.blob) != (seen.bucket, seen.blob):
        return (
            f"stored at gs://{seen.bucket}/{seen.blob}, not gs://{recorded.bucket}/{recorded.blob}"
        )
    return None


def content_version(validators: Validators, facts: VendorFacts | None) -> str:
    """The version a new copy's clips are named by: its validators, and the metadata
    endpoint's facts when known (a file replaced with the same size and no ETag or
    Last-Modified still gets a new name, so no clip cut from the old file is reused)."""
    if facts is None:
        return validators.version
    text = (
        f"{validators.size}|{validators.etag or ''}|{validators.last_modified or ''}"
        f"|{facts.duration!r}|{facts.bucket or ''}|{facts.blob or ''}"
    )
    return "v" + hashlib.sha256(text.encode()).hexdigest()[:16]


def copy_version(meta: Mapping[str, str]) -> str | None:
    """The version a stored copy's clips are named by; None for a copy without validators.

    A copy that records the metadata endpoint's facts carries its version; an older copy's is
    its validators' (what it has always been named by).
    """
    recorded = Validators.from_metadata(meta)
    if recorded is None:
        return None
    stored = meta.get(META_VERSION, "")
    if VendorFacts.from_metadata(meta) is not None and stored:
        return stored
    return recorded.version


class CopyCheck(StrEnum):
    """What a query does with a stored copy before cutting from it."""

    USE = "use"  # cut from it
    RECHECK = "recheck"  # ask the download endpoint (one request, one byte) first
    STALE = "stale"  # the source changed: copy it again


@dataclass(frozen=True)
class Verdict:
    check: CopyCheck
    why: str


def judge_copy(
    meta: Mapping[str, str],
    seen: VendorFacts | None,
    *,
    consulted: bool,
    recheck_due: bool,
) -> Verdict:
    """Whether a query may cut from a stored copy, given what the metadata endpoint said now.

    `consulted`: the query asked the metadata endpoint (`seen` is its answer, None when the
    call failed). A disagreement with what the copy recorded is a changed source. Agreement
    leaves the periodic validator recheck (`recheck_due`). When the query asked but nothing
    can be compared (the call failed, the copy predates the record, the answer lacks the
    fields), the validators are asked instead: never cut unconfirmed.
    """
    recorded = VendorFacts.from_metadata(meta)
    if seen is not None and recorded is not None and facts_comparable(recorded, seen):
        why = facts_changed(recorded, seen)
        if why is not None:
            return Verdict(CopyCheck.STALE, why)
        if recheck_due:
            return Verdict(CopyCheck.RECHECK, "the metadata agrees; the recheck is due")
        return Verdict(CopyCheck.USE, "the metadata agrees")
    if consulted:
        if seen is None:
            why = "the metadata endpoint did not answer"
        elif recorded is None:
            why = "the copy has no recorded metadata"
        else:
            why = "the metadata answer carries nothing to compare"
        return Verdict(CopyCheck.RECHECK, why)
    if recheck_due:
        return Verdict(CopyCheck.RECHECK, "the recheck is due")
    return Verdict(CopyCheck.USE, "confirmed within the recheck interval")


def comparable(recorded: Validators, seen: Validators) -> bool:
    """Whether the two share at least one validator, so `changed` can tell anything."""
    return (
        (recorded.size is not None and seen.size is not None)
        or bool(recorded.etag and seen.etag)
        or bool(recorded.last_modified and seen.last_modified)
    )


def checked_at(meta: Mapping[str, str]) -> datetime | None:
    """When the endpoint last confirmed a copy's file (aware UTC), None if never recorded."""
    try:
        when = datetime.fromisoformat(meta.get(META_CHECKED, ""))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def copy_is_current(
    meta: Mapping[str, str], source_uri: str, size: int, known: Validators | None
) -> bool:
    """Whether a stored object is a complete copy of this source we may cut from.

    It must name the source, hold as many bytes as the endpoint said the file has, and agree
    with the latest validators this instance has seen for the source (if any).
    """
    if meta.get(META_SOURCE) != source_uri:
        return False
    recorded = Validators.from_metadata(meta)
    if recorded is None or recorded.size != size:
        return False
    return known is None or changed(recorded, known) is None


def plan_route(size: int | None, range_honoured: bool | None, ranged_above_bytes: int) -> Route:
    """The rule: copy, unless the file is larger than the set size and `Range` works."""
    if range_honoured and size is not None and size > ranged_above_bytes:
        return Route.RANGED
    return Route.COPY


@dataclass(frozen=True)
class BodyHead:
    """What the status line and headers of a download answer say, before its body is read."""

    start: int  # the first byte the body holds
    ranged: bool  # 206: the endpoint honoured Range
    length: int | None  # the body's length (Content-Length), None under chunked encoding
    validators: Validators


def read_head(status: int, headers: Mapping[str, str], asked_from: int) -> BodyHead:
    """Interpret a 200/206 answer to `Range: bytes=asked_from-`; ValueError when unusable.

    A 200 is the whole file whatever was asked (the endpoint ignored `Range`); a 206 must
    start where asked. The total size comes from Content-Range, else from a 200's length.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    raw_length = lower.get("content-length", "").strip()
    length = int(raw_length) if raw_length.isdigit() else None
    etag = lower.get("etag") or None
    modified = lower.get("last-modified") or None
    if status == 200:
        return BodyHead(0, False, length, Validators(length, etag, modified))
    if status != 206:
        raise ValueError(f"HTTP {status} is not a body")
    match = _CONTENT_RANGE.fullmatch(lower.get("content-range", "").strip())
    if match is None:
        raise ValueError("206 without a usable Content-Range")
    first, last, total = int(match.group(1)), int(match.group(2)), match.group(3)
    if first != asked_from or last < first:
        raise ValueError(f"206 for bytes {first}-{last}, asked from {asked_from}")
    size = int(total) if total != "*" else None
    if size is not None and last >= size:
        raise ValueError("Content-Range past its own total")
    if length is not None and length != last - first + 1:
        raise ValueError("Content-Length disagrees with Content-Range")
    return BodyHead(first, True, last - first + 1, Validators(size, etag, modified))
