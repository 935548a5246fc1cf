"""In-memory stand-ins for the ports, for the functional tier. They keep what they were given."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from clipsearch.clipping import FileRangeSource, RangeSource
from clipsearch.core.clipmeta import parse_clip_metadata
from clipsearch.errors import FetchRefused, PermanentError, Reason, TransientError
from clipsearch.idempotency import Record
from clipsearch.model import Artifact, DownloadStream, Hit, Query, SourceVideo, VideoMetadata
from clipsearch.ports import MetadataLookup


@dataclass
class StoredObject:
    data: bytes
    generation: int
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = ""


class FakeStorage:
    """Both the image reader and the results store, over a dict of (bucket, name)."""

    def __init__(self, bucket: str = "results", readable_sources: bool = True) -> None:
        self.bucket = bucket
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.readable_sources = readable_sources
        self.copies = 0
        self.uploads = 0

    def put(self, bucket: str, name: str, data: bytes, generation: int = 1, **meta: str) -> None:
        self.objects[(bucket, name)] = StoredObject(data, generation, dict(meta))

    def read_image(self, bucket: str, name: str, generation: int, limit: int) -> bytes:
        obj = self.objects.get((bucket, name))
        if obj is None or obj.generation != generation:
            raise PermanentError(Reason.OBJECT_GONE, f"gs://{bucket}/{name} is gone")
        return obj.data[: limit + 1]

    def write_json(self, name: str, payload: bytes) -> str:
        self.put(self.bucket, name, payload)
        return f"gs://{self.bucket}/{name}"

    def find_copy(
        self, name: str, source_id: str, deadline: float | None = None
    ) -> Artifact | None:
        obj = self.objects.get((self.bucket, name))
        if obj is not None and obj.metadata.get("source") == source_id:
            return Artifact(self.bucket, name, "copy", len(obj.data), reused=True)
        return None

    def copy_from_gcs(
        self, source: SourceVideo, name: str, max_bytes: int, deadline: float | None = None
    ) -> Artifact | None:
        src = self.objects.get((source.bucket, source.blob))
        if src is None or not self.readable_sources:
            return None
        if len(src.data) > max_bytes:
            raise FetchRefused(f"{len(src.data)} bytes is over the per-query fetch cap")
        source_id = f"{source.uri}#{src.generation}"
        existing = self.find_copy(name, source_id)
        if existing:
            return existing
        self.copies += 1
        self.put(self.bucket, name, src.data, source=source_id)
        return Artifact(self.bucket, name, "copy", len(src.data), reused=False)

    def upload_stream(
        self,
        name: str,
        stream: IO[bytes],
        size: int | None,
        content_type: str,
        source_id: str,
        deadline: float | None = None,
    ) -> Artifact:
        self.uploads += 1
        data = stream.read()
        self.put(self.bucket, name, data, source=source_id)
        return Artifact(self.bucket, name, "copy", len(data), reused=False)

    def read_bytes(self, name: str, deadline: float | None = None) -> bytes | None:
        obj = self.objects.get((self.bucket, name))
        return None if obj is None else obj.data

    def write_bytes(
        self, name: str, data: bytes, content_type: str, deadline: float | None = None
    ) -> None:
        self.put(self.bucket, name, data)

    def find_artifact(self, name: str, mode: str, deadline: float | None = None) -> Artifact | None:
        obj = self.objects.get((self.bucket, name))
        if obj is None:
            return None
        meta = parse_clip_metadata(obj.metadata)  # as the GCS adapter reads it
        return Artifact(
            self.bucket,
            name,
            mode,
            len(obj.data),
            reused=True,
            start_time=meta.start,
            end_time=meta.end,
            keyframe_snapped=meta.keyframe_snapped,
            poster_uri=meta.poster_uri,
        )

    def upload_file(
        self,
        name: str,
        path: Path,
        content_type: str,
        metadata: dict[str, str],
        mode: str,
        deadline: float | None = None,
    ) -> Artifact:
        self.uploads += 1
        data = path.read_bytes()
        self.put(self.bucket, name, data, **metadata)
        meta = parse_clip_metadata(metadata)
        return Artifact(
            self.bucket,
            name,
            mode,
            len(data),
            reused=False,
            start_time=meta.start,
            end_time=meta.end,
            keyframe_snapped=meta.keyframe_snapped,
            poster_uri=meta.poster_uri,
        )


class FileSources:
    """Serves source videos from local files, as if ranged reads came from GCS or the API."""

    def __init__(self, files: dict[SourceVideo, Path] | None = None) -> None:
        self.files = files or {}
        self.opened: list[FileRangeSource] = []

    def open_range(
        self,
        source: SourceVideo,
        deadline: float | None = None,
        video: MetadataLookup | None = None,
    ) -> RangeSource | None:
        path = self.files.get(source)
        if path is None:
            return None
        ranged = FileRangeSource(path, cache_key=f"{source.uri}#1")
        self.opened.append(ranged)
        return ranged


class FakeSearchApi:
    """Answers searches from a script: each item is a list of hits or an exception to raise."""

    def __init__(self, *script: list[Hit] | Exception) -> None:
        self.script = list(script)
        self.searches: list[tuple[Query, bytes]] = []
        self.metadata: dict[str, VideoMetadata] = {}
        self.downloads: dict[SourceVideo, bytes] = {}
        self.metadata_calls = 0

    def search(
        self,
        query: Query,
        image: bytes,
        deadline: float,
        before_send: Callable[[], None] | None = None,
    ) -> list[Hit]:
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, TransientError):  # refused before sending, as 0429 is
            raise item
        if before_send is not None:
            before_send()
        self.searches.append((query, image))
        if isinstance(item, Exception):
            raise item
        return item

    def video_metadata(self, video_no: str, unique_id: str, deadline: float) -> VideoMetadata:
        self.metadata_calls += 1
        if video_no not in self.metadata:
            raise PermanentError(Reason.API_INVALID_REQUEST, "API code 0001: no such video")
        return self.metadata[video_no]

    @contextmanager
    def open_download(self, source: SourceVideo, deadline: float) -> Iterator[DownloadStream]:
        if source not in self.downloads:
            raise PermanentError(Reason.API_REJECTED, "Resource does not exist")
        data = self.downloads[source]
        yield DownloadStream(io.BytesIO(data), len(data), "video/mp4")


@dataclass
class Published:
    topic: str
    data: bytes
    attributes: dict[str, str]


class FakePublisher:
    def __init__(self) -> None:
        self.messages: list[Published] = []
        self.fail_with: Exception | None = None

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.messages.append(Published(topic, data, attributes))
        return str(len(self.messages))


class MemoryRecordStore:
    """Idempotency records in a dict, with the same compare-and-swap rules as GCS."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[Record, int]] = {}
        self._next = 1
        self._lock = threading.Lock()

    def create(self, key: str, record: Record) -> int | None:
        with self._lock:
            if key in self.records:
                return None
            return self._put(key, record)

    def read(self, key: str) -> tuple[Record, int] | None:
        with self._lock:
            return self.records.get(key)

    def replace(self, key: str, record: Record, generation: int) -> int | None:
        with self._lock:
            current = self.records.get(key)
            if current is None or current[1] != generation:
                return None
            return self._put(key, record)

    def _put(self, key: str, record: Record) -> int:
        self._next += 1
        self.records[key] = (Record.loads(record.dumps()), self._next)
        return self._next
