"""The composition root: settings in, a wired service out. The only place clients are made."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping

from google.cloud import storage

from clipsearch import logs
from clipsearch.adapters.gcs import GcsImageReader, GcsRecordStore, GcsResultStore, GcsSources
from clipsearch.adapters.pubsub import LazyPublisher
from clipsearch.adapters.search_api import HttpSearchApi, new_session
from clipsearch.clipping import ENGINE_MODULES, IndexCache, tune_process
from clipsearch.copies import SourceCopies
from clipsearch.core.naming import record_prefix
from clipsearch.fetch import ClipFetcher, CopyFetcher, ReferenceFetcher
from clipsearch.idempotency import Idempotency, RecordStore
from clipsearch.ports import Fetcher, Publisher, RangeOpener, ResultStore, SearchApi, SourceOpener
from clipsearch.ratelimit import RateLimiter
from clipsearch.retry import RetryPolicy
from clipsearch.service import ClipSearchService
from clipsearch.settings import FetchMode, Settings
from clipsearch.warmup import WarmingFetcher, WarmingSearchApi, Warmup, importer


def project_of(topic: str) -> str:
    return topic.split("/")[1]


def build_service(
    settings: Settings,
    *,
    storage_client: storage.Client | None = None,
    publisher: Publisher | None = None,
    api: SearchApi | None = None,
    download: SourceOpener | None = None,
    records: RecordStore | None = None,
    logger: logging.Logger | None = None,
) -> ClipSearchService:
    logger = logger or logging.getLogger("clipsearch")
    project = project_of(settings.results_topic)
    if settings.fetch_mode is FetchMode.CLIP:
        tune_process()
    lazy: LazyPublisher | None = None
    if publisher is None:
        publisher = lazy = LazyPublisher()
    storage_client = storage_client or storage.Client(project=project)
    vendor: HttpSearchApi | None = None
    if api is None:
        api = vendor = _vendor_api(settings, logger)
    results = GcsResultStore(storage_client, settings.results_bucket)
    if vendor is not None and download is None:
        download = _source_copies(settings, vendor, results, logger)
    fetcher = build_fetcher(
        settings,
        api=api,
        results=results,
        gcs=GcsSources(storage_client),
        download=download,
        logger=logger,
    )
    searches, fetcher = with_warmup(settings, api, fetcher, lazy)
    return ClipSearchService(
        settings,
        images=GcsImageReader(storage_client),
        api=searches,
        fetcher=fetcher,
        results=results,
        publisher=publisher,
        idempotency=Idempotency(
            records
            or GcsRecordStore(
                storage_client, settings.results_bucket, record_prefix(settings.results_prefix)
            ),
            lease_s=settings.function_timeout_s,
        ),
        logger=logger,
    )


def with_warmup(
    settings: Settings, api: SearchApi, fetcher: Fetcher, publisher: LazyPublisher | None
) -> tuple[SearchApi, Fetcher]:
    """The search and fetch the service uses: what the first event needs only once its search
    has answered (the engine in clip mode, then the Pub/Sub client when we build it) is
    prepared while that search is in flight, and the first fetch waits for it."""
    steps: list[Callable[[], None]] = []
    if settings.fetch_mode is FetchMode.CLIP:
        steps.append(importer(ENGINE_MODULES))
    if publisher is not None:
        steps.append(publisher.prepare)
    if not steps:
        return api, fetcher
    warmup = Warmup(steps)
    return WarmingSearchApi(api, warmup), WarmingFetcher(fetcher, warmup)


def _vendor_api(settings: Settings, logger: logging.Logger) -> HttpSearchApi:
    return HttpSearchApi(
        new_session(),
        api_key=settings.api_key,
        base_url=settings.api_base_url,
        download_base_url=settings.download_base_url,
        timeouts=(settings.connect_timeout_s, settings.read_timeout_s),
        retry=RetryPolicy(settings.retry_attempts, settings.retry_budget_s),
        logger=logger,
        # One limiter per instance, shared by its concurrent events (this is a singleton).
        search_limiter=RateLimiter(settings.instance_search_rate, what="search", logger=logger),
        download_limiter=RateLimiter(
            settings.instance_download_rate, what="download", logger=logger
        ),
        metadata_limiter=RateLimiter(
            settings.instance_metadata_rate, what="get_metadata", logger=logger
        ),
    )


def _source_copies(
    settings: Settings, vendor: HttpSearchApi, results: GcsResultStore, logger: logging.Logger
) -> SourceCopies:
    """The API path's clip source: one whole download per source into our bucket, then
    ranged reads of our copy (clipsearch/copies.py)."""
    return SourceCopies(
        vendor,
        results,
        prefix=settings.results_prefix,
        max_bytes=settings.max_fetch_bytes,
        ranged_above_bytes=settings.ranged_above_bytes,
        recheck_s=settings.source_recheck_s,
        lease_s=settings.function_timeout_s,
        max_restarts=settings.retry_attempts,
        logger=logger,
    )


def build_fetcher(
    settings: Settings,
    *,
    api: SearchApi,
    results: ResultStore,
    gcs: RangeOpener,
    download: SourceOpener | None = None,
    logger: logging.Logger,
    mode: FetchMode | None = None,
) -> Fetcher:
    mode = mode or settings.fetch_mode
    if mode is FetchMode.NONE:
        return ReferenceFetcher(api, settings.source_buckets)
    if mode is FetchMode.COPY:
        return CopyFetcher(
            api,
            results,
            allowed_buckets=settings.source_buckets,
            source_mode=settings.fetch_source,
            prefix=settings.results_prefix,
            logger=logger,
            max_bytes=settings.max_fetch_bytes,
        )
    if download is None:
        raise TypeError("clip mode needs a download route (the API's ranged download)")
    return ClipFetcher(
        api,
        results,
        gcs,
        download,
        build_fetcher(
            settings,
            api=api,
            results=results,
            gcs=gcs,
            logger=logger,
            mode=settings.clip_fallback,
        ),
        allowed_buckets=settings.source_buckets,
        source_mode=settings.fetch_source,
        prefix=settings.results_prefix,
        exact=settings.clip_exact,
        max_clip_s=settings.max_clip_s,
        max_index_bytes=settings.max_index_bytes,
        index_cache=IndexCache(settings.index_cache_bytes),
        logger=logger,
    )


class ServiceHolder:
    """Holds the instance's one service, shared by its concurrent events.

    `load()` reads and checks the settings when the function's module is imported, so a bad
    variable stops the server at start-up (the platform then keeps the previous revision)
    instead of failing every event. The clients are built on first use: the server may fork
    its workers after the import, and gRPC channels must not cross a fork.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._service: ClipSearchService | None = None
        self._settings: Settings | None = None
        self._logger: logging.Logger | None = None

    def load(self) -> Settings:
        """Read and check the settings now; raises ConfigError naming the variable."""
        with self._lock:
            return self._load()

    def _load(self) -> Settings:
        if self._settings is None:
            settings = Settings.from_env(os.environ if self._env is None else self._env)
            self._logger = logs.configure(settings.log_level, secrets=[settings.api_key])
            self._settings = settings
        return self._settings

    def get(self) -> ClipSearchService:
        with self._lock:
            if self._service is None:
                settings = self._load()
                self._service = build_service(settings, logger=self._logger)
            return self._service

    def install(self, service: ClipSearchService) -> None:
        """Use an already wired service (tests wire one around in-memory fakes)."""
        with self._lock:
            self._service = service

    def reset(self) -> None:
        with self._lock:
            self._service = None
            self._settings = None
            self._logger = None
