"""Cloud Storage: the query image, our result objects, and video copies."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from clipsearch.clipping import GcsRangeSource, RangeSource
from clipsearch.errors import FetchRefused, PermanentError, Reason, TransientError
from clipsearch.idempotency import Record
from clipsearch.model import Artifact, SourceVideo

# Every call gives up within seconds, not the library's default two minutes of retries: an
# outage must turn into a redelivery well inside the event's deadline.
BOUNDED: dict[str, Any] = {"retry": DEFAULT_RETRY.with_timeout(20.0), "timeout": (5.0, 30.0)}
SOURCE_KEY = "clipsearch-source"  # custom metadata on a copy: where it came from
# Custom metadata on a clip: what it really holds, so a reused clip reports the same.
CLIP_KEYS = ("clipsearch-start", "clipsearch-end", "clipsearch-snapped", "clipsearch-poster")
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024  # memory held while streaming a download into GCS


def source_id(source: SourceVideo, generation: int | None = None) -> str:
    return f"{source.uri}#{generation}" if generation is not None else source.uri


class GcsImageReader:
    def __init__(self, client: storage.Client) -> None:
        self._client = client

    def read_image(self, bucket: str, name: str, generation: int, limit: int) -> bytes:
        blob = self._client.bucket(bucket).blob(name, generation=generation)
        try:
            # One byte past the limit tells "too large" apart without reading a huge object.
            return bytes(blob.download_as_bytes(start=0, end=limit, checksum=None, **BOUNDED))
        except gexc.NotFound:
            raise PermanentError(
                Reason.OBJECT_GONE,
                f"gs://{bucket}/{name} generation {generation} no longer exists",
            ) from None
        except gexc.RequestRangeNotSatisfiable:
            return b""  # a zero-byte object has no range to give


class GcsResultStore:
    def __init__(self, client: storage.Client, bucket: str) -> None:
        self._client = client
        self.bucket = bucket
        self._bucket = client.bucket(bucket)

    def write_json(self, name: str, payload: bytes) -> str:
        blob = self._bucket.blob(name)
        blob.cache_control = "no-cache"
        blob.upload_from_string(payload, content_type="application/json", **BOUNDED)
        return f"gs://{self.bucket}/{name}"

    def _artifact(self, blob: storage.Blob, mode: str, reused: bool) -> Artifact:
        meta = blob.metadata or {}
        start, end, snapped, poster = (meta.get(key) for key in CLIP_KEYS)
        return Artifact(
            self.bucket,
            blob.name,
            mode,
            int(blob.size or 0),
            reused,
            start_time=float(start) if start else None,
            end_time=float(end) if end else None,
            keyframe_snapped=snapped == "true" if snapped else None,
            poster_uri=poster or None,
        )

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return bytes(self._bucket.blob(name).download_as_bytes(**BOUNDED))
        except gexc.NotFound:
            return None

    def write_bytes(self, name: str, data: bytes, content_type: str) -> None:
        self._bucket.blob(name).upload_from_string(data, content_type=content_type, **BOUNDED)

    def find_artifact(self, name: str, mode: str) -> Artifact | None:
        blob = self._bucket.get_blob(name, **BOUNDED)
        return None if blob is None else self._artifact(blob, mode, reused=True)

    def upload_file(
        self, name: str, path: Path, content_type: str, metadata: dict[str, str], mode: str
    ) -> Artifact:
        blob = self._bucket.blob(name, chunk_size=UPLOAD_CHUNK_BYTES)
        blob.metadata = metadata
        blob.upload_from_filename(str(path), content_type=content_type, **BOUNDED)
        return self._artifact(blob, mode, reused=False)

    def find_copy(self, name: str, source_id: str) -> Artifact | None:
        blob = self._bucket.get_blob(name, **BOUNDED)
        if blob is not None and (blob.metadata or {}).get(SOURCE_KEY) == source_id:
            return self._artifact(blob, "copy", reused=True)
        return None

    def copy_from_gcs(self, source: SourceVideo, name: str, max_bytes: int) -> Artifact | None:
        try:
            src = self._client.bucket(source.bucket).get_blob(source.blob, **BOUNDED)
        except gexc.Forbidden:
            return None
        if src is None:
            return None
        if int(src.size or 0) > max_bytes:
            raise FetchRefused(f"{src.size} bytes is over the per-query fetch cap ({max_bytes})")
        pinned = source_id(source, src.generation)
        existing = self.find_copy(name, pinned)
        if existing is not None:
            return existing
        dest = self._bucket.blob(name)
        dest.metadata = {SOURCE_KEY: pinned}
        pinned_src = self._client.bucket(source.bucket).blob(source.blob, generation=src.generation)
        token, _, _ = dest.rewrite(pinned_src, **BOUNDED)
        while token is not None:  # large objects take several rewrite calls
            token, _, _ = dest.rewrite(pinned_src, token=token, **BOUNDED)
        dest.reload(**BOUNDED)
        return self._artifact(dest, "copy", reused=False)

    def upload_stream(
        self, name: str, stream: IO[bytes], size: int | None, content_type: str, source_id: str
    ) -> Artifact:
        blob = self._bucket.blob(name, chunk_size=UPLOAD_CHUNK_BYTES)
        blob.metadata = {SOURCE_KEY: source_id}
        try:
            blob.upload_from_file(stream, size=size, content_type=content_type, **BOUNDED)
        except (OSError, ValueError) as error:
            raise TransientError(
                f"streaming {source_id} into gs://{self.bucket}: {error}"
            ) from None
        blob.reload(**BOUNDED)
        return self._artifact(blob, "copy", reused=False)


class GcsSources:
    """Ranged reads of source videos straight from Cloud Storage, when our identity may read."""

    def __init__(self, client: storage.Client) -> None:
        self._client = client

    def open_range(self, source: SourceVideo) -> RangeSource | None:
        try:
            blob = self._client.bucket(source.bucket).get_blob(source.blob, **BOUNDED)
        except gexc.Forbidden:
            return None
        if blob is None or blob.generation is None or blob.size is None:
            return None
        return GcsRangeSource(
            self._client, source.bucket, source.blob, int(blob.generation), size=int(blob.size)
        )


class GcsRecordStore:
    """Idempotency records as small objects, claimed with generation preconditions."""

    def __init__(self, client: storage.Client, bucket: str, prefix: str) -> None:
        self._bucket = client.bucket(bucket)
        self._prefix = prefix

    def _name(self, key: str) -> str:
        bucket_object, generation = key.rsplit("#", 1)
        return f"{self._prefix}{bucket_object}/{generation}.json"

    def _write(self, key: str, record: Record, if_generation_match: int) -> int | None:
        blob = self._bucket.blob(self._name(key))
        try:
            blob.upload_from_string(
                record.dumps(),
                content_type="application/json",
                if_generation_match=if_generation_match,
                **BOUNDED,
            )
        except gexc.PreconditionFailed:
            return None
        return int(blob.generation)

    def create(self, key: str, record: Record) -> int | None:
        return self._write(key, record, 0)

    def read(self, key: str) -> tuple[Record, int] | None:
        blob = self._bucket.get_blob(self._name(key), **BOUNDED)
        if blob is None:
            return None
        generation = int(blob.generation)
        try:
            data = self._bucket.blob(blob.name, generation=generation).download_as_bytes(**BOUNDED)
        except gexc.NotFound:
            return None
        return Record.loads(data), generation

    def replace(self, key: str, record: Record, generation: int) -> int | None:
        return self._write(key, record, generation)
