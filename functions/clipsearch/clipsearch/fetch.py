"""Fetch modes: what a hit becomes in our results bucket.

Every mode takes the ranked hits and returns one ClipResult per hit, so a new mode (clip
cutting) slots in beside these without reshaping the pipeline.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from clipsearch import clipping
from clipsearch.clipping import ClipReason, ClipUnavailable, IndexCache, RangeSource, SourceIndex
from clipsearch.copies import KeyedSource
from clipsearch.core.clipmeta import encode_clip_metadata
from clipsearch.core.naming import clip_name, index_name, is_safe_blob_name, video_copy_name
from clipsearch.errors import (
    OPERATOR_ALERT_REASONS,
    FetchRefused,
    PermanentError,
    TransientError,
    where_raised,
)
from clipsearch.logs import ALERT
from clipsearch.model import (
    Artifact,
    ClipResult,
    Hit,
    Query,
    QueryObject,
    SourceVideo,
    VideoMetadata,
)
from clipsearch.ports import (
    Fetcher,
    MetadataLookup,
    RangeOpener,
    ResultStore,
    SearchApi,
    SourceOpener,
)
from clipsearch.settings import FetchSource
from clipsearch.spend import VendorSpend

if TYPE_CHECKING:
    from clipsearch.clipping import ClipInfo, ClipSource

ENGINE_ERROR = "engine_error"  # the clip engine failed in a way nobody planned for
DEADLINE_EXCEEDED = ClipReason.DEADLINE_EXCEEDED.value
OUT_OF_TIME = f"{DEADLINE_EXCEEDED}: the event's time ran out before this clip was fetched"


def _context(obj: QueryObject) -> dict[str, Any]:
    """The event's log context, for lines logged below the service."""
    return {
        "event_id": obj.event_id,
        "object": f"gs://{obj.bucket}/{obj.name}",
        "generation": obj.generation,
        "trace": obj.trace,
    }


class MetadataOnce:
    """The query's video metadata: one paced get_metadata call per event, whoever asks
    (locating hits without a location, checking a source copy), its answer or its failure
    kept; each call counted in `spend` (the outcome line's `vendor_metadata_calls`)."""

    def __init__(self, api: SearchApi, query: Query, spend: VendorSpend | None) -> None:
        self._api = api
        self._query = query
        self._spend = spend
        self._lock = threading.Lock()
        self._answer: VideoMetadata | None = None
        self._error: TransientError | PermanentError | None = None
        self._counted = False

    def _count(self) -> None:
        self._counted = True
        if self._spend is not None:
            self._spend.add(metadata=1)

    def start(self, deadline: float) -> None:
        """Ask now, in the background (its answer or failure kept for whoever asks later).

        The service starts it beside the search: the call needs only the query's video_no and
        unique_id, so its rate slot and round trip overlap the search's instead of following
        them. A caller asking before it is answered waits for this one call; none is made
        twice. Counted now, so the outcome line has it even when the search fails first."""
        with self._lock:
            if self._counted:
                return
            self._count()

        def ask() -> None:
            with contextlib.suppress(TransientError, PermanentError):  # kept in self._error
                self(deadline)

        threading.Thread(target=ask, name="clipsearch-metadata", daemon=True).start()

    def __call__(self, deadline: float) -> VideoMetadata:
        with self._lock:
            if self._answer is None and self._error is None:
                if not self._counted:
                    self._count()
                try:
                    self._answer = self._api.video_metadata(
                        self._query.video_no, self._query.unique_id, deadline
                    )
                except (TransientError, PermanentError) as error:
                    self._error = error
            if self._error is not None:
                raise self._error
            assert self._answer is not None
            return self._answer


def resolve_sources(
    query: Query,
    hits: list[Hit],
    api: SearchApi,
    allowed_buckets: frozenset[str],
    deadline: float,
    lookup: MetadataLookup | None = None,
) -> list[tuple[SourceVideo | None, str | None]]:
    """Each hit's source video, or why it has none we may fetch.

    Hits without a location are resolved once per query through the video metadata endpoint
    (`lookup`, when the caller shares one call between its uses).
    """
    fallback: SourceVideo | None = None
    fallback_error: str | None = None
    if any(hit.source is None for hit in hits):
        try:
            if lookup is None:
                answer = api.video_metadata(query.video_no, query.unique_id, deadline)
            else:
                answer = lookup(deadline)
            fallback = answer.source
        except PermanentError as error:
            fallback_error = f"location unresolved: {error.reason}"
        if fallback is None and fallback_error is None:
            fallback_error = "location unresolved: metadata has no bucket/blob"
    resolved: list[tuple[SourceVideo | None, str | None]] = []
    for hit in hits:
        source = hit.source or fallback
        if source is None:
            resolved.append((None, fallback_error))
        elif source.bucket not in allowed_buckets:
            resolved.append((source, f"source bucket {source.bucket!r} is not allowlisted"))
        elif not is_safe_blob_name(source.blob):
            resolved.append((source, "source blob name is unsafe"))
        else:
            resolved.append((source, None))
    return resolved


