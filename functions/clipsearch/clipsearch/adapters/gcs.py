"""Cloud Storage: the query image, our result objects, and video copies.

Every call is bounded in time, and a failure Cloud Storage may get over (5xx, 429, a
connection or a client-side timeout) is raised as TransientError: the trigger redelivers,
and such failures never count towards ending a query as `internal_error`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

import google.auth.exceptions
import requests
import urllib3
from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from clipsearch.adapters.ranges import GcsRangeSource
from clipsearch.clipping import RangeSource
from clipsearch.core.clipmeta import parse_clip_metadata
from clipsearch.core.naming import record_name
from clipsearch.errors import FetchRefused, PermanentError, Reason, TransientError
from clipsearch.idempotency import Record
from clipsearch.model import Artifact, SourceVideo, StoredCopy

# Every call gives up within seconds, not the library's default two minutes of retries: an
# outage must turn into a redelivery well inside the event's deadline.
BOUNDED: dict[str, Any] = {"retry": DEFAULT_RETRY.with_timeout(20.0), "timeout": (5.0, 30.0)}
SOURCE_KEY = "clipsearch-source"  # custom metadata on a copy: where it came from
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024  # memory held while streaming a download into GCS
# An artifact's customTime is when a query last made or reused it: the results bucket deletes
# artifacts clip_retention_days (+1 day of margin) after it (infra/storage.tf). A reuse moves it
# forward only when it is older than this, which saves a metadata write per reuse in a burst
# (Cloud Storage allows about one write per second to one object) and stays far inside the
# rule's one-day margin.
REFRESH_AFTER = timedelta(hours=1)
# A refresh retries briefly: a 429 there means another instance is writing the same object.
REFRESH: dict[str, Any] = {"retry": DEFAULT_RETRY.with_timeout(5.0), "timeout": (5.0, 10.0)}


P = ParamSpec("P")
T = TypeVar("T")
# Failures after which the same call may well succeed later.
TRANSIENT_GCS: tuple[type[BaseException], ...] = (
    gexc.ServerError,
    gexc.TooManyRequests,
    gexc.RetryError,
    requests.RequestException,
    google.auth.exceptions.TransportError,
    ConnectionError,
    TimeoutError,
)


# What reading a download's body (response.raw) raises when the connection drops or stalls.
DROPPED_BODY: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    urllib3.exceptions.HTTPError,
    requests.RequestException,
)


@contextmanager
def transient_gcs(what: str) -> Iterator[None]:
    """Turn Cloud Storage's passing failures into TransientError (the type name only)."""
    try:
        yield
    except TRANSIENT_GCS as error:
        raise TransientError(f"{what}: {type(error).__name__}") from None


