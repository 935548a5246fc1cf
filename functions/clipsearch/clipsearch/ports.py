"""What the pipeline needs from the outside world; adapters implement these."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Protocol

from clipsearch.clipping import RangeSource
from clipsearch.model import (
    Artifact,
    ClipResult,
    DownloadStream,
    Hit,
    Query,
    SourceVideo,
    VideoMetadata,
)
from clipsearch.spend import VendorSpend


class ImageReader(Protocol):
    def read_image(self, bucket: str, name: str, generation: int, limit: int) -> bytes:
        """The object's bytes at exactly that generation; PermanentError(OBJECT_GONE) if gone."""
        ...


class SearchApi(Protocol):
    """Every call takes the event's deadline (time.monotonic): waits and retries end there."""

    def search(
        self,
        query: Query,
        image: bytes,
        deadline: float,
        before_send: Callable[[], None] | None = None,
    ) -> list[Hit]:
        """Hits. `before_send` runs right before each request leaves (after any pacing wait):
        the caller records that a billable search is in flight; if it raises, nothing is sent.
        """
        ...

    def video_metadata(self, video_no: str, unique_id: str, deadline: float) -> VideoMetadata: ...

    def open_download(
        self, source: SourceVideo, deadline: float
    ) -> AbstractContextManager[DownloadStream]: ...


class ResultStore(Protocol):
    bucket: str

    def write_json(self, name: str, payload: bytes) -> str:
        """Write (overwrite) a small JSON object; returns its gs:// URI."""
        ...

    def find_copy(
        self, name: str, source_id: str, deadline: float | None = None
    ) -> Artifact | None:
        """An earlier copy of that source under that name, if one is there."""
        ...

    def copy_from_gcs(
        self, source: SourceVideo, name: str, max_bytes: int, deadline: float | None = None
    ) -> Artifact | None:
        """Server-side copy; None when the source is not readable with our identity.

        Raises FetchRefused when the source is larger than `max_bytes`; with a deadline, every
        call (and each step of a multi-call rewrite) ends there (TransientError).
        """
        ...

    def upload_stream(
        self,
        name: str,
        stream: IO[bytes],
        size: int | None,
        content_type: str,
        source_id: str,
        deadline: float | None = None,
    ) -> Artifact:
        """Stream a body in; with a deadline, the upload stops (TransientError) when it passes."""
        ...

    def read_bytes(self, name: str, deadline: float | None = None) -> bytes | None: ...

    def write_bytes(
        self, name: str, data: bytes, content_type: str, deadline: float | None = None
    ) -> None: ...

    def find_artifact(
        self, name: str, mode: str, deadline: float | None = None
    ) -> Artifact | None: ...

    def upload_file(
        self,
        name: str,
        path: Path,
        content_type: str,
        metadata: dict[str, str],
        mode: str,
        deadline: float | None = None,
    ) -> Artifact: ...


class RangeOpener(Protocol):
    def open_range(self, source: SourceVideo, deadline: float | None = None) -> RangeSource | None:
        """A ranged reader of the source video; None when this route cannot read it.

        With a deadline (time.monotonic), every read's timeouts end there, and a read asked
        for after it fails with ClipUnavailable(DEADLINE_EXCEEDED).
        """
        ...


MetadataLookup = Callable[[float], VideoMetadata]


class SourceOpener(Protocol):
    """The API path's clip source (clipsearch.copies.SourceCopies)."""

    def open_range(
        self,
        source: SourceVideo,
        deadline: float | None = None,
        video: MetadataLookup | None = None,
    ) -> RangeSource | None:
        """As RangeOpener; `video` answers the metadata endpoint for the query's video (one
        paced call per event), which an existing copy must agree with to be cut from."""
        ...


class Publisher(Protocol):
    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        """Publish and wait for the server's message id."""
        ...


class Fetcher(Protocol):
    def prefetch(
        self, query: Query, deadline: float, spend: VendorSpend | None = None
    ) -> MetadataLookup | None:
        """Start, before the search, what the fetch will need of the vendor for this query
        (the clip mode's get_metadata call on the `api` source path); None when nothing."""
        ...

    def fetch(
        self,
        query: Query,
        hits: list[Hit],
        deadline: float,
        spend: VendorSpend | None = None,
        lookup: MetadataLookup | None = None,
    ) -> list[ClipResult]:
        """One result per hit; what the download endpoint cost is added to `spend`; `lookup`
        is what `prefetch` returned."""
        ...