class ReferenceFetcher:
    """Mode `none`: report where each clip lies; move no bytes."""

    def __init__(self, api: SearchApi, allowed_buckets: frozenset[str]) -> None:
        self._api = api
        self._allowed = allowed_buckets

    def prefetch(
        self, query: Query, deadline: float, spend: VendorSpend | None = None
    ) -> MetadataLookup | None:
        return None  # a metadata call only for hits without a location, made when met

    def fetch(
        self,
        query: Query,
        hits: list[Hit],
        deadline: float,
        spend: VendorSpend | None = None,
        lookup: MetadataLookup | None = None,
    ) -> list[ClipResult]:
        resolved = resolve_sources(query, hits, self._api, self._allowed, deadline, lookup)
        return [
            ClipResult(rank, hit, source, None, error)
            for rank, (hit, (source, error)) in enumerate(zip(hits, resolved, strict=True), 1)
        ]


class CopyFetcher:
    """Mode `copy`: the whole source video, once per distinct source, under a stable name."""

    def __init__(
        self,
        api: SearchApi,
        results: ResultStore,
        *,
        allowed_buckets: frozenset[str],
        source_mode: FetchSource,
        prefix: str,
        logger: logging.Logger,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._results = results
        self._allowed = allowed_buckets
        self._source_mode = source_mode
        self._prefix = prefix
        self._log = logger
        self._max_bytes = max_bytes
        self._clock = clock

    def prefetch(
        self, query: Query, deadline: float, spend: VendorSpend | None = None
    ) -> MetadataLookup | None:
        return None  # a metadata call only for hits without a location, made when met

    def fetch(
        self,
        query: Query,
        hits: list[Hit],
        deadline: float,
        spend: VendorSpend | None = None,
        lookup: MetadataLookup | None = None,
    ) -> list[ClipResult]:
        resolved = resolve_sources(query, hits, self._api, self._allowed, deadline, lookup)
        fetched: dict[SourceVideo, Artifact | str] = {}
        clips = []
        for rank, (hit, (source, refusal)) in enumerate(zip(hits, resolved, strict=True), 1):
            outcome: Artifact | str | None = refusal
            if source is not None and refusal is None:
                if source not in fetched:
                    fetched[source] = self._copy_in_time(source, deadline, spend)
                outcome = fetched[source]
            if isinstance(outcome, Artifact):
                clips.append(ClipResult(rank, hit, source, outcome, None))
            else:
                clips.append(ClipResult(rank, hit, source, None, outcome))
        return clips

    def _copy_in_time(
        self, source: SourceVideo, deadline: float, spend: VendorSpend | None
    ) -> Artifact | str:
        """A copy, or why not; out of time, every remaining clip says so instead of waiting."""
        if self._clock() >= deadline:
            return OUT_OF_TIME
        try:
            return self._copy(source, deadline, spend)
        except TransientError:
            if self._clock() >= deadline:
                return OUT_OF_TIME
            raise

    def _copy(
        self, source: SourceVideo, deadline: float, spend: VendorSpend | None
    ) -> Artifact | str:
        name = video_copy_name(self._prefix, source.bucket, source.blob)
        if self._source_mode in (FetchSource.AUTO, FetchSource.GCS):
            try:
                artifact = self._results.copy_from_gcs(source, name, self._max_bytes, deadline)
            except FetchRefused as refusal:
                return str(refusal)
            if artifact is not None:
                return artifact
            if self._source_mode is FetchSource.GCS:
                return "source not readable in Cloud Storage"
            self._log.info("%s not readable in GCS; using the API download", source.uri)
        existing = self._results.find_copy(name, source.uri, deadline)
        if existing is not None:
            return existing
        try:
            with self._api.open_download(source, deadline) as download:
                if spend is not None:
                    spend.add(requests=1)
                if download.size is not None and download.size > self._max_bytes:
                    return f"{download.size} bytes is over the per-query fetch cap"
                artifact = self._results.upload_stream(
                    name,
                    cast(IO[bytes], CappedStream(download.stream, self._max_bytes)),
                    download.size,
                    download.content_type,
                    source.uri,
                    deadline=deadline,
                )
                if spend is not None:
                    spend.add(nbytes=artifact.size)
                return artifact
        except FetchRefused as refusal:  # no Content-Length told it: the cap held while streaming
            return str(refusal)
        except PermanentError as error:
            if error.reason in OPERATOR_ALERT_REASONS:
                self._log.log(
                    ALERT,
                    "download of %s refused: %s",
                    source.uri,
                    error.message,
                    extra={"event": "download", "reason": error.reason.value},
                )
            return f"download refused: {error.message}"


class CappedStream:
    """A download body that raises FetchRefused once more than `max_bytes` have been read:
    the per-query cap, held while streaming when no Content-Length told the size."""

    def __init__(self, inner: IO[bytes], max_bytes: int) -> None:
        self._inner = inner
        self._max = max_bytes
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._read += len(data)
        if self._read > self._max:
            raise FetchRefused(f"over {self._max} bytes while streaming: the per-query fetch cap")
        return data

    def tell(self) -> int:
        return self._read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass(frozen=True)
class _Fallback:
    """Why a hit was not cut: a stable reason, and words for the log."""

    reason: str
    message: str


class ClipFetcher:
    """Mode `clip`: only the matching seconds, cut by stream copy from ranged reads.

    Hits on one video share one open of its index; the index is cached in memory (shared by
    the instance's concurrent events) and as a sidecar in the results bucket (shared by every
    instance). A hit that cannot be cut falls back (copy or reference) with the reason kept:
    a planned refusal (ClipReason), the event's deadline passing (`deadline_exceeded`), or
    any unplanned failure of the engine on that source (`engine_error`): a source that breaks
    the engine costs its clips, never the query.
    """

    def __init__(
        self,
        api: SearchApi,
        results: ResultStore,
        gcs: RangeOpener,
        download: SourceOpener,
        fallback: Fetcher,
        *,
        allowed_buckets: frozenset[str],
        source_mode: FetchSource,
        prefix: str,
        exact: bool,
        max_clip_s: float,
        max_index_bytes: int,
        index_cache: IndexCache,
        logger: logging.Logger,
        workdir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._results = results
        self._gcs = gcs
        self._download = download
        self._fallback = fallback
        self._allowed = allowed_buckets
        self._source_mode = source_mode
        self._prefix = prefix
        self._exact = exact
        self._max_clip_s = max_clip_s
        self._max_index_bytes = max_index_bytes
        self._cache = index_cache
        self._log = logger
        self._workdir = workdir
        self._clock = clock

    def prefetch(
        self, query: Query, deadline: float, spend: VendorSpend | None = None
    ) -> MetadataLookup | None:
        """With sources only through the download endpoint (`api`), start the query's
        get_metadata call now, before the search; hand it to `fetch`. Otherwise None: in
        `auto` a source readable in Cloud Storage needs no call, so it is made only if asked."""
        if self._source_mode is not FetchSource.API:
            return None
        lookup = MetadataOnce(self._api, query, spend)
        lookup.start(deadline)
        return lookup

    def fetch(
        self,
        query: Query,
        hits: list[Hit],
        deadline: float,
        spend: VendorSpend | None = None,
        lookup: MetadataLookup | None = None,
    ) -> list[ClipResult]:
        """`lookup`: the query's metadata call begun by `prefetch`, else one made on demand."""
        if lookup is None:
            lookup = MetadataOnce(self._api, query, spend)
        resolved = resolve_sources(query, hits, self._api, self._allowed, deadline, lookup)
        context = _context(query.object)
        clips: dict[int, ClipResult] = {}
        by_source: dict[SourceVideo, list[int]] = {}
        for i, (hit, (source, refusal)) in enumerate(zip(hits, resolved, strict=True)):
            if source is None or refusal is not None:
                clips[i] = ClipResult(i + 1, hit, source, None, refusal)
            else:
                by_source.setdefault(source, []).append(i)
        fallbacks: dict[int, _Fallback] = {}
        for source, indexes in by_source.items():
            cut = self._cut_source(
                source, [hits[i] for i in indexes], deadline, context, spend, lookup
            )
            for i, outcome in zip(indexes, cut, strict=True):
                if isinstance(outcome, Artifact):
                    clips[i] = ClipResult(i + 1, hits[i], source, outcome, None)
                else:
                    fallbacks[i] = outcome
        if fallbacks:
            order = sorted(fallbacks)
            done = self._fallback.fetch(query, [hits[i] for i in order], deadline, spend)
            for i, result in zip(order, done, strict=True):
                clips[i] = replace(result, rank=i + 1, fallback_reason=fallbacks[i].reason)
                self._log.info(
                    "clip %d fell back (%s): %s",
                    i + 1,
                    fallbacks[i].reason,
                    fallbacks[i].message,
                    extra={
                        **context,
                        "event": "clip",
                        "fallback_reason": fallbacks[i].reason,
                        "requests": 0,
                        "bytes_read": 0,
                    },
                )
        return [clips[i] for i in range(len(hits))]

    def _cut_source(
        self,
        source: SourceVideo,
        hits: list[Hit],
        deadline: float,
        context: dict[str, Any],
        spend: VendorSpend | None,
        lookup: MetadataLookup,
    ) -> list[Artifact | _Fallback]:
        """Every hit on one source, cut or with why not; only transient failures raise."""
        try:
            return self._cut_all(source, hits, deadline, context, spend, lookup)
        except Exception as error:  # whatever a hostile source does to the engine
            try:
                fallback = self._fallback_for(error, source.uri, deadline, context)
            except ClipUnavailable as transient:  # time is left: a redelivery reads it again
                raise TransientError(f"reading {source.uri}: {transient.message}") from None
            return [fallback] * len(hits)

    def _fallback_for(
        self,
        error: Exception,
        cut: str,
        deadline: float,
        context: dict[str, Any],
    ) -> _Fallback:
        """Why `cut` (one clip, or a source's every clip) falls back: a planned refusal keeps
        its reason, a transient failure past the deadline is `deadline_exceeded`, anything
        else is `engine_error` (logged). A transient failure with time left is raised again."""
        if isinstance(error, ClipUnavailable) and not error.transient:
            return _Fallback(error.reason.value, error.message)
        if isinstance(error, ClipUnavailable | TransientError):
            if self._clock() < deadline:
                raise error
            return _Fallback(DEADLINE_EXCEEDED, error.message)
        self._log.warning(
            "the clip engine failed on %s: %s",
            cut,
            where_raised(error),
            exc_info=error,
            extra={**context, "fallback_reason": ENGINE_ERROR},
        )
        return _Fallback(ENGINE_ERROR, where_raised(error))

    def _open(self, source: SourceVideo, deadline: float, lookup: MetadataLookup) -> RangeSource:
        if self._source_mode in (FetchSource.AUTO, FetchSource.GCS):
            ranged = self._gcs.open_range(source, deadline)
            if ranged is not None:
                return ranged
            if self._source_mode is FetchSource.GCS:
                raise ClipUnavailable(ClipReason.SOURCE_UNREADABLE, "not readable in GCS")
        ranged = self._download.open_range(source, deadline, video=lookup)
        if ranged is None:
            raise ClipUnavailable(ClipReason.SOURCE_UNREADABLE, "no download route")
        return ranged

    def _warm_cache(self, key: str | None, deadline: float) -> str | None:
        """Load the sidecar index into the memory cache; returns the sidecar's name."""
        if key is None:
            return None
        name = index_name(self._prefix, key)
        if self._cache.get(key) is None:
            blob = self._results.read_bytes(name, deadline)
            if blob is not None:
                try:
                    self._cache.put(key, SourceIndex.loads(blob, max_bytes=self._max_index_bytes))
                except ValueError:
                    self._log.warning("ignoring unreadable index sidecar %s", name)
        return name

    def _cut_all(
        self,
        source: SourceVideo,
        hits: list[Hit],
        deadline: float,
        context: dict[str, Any],
        spend: VendorSpend | None,
        lookup: MetadataLookup,
    ) -> list[Artifact | _Fallback]:
        if self._clock() >= deadline:
            return [_Fallback(DEADLINE_EXCEEDED, OUT_OF_TIME)] * len(hits)
        ranged = self._open(source, deadline, lookup)
        key = ranged.cache_key
        version = key.rsplit("#", 1)[-1] if key and "#" in key else "download"
        sidecar = self._warm_cache(key, deadline)
        outcomes: list[Artifact | _Fallback] = []
        opened: ClipSource | None = None
        writer: threading.Thread | None = None
        try:
            for hit in hits:
                if self._clock() >= deadline:
                    outcomes.append(_Fallback(DEADLINE_EXCEEDED, OUT_OF_TIME))
                    continue
                name = clip_name(
                    self._prefix,
                    source.bucket,
                    source.blob,
                    version,
                    hit.start_time,
                    hit.end_time,
                    self._exact,
                )
                existing = self._results.find_artifact(name, "clip", deadline)
                if existing is not None:
                    self._log_clip(context, existing, None, 0.0)
                    outcomes.append(existing)
                    continue
                if opened is None:
                    opened = self._open_clip_source(ranged, deadline)
                    if not opened.index_cached and sidecar is not None:
                        writer = self._write_sidecar(sidecar, opened.index, deadline, context)
                outcomes.append(self._cut_hit(opened, name, hit, deadline, context))
        finally:
            if opened is not None:
                opened.__exit__(None, None, None)
            if writer is not None:
                writer.join(max(0.0, deadline - self._clock()))
            if spend is not None and isinstance(ranged, KeyedSource):
                spend.add(ranged.vendor_requests, ranged.vendor_bytes, ranged.restarts)
        return outcomes

    def _write_sidecar(
        self, name: str, index: SourceIndex, deadline: float, context: dict[str, Any]
    ) -> threading.Thread:
        """Store the index for other instances beside the cuts, not before them.

        It is a cache: a failed write costs the next instance a cold open, never this query
        (it is logged). The fetch stage waits for it until the event's deadline; past that the
        upload carries on in the background, each request bounded by the deadline.
        """

        def write() -> None:
            started = self._clock()
            try:
                blob = index.dumps()
                self._results.write_bytes(name, blob, "application/octet-stream", deadline)
            except Exception as error:  # a cache write: never the query's failure
                self._log.warning(
                    "index sidecar %s not written: %s", name, where_raised(error), extra=context
                )
                return
            self._log.debug(
                "index sidecar %s written: %d bytes in %.0f ms",
                name,
                len(blob),
                (self._clock() - started) * 1000,
                extra=context,
            )

        thread = threading.Thread(target=write, name="clipsearch-sidecar", daemon=True)
        thread.start()
        return thread

    def _open_clip_source(self, ranged: RangeSource, deadline: float) -> ClipSource:
        return clipping.ClipSource(
            ranged,
            index_cache=self._cache,
            max_index_bytes=self._max_index_bytes,
            deadline=deadline,
        ).__enter__()

    def _cut_hit(
        self,
        opened: ClipSource,
        name: str,
        hit: Hit,
        deadline: float,
        context: dict[str, Any],
    ) -> Artifact | _Fallback:
        """One hit: its clip, or why not. A transient failure with time left raises."""
        try:
            return self._cut_one(opened, name, hit, deadline, context)
        except Exception as error:  # an unplanned engine failure costs this clip only
            return self._fallback_for(error, name, deadline, context)

    def _cut_one(
        self, opened: ClipSource, name: str, hit: Hit, deadline: float, context: dict[str, Any]
    ) -> Artifact:
        started = self._clock()
        with tempfile.TemporaryDirectory(dir=self._workdir) as tmp:
            path = Path(tmp) / "clip.mp4"
            info = opened.cut(
                hit.start_time,
                hit.end_time,
                path,
                exact=self._exact,
                max_clip_s=self._max_clip_s,
                deadline=deadline,
            )
            poster_name = name.removesuffix(".mp4") + ".jpg"
            self._results.write_bytes(
                poster_name, clipping.poster_frame(path), "image/jpeg", deadline
            )
            poster_uri = f"gs://{self._results.bucket}/{poster_name}"
            metadata = encode_clip_metadata(
                info.start, info.end, info.keyframe_snapped, poster_uri, info.dropped_tracks
            )
            artifact = self._results.upload_file(
                name, path, "video/mp4", metadata, "clip", deadline
            )
        self._log_clip(context, artifact, info, (self._clock() - started) * 1000, info.timings_ms)
        return artifact

    def _log_clip(
        self,
        context: dict[str, Any],
        artifact: Artifact,
        info: ClipInfo | None,
        clip_ms: float,
        timings: dict[str, float] | None = None,
    ) -> None:
        self._log.info(
            "clip %s %s",
            artifact.uri,
            "reused" if info is None else "cut",
            extra={
                **context,
                "event": "clip",
                "requests": 0 if info is None else info.requests,
                "bytes_read": 0 if info is None else info.bytes_read,
                "clip_bytes": artifact.size,
                "clip_ms": round(clip_ms, 1),
                **({"timings_ms": timings} if timings else {}),
                **({"index_path": info.index_path} if info is not None else {}),
            },
        )