def _transient(what: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    def wrap(method: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(method)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            with transient_gcs(f"Cloud Storage {what}"):
                return method(*args, **kwargs)

        return call

    return wrap


def bounded(deadline: float | None, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """BOUNDED, shortened to end at `deadline` (time.monotonic) when one is given."""
    return _shorter(BOUNDED, deadline, clock)


def _shorter(
    limits: dict[str, Any], deadline: float | None, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """Retry budget and timeouts cut to the time left before `deadline` (at least 0.5 s)."""
    if deadline is None:
        return limits
    left = max(0.5, deadline - clock())
    connect, read = limits["timeout"]
    return {
        "retry": limits["retry"].with_timeout(min(limits["retry"].timeout, left)),
        "timeout": (min(connect, left), min(read, left)),
    }


class _DeadlineStream:
    """A body read towards Cloud Storage that stops when the event's deadline passes."""

    def __init__(self, inner: IO[bytes], deadline: float, clock: Callable[[], float]) -> None:
        self._inner = inner
        self._deadline = deadline
        self._clock = clock

    def read(self, size: int = -1) -> bytes:
        if self._clock() >= self._deadline:
            raise TimeoutError("the event's deadline passed while streaming")
        return self._inner.read(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def source_id(source: SourceVideo, generation: int | None = None) -> str:
    return f"{source.uri}#{generation}" if generation is not None else source.uri


class GcsImageReader:
    def __init__(self, client: storage.Client) -> None:
        self._client = client

    @_transient("read")
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


def _utc_now() -> datetime:
    return datetime.now(UTC)


class GcsResultStore:
    def __init__(
        self, client: storage.Client, bucket: str, now: Callable[[], datetime] = _utc_now
    ) -> None:
        self._client = client
        self.bucket = bucket
        self._bucket = client.bucket(bucket)
        self._now = now

    def _stamp(self, blob: storage.Blob) -> storage.Blob:
        """Set a new artifact's customTime (sent with its upload): its lifetime starts now."""
        blob.custom_time = self._now()
        return blob

    def _refresh(self, blob: storage.Blob, deadline: float | None = None) -> bool:
        """A reused artifact lives on from now: move its customTime forward (one metadata
        patch), unless it moved less than REFRESH_AFTER ago. True when it patched."""
        now = self._now()
        current = blob.custom_time
        if current is not None and current >= now - REFRESH_AFTER:
            return False
        self._patch_custom_time(blob, now, deadline)
        return True

    def _patch_custom_time(
        self, blob: storage.Blob, when: datetime, deadline: float | None = None
    ) -> None:
        blob.custom_time = when
        # Gone (nothing to keep); or a concurrent reuse is writing it (429) or has moved it
        # past `when` already (400: customTime never moves back). Either way it is kept.
        with contextlib.suppress(gexc.NotFound, gexc.TooManyRequests, gexc.BadRequest):
            blob.patch(**_shorter(REFRESH, deadline))

    @_transient("write")
    def write_json(self, name: str, payload: bytes) -> str:
        blob = self._bucket.blob(name)
        blob.cache_control = "no-cache"
        blob.upload_from_string(payload, content_type="application/json", **BOUNDED)
        return f"gs://{self.bucket}/{name}"

    def _artifact(self, blob: storage.Blob, mode: str, reused: bool) -> Artifact:
        meta = parse_clip_metadata(blob.metadata)  # a copy has none: all None
        return Artifact(
            self.bucket,
            blob.name,
            mode,
            int(blob.size or 0),
            reused,
            start_time=meta.start,
            end_time=meta.end,
            keyframe_snapped=meta.keyframe_snapped,
            poster_uri=meta.poster_uri,
        )

    @_transient("read")
    def read_bytes(self, name: str, deadline: float | None = None) -> bytes | None:
        """A cached artifact (an MP4 index sidecar): reading it is reusing it, so it is kept."""
        blob = self._bucket.get_blob(name, **bounded(deadline))
        if blob is None:
            return None
        try:
            data = bytes(
                self._bucket.blob(name, generation=blob.generation).download_as_bytes(
                    **bounded(deadline)
                )
            )
        except gexc.NotFound:
            return None
        self._refresh(blob, deadline)
        return data

    @_transient("write")
    def write_bytes(
        self, name: str, data: bytes, content_type: str, deadline: float | None = None
    ) -> None:
        self._stamp(self._bucket.blob(name)).upload_from_string(
            data, content_type=content_type, **bounded(deadline)
        )

    @_transient("read")
    def find_artifact(self, name: str, mode: str, deadline: float | None = None) -> Artifact | None:
        """An earlier clip, kept alive with its poster: a result will point at both."""
        blob = self._bucket.get_blob(name, **bounded(deadline))
        if blob is None:
            return None
        artifact = self._artifact(blob, mode, reused=True)
        if self._refresh(blob, deadline) and artifact.poster_uri:
            # Written with the clip and refreshed with it: the same time, no read needed.
            bucket, _, poster = artifact.poster_uri.removeprefix("gs://").partition("/")
            if bucket == self.bucket and poster:
                self._patch_custom_time(self._bucket.blob(poster), blob.custom_time, deadline)
        return artifact

    @_transient("upload")
    def upload_file(
        self,
        name: str,
        path: Path,
        content_type: str,
        metadata: dict[str, str],
        mode: str,
        deadline: float | None = None,
    ) -> Artifact:
        blob = self._stamp(self._bucket.blob(name, chunk_size=UPLOAD_CHUNK_BYTES))
        blob.metadata = metadata
        blob.upload_from_filename(str(path), content_type=content_type, **bounded(deadline))
        return self._artifact(blob, mode, reused=False)

    @_transient("read")
    def find_copy(
        self, name: str, source_id: str, deadline: float | None = None
    ) -> Artifact | None:
        blob = self._bucket.get_blob(name, **bounded(deadline))
        if blob is not None and (blob.metadata or {}).get(SOURCE_KEY) == source_id:
            self._refresh(blob, deadline)
            return self._artifact(blob, "copy", reused=True)
        return None

    @_transient("copy")
    def copy_from_gcs(
        self,
        source: SourceVideo,
        name: str,
        max_bytes: int,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Artifact | None:
        """Server-side copy; every call, and the rewrite loop, ends at `deadline`."""
        try:
            src = self._client.bucket(source.bucket).get_blob(
                source.blob, **bounded(deadline, clock)
            )
        except gexc.Forbidden:
            return None
        if src is None:
            return None
        if int(src.size or 0) > max_bytes:
            raise FetchRefused(f"{src.size} bytes is over the per-query fetch cap ({max_bytes})")
        pinned = source_id(source, src.generation)
        existing = self.find_copy(name, pinned, deadline)
        if existing is not None:
            return existing
        dest = self._stamp(self._bucket.blob(name))  # the rewrite sends it with the metadata
        dest.metadata = {SOURCE_KEY: pinned}
        pinned_src = self._client.bucket(source.bucket).blob(source.blob, generation=src.generation)
        token, _, _ = dest.rewrite(pinned_src, **bounded(deadline, clock))
        while token is not None:  # large objects take several rewrite calls
            if deadline is not None and clock() >= deadline:
                raise TimeoutError("the event's deadline passed during the rewrite")
            token, _, _ = dest.rewrite(pinned_src, token=token, **bounded(deadline, clock))
        dest.reload(**bounded(deadline, clock))
        if dest.custom_time is None:  # a server that drops it from the rewrite (fake-gcs-server)
            self._patch_custom_time(dest, self._now(), deadline)
        return self._artifact(dest, "copy", reused=False)

    @_transient("upload")
    def upload_stream(
        self,
        name: str,
        stream: IO[bytes],
        size: int | None,
        content_type: str,
        source_id: str,
        deadline: float | None = None,
    ) -> Artifact:
        blob = self._stamp(self._bucket.blob(name, chunk_size=UPLOAD_CHUNK_BYTES))
        blob.metadata = {SOURCE_KEY: source_id}
        body: IO[bytes] = stream
        if deadline is not None:
            body = _DeadlineStream(stream, deadline, time.monotonic)  # type: ignore[assignment]
        try:
            blob.upload_from_file(body, size=size, content_type=content_type, **bounded(deadline))
        except DROPPED_BODY as error:
            # The download dropped or stalled mid-body (urllib3 raises its own errors from
            # response.raw, neither OSError nor requests'): a passing failure, not a bug.
            raise TransientError(
                f"streaming {source_id} into gs://{self.bucket}: {type(error).__name__}"
            ) from None
        blob.reload(**bounded(deadline))
        return self._artifact(blob, "copy", reused=False)

    # -- whole copies of source videos (the API path's clip source) -----------------------

    @_transient("read")
    def stat_copy(self, name: str, deadline: float | None = None) -> StoredCopy | None:
        """The stored copy under `name`, kept alive (it is being used), or None."""
        blob = self._bucket.get_blob(name, **bounded(deadline))
        if blob is None or blob.generation is None:
            return None
        self._refresh(blob, deadline)
        return StoredCopy(
            name, int(blob.generation), int(blob.size or 0), dict(blob.metadata or {})
        )

    @_transient("claim")
    def claim(self, name: str, lease_s: float, deadline: float | None = None) -> bool:
        """Take the create-only claim `name` for `lease_s` seconds; False while another holds it.

        A claim whose lease has run out (its holder died) is deleted, compare-and-swap on its
        generation, and taken.
        """
        for _ in range(2):
            blob = self._stamp(self._bucket.blob(name))
            until = (self._now() + timedelta(seconds=lease_s)).isoformat()
            try:
                blob.upload_from_string(
                    until.encode(),
                    content_type="text/plain",
                    if_generation_match=0,
                    **bounded(deadline),
                )
                return True
            except gexc.PreconditionFailed:
                pass
            held = self._bucket.get_blob(name, **bounded(deadline))
            if held is None:
                continue
            try:
                text = held.download_as_bytes(**bounded(deadline)).decode()
                expired = datetime.fromisoformat(text) < self._now()
            except (gexc.NotFound, ValueError):
                expired = True
            if not expired:
                return False
            with contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed):
                held.delete(if_generation_match=held.generation, **bounded(deadline))
        return False

    def release(self, name: str, deadline: float | None = None) -> None:
        """Drop a claim we hold; a failure only delays the next holder to the lease's end."""
        with contextlib.suppress(gexc.NotFound, *TRANSIENT_GCS):
            self._bucket.blob(name).delete(**bounded(deadline))

    @_transient("upload")
    def write_copy(
        self,
        name: str,
        stream: IO[bytes],
        size: int | None,
        content_type: str,
        metadata: dict[str, str],
        if_generation_match: int,
        deadline: float | None = None,
    ) -> StoredCopy | None:
        """Stream a whole copy in, create-only (0) or replacing that generation; None when
        another writer's copy landed first."""
        blob = self._stamp(self._bucket.blob(name, chunk_size=UPLOAD_CHUNK_BYTES))
        blob.metadata = metadata
        try:
            blob.upload_from_file(
                stream,
                size=size,
                content_type=content_type,
                if_generation_match=if_generation_match,
                **bounded(deadline),
            )
        except gexc.PreconditionFailed:
            return None
        except DROPPED_BODY as error:
            raise TransientError(
                f"streaming into gs://{self.bucket}/{name}: {type(error).__name__}"
            ) from None
        blob.reload(**bounded(deadline))
        return StoredCopy(
            name, int(blob.generation), int(blob.size or 0), dict(blob.metadata or {})
        )

    @_transient("write")
    def patch_copy(
        self, copy: StoredCopy, metadata: dict[str, str], deadline: float | None = None
    ) -> StoredCopy | None:
        """Add metadata to that generation of a copy; None when it is no longer that one."""
        blob = self._bucket.blob(copy.name)
        blob.metadata = metadata
        try:
            blob.patch(if_generation_match=copy.generation, **bounded(deadline))
        except (gexc.PreconditionFailed, gexc.NotFound):
            return None
        return StoredCopy(copy.name, copy.generation, copy.size, {**copy.metadata, **metadata})

    def open_copy(self, copy: StoredCopy, deadline: float | None = None) -> RangeSource:
        """Ranged reads of exactly that generation of a copy."""
        return GcsRangeSource(
            self._client,
            self.bucket,
            copy.name,
            copy.generation,
            size=copy.size,
            deadline=deadline,
        )


class GcsSources:
    """Ranged reads of source videos straight from Cloud Storage, when our identity may read."""

    def __init__(self, client: storage.Client) -> None:
        self._client = client

    @_transient("read")
    def open_range(self, source: SourceVideo, deadline: float | None = None) -> RangeSource | None:
        try:
            blob = self._client.bucket(source.bucket).get_blob(source.blob, **bounded(deadline))
        except gexc.Forbidden:
            return None
        if blob is None or blob.generation is None or blob.size is None:
            return None
        return GcsRangeSource(
            self._client,
            source.bucket,
            source.blob,
            int(blob.generation),
            size=int(blob.size),
            deadline=deadline,
        )


class GcsRecordStore:
    """Idempotency records as small objects, claimed with generation preconditions."""

    def __init__(self, client: storage.Client, bucket: str, prefix: str) -> None:
        self._bucket = client.bucket(bucket)
        self._prefix = prefix

    def _name(self, key: str) -> str:
        return record_name(self._prefix, key)

    def _write(self, key: str, record: Record, if_generation_match: int) -> int | None:
        blob = self._bucket.blob(self._name(key))
        data = record.dumps()
        try:
            blob.upload_from_string(
                data,
                content_type="application/json",
                if_generation_match=if_generation_match,
                **BOUNDED,
            )
        except gexc.PreconditionFailed:
            return self._ours(key, data)
        return int(blob.generation)

    def _ours(self, key: str, data: bytes) -> int | None:
        """After a 412: the generation, when the record is exactly what we wrote.

        The client retries a write whose response was lost; the retry then fails its own
        precondition against the write that did land. Each record holds this attempt's lease
        time, so an identical one is ours, not another attempt's.
        """
        found = self._read_raw(key)
        if found is None or found[0] != data:
            return None
        return found[1]

    def _read_raw(self, key: str) -> tuple[bytes, int] | None:
        blob = self._bucket.get_blob(self._name(key), **BOUNDED)
        if blob is None:
            return None
        generation = int(blob.generation)
        try:
            data = self._bucket.blob(blob.name, generation=generation).download_as_bytes(**BOUNDED)
        except gexc.NotFound:
            return None
        return bytes(data), generation

    @_transient("record write")
    def create(self, key: str, record: Record) -> int | None:
        return self._write(key, record, 0)

    @_transient("record read")
    def read(self, key: str) -> tuple[Record, int] | None:
        found = self._read_raw(key)
        return None if found is None else (Record.loads(found[0]), found[1])

    @_transient("record write")
    def replace(self, key: str, record: Record, generation: int) -> int | None:
        return self._write(key, record, generation)
