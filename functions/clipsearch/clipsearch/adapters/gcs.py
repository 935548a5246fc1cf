"""Cloud Storage: the query image, our result objects, and video copies."""

from __future__ import annotations

from typing import IO

from google.api_core import exceptions as gexc
from google.cloud import storage

from clipsearch.errors import PermanentError, Reason, TransientError
from clipsearch.model import Artifact, SourceVideo

SOURCE_KEY = "clipsearch-source"  # custom metadata on a copy: where it came from
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
            return bytes(blob.download_as_bytes(start=0, end=limit, checksum=None))
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
        blob.upload_from_string(payload, content_type="application/json")
        return f"gs://{self.bucket}/{name}"

    def _artifact(self, blob: storage.Blob, mode: str, reused: bool) -> Artifact:
        return Artifact(self.bucket, blob.name, mode, int(blob.size or 0), reused)

    def find_copy(self, name: str, source_id: str) -> Artifact | None:
        blob = self._bucket.get_blob(name)
        if blob is not None and (blob.metadata or {}).get(SOURCE_KEY) == source_id:
            return self._artifact(blob, "copy", reused=True)
        return None

    def copy_from_gcs(self, source: SourceVideo, name: str) -> Artifact | None:
        try:
            src = self._client.bucket(source.bucket).get_blob(source.blob)
        except gexc.Forbidden:
            return None
        if src is None:
            return None
        pinned = source_id(source, src.generation)
        existing = self.find_copy(name, pinned)
        if existing is not None:
            return existing
        dest = self._bucket.blob(name)
        dest.metadata = {SOURCE_KEY: pinned}
        pinned_src = self._client.bucket(source.bucket).blob(source.blob, generation=src.generation)
        token, _, _ = dest.rewrite(pinned_src)
        while token is not None:  # large objects take several rewrite calls
            token, _, _ = dest.rewrite(pinned_src, token=token)
        dest.reload()
        return self._artifact(dest, "copy", reused=False)

    def upload_stream(
        self, name: str, stream: IO[bytes], size: int | None, content_type: str, source_id: str
    ) -> Artifact:
        blob = self._bucket.blob(name, chunk_size=UPLOAD_CHUNK_BYTES)
        blob.metadata = {SOURCE_KEY: source_id}
        try:
            blob.upload_from_file(stream, size=size, content_type=content_type)
        except (OSError, ValueError) as error:
            raise TransientError(
                f"streaming {source_id} into gs://{self.bucket}: {error}"
            ) from None
        blob.reload()
        return self._artifact(blob, "copy", reused=False)
