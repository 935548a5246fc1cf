"""Fetch modes: what a hit becomes in our results bucket.

Every mode takes the ranked hits and returns one ClipResult per hit, so a new mode (clip
cutting) slots in beside these without reshaping the pipeline.
"""

from __future__ import annotations

import logging

from clipsearch.core.naming import is_safe_blob_name, video_copy_name
from clipsearch.errors import PermanentError
from clipsearch.model import Artifact, ClipResult, Hit, Query, SourceVideo
from clipsearch.ports import ResultStore, SearchApi
from clipsearch.settings import FetchSource


def resolve_sources(
    query: Query, hits: list[Hit], api: SearchApi, allowed_buckets: frozenset[str]
) -> list[tuple[SourceVideo | None, str | None]]:
    """Each hit's source video, or why it has none we may fetch.

    Hits without a location are resolved once per query through the video metadata endpoint.
    """
    fallback: SourceVideo | None = None
    fallback_error: str | None = None
    if any(hit.source is None for hit in hits):
        try:
            fallback = api.video_metadata(query.video_no, query.unique_id).source
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

    def fetch(self, query: Query, hits: list[Hit]) -> list[ClipResult]:
        resolved = resolve_sources(query, hits, self._api, self._allowed)
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
    ) -> None:
        self._api = api
        self._results = results
        self._allowed = allowed_buckets
        self._source_mode = source_mode
        self._prefix = prefix
        self._log = logger

    def fetch(self, query: Query, hits: list[Hit]) -> list[ClipResult]:
        resolved = resolve_sources(query, hits, self._api, self._allowed)
        fetched: dict[SourceVideo, Artifact | str] = {}
        clips = []
        for rank, (hit, (source, refusal)) in enumerate(zip(hits, resolved, strict=True), 1):
            outcome: Artifact | str | None = refusal
            if source is not None and refusal is None:
                if source not in fetched:
                    fetched[source] = self._copy(source)
                outcome = fetched[source]
            if isinstance(outcome, Artifact):
                clips.append(ClipResult(rank, hit, source, outcome, None))
            else:
                clips.append(ClipResult(rank, hit, source, None, outcome))
        return clips

    def _copy(self, source: SourceVideo) -> Artifact | str:
        name = video_copy_name(self._prefix, source.bucket, source.blob)
        if self._source_mode in (FetchSource.AUTO, FetchSource.GCS):
            artifact = self._results.copy_from_gcs(source, name)
            if artifact is not None:
                return artifact
            if self._source_mode is FetchSource.GCS:
                return "source not readable in Cloud Storage"
            self._log.info("%s not readable in GCS; using the API download", source.uri)
        existing = self._results.find_copy(name, source.uri)
        if existing is not None:
            return existing
        try:
            with self._api.open_download(source) as download:
                return self._results.upload_stream(
                    name, download.stream, download.size, download.content_type, source.uri
                )
        except PermanentError as error:
            return f"download refused: {error.message}"
