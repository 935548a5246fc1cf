"""Values that flow through the pipeline. Frozen: built once, never mutated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO

from clipsearch.core.sourcecopy import BodyHead


@dataclass(frozen=True)
class QueryObject:
    """The uploaded query image as the storage event describes it."""

    bucket: str
    name: str
    generation: int
    size: int
    content_type: str
    metadata: dict[str, str] = field(hash=False)
    event_id: str
    event_time: str
    trace: str | None = None

    @property
    def key(self) -> str:
        return f"{self.bucket}/{self.name}#{self.generation}"


@dataclass(frozen=True)
class Query:
    """A validated query: what we will pay the API to search."""

    object: QueryObject
    video_no: str
    prompt: str
    unique_id: str
    image_kind: str  # canonical extension: jpeg, png, gif, bmp, webp


@dataclass(frozen=True)
class SourceVideo:
    bucket: str
    blob: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.blob}"


@dataclass(frozen=True)
class Hit:
    """One moment the API matched, in the API's order."""

    start_time: float
    end_time: float
    score: float
    source: SourceVideo | None


@dataclass(frozen=True)
class VideoMetadata:
    video_no: str
    status: str
    duration: float | None
    source: SourceVideo | None


@dataclass(frozen=True)
class Artifact:
    """What we stored in the results bucket for a clip."""

    bucket: str
    name: str
    mode: str  # copy (the whole source video) or clip (only the matching seconds)
    size: int
    reused: bool
    # For clips: what the file really holds (a stream-copied clip starts on a keyframe).
    start_time: float | None = None
    end_time: float | None = None
    keyframe_snapped: bool | None = None
    poster_uri: str | None = None

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class ClipResult:
    rank: int
    hit: Hit
    source: SourceVideo | None
    artifact: Artifact | None
    fetch_error: str | None = None
    fallback_reason: str | None = None  # why a clip was not cut (then copied or referenced)


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent per stage of one event."""

    read_ms: float = 0.0
    search_ms: float = 0.0
    fetch_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class DownloadStream:
    """An open body from the API's download endpoint, read without holding it in memory."""

    stream: IO[bytes]
    size: int | None
    content_type: str


@dataclass(frozen=True)
class VendorBody:
    """An open answer of the download endpoint to `Range: bytes=N-`: what its head says, and
    its body, read without holding it in memory."""

    head: BodyHead
    stream: IO[bytes]
    content_type: str


@dataclass(frozen=True)
class StoredCopy:
    """A whole source video in our results bucket: one generation of one object."""

    name: str
    generation: int
    size: int
    metadata: dict[str, str] = field(hash=False)
