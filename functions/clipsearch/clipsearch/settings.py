"""Settings, read once from the environment into a typed, frozen value."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from urllib.parse import urlsplit

from clipsearch.errors import ConfigError

DEFAULT_API_BASE_URL = "https://api.memories.ai/serve/api/v1"
API_MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Pace a little under the vendor's limit: calls spaced exactly 1/rate apart arrive bunched by
# network and scheduling jitter, and a bunched pair is a 0429 that wastes a whole slot.
RATE_HEADROOM = 0.97


class FetchMode(StrEnum):
    NONE = "none"
    COPY = "copy"
    CLIP = "clip"


class FetchSource(StrEnum):
    AUTO = "auto"  # server-side copy when the source is readable in GCS, else the API download
    GCS = "gcs"
    API = "api"


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    help: str


# The single table of settings: the README's configuration section and the Terraform env vars
# are checked against it.
SETTINGS: tuple[Setting, ...] = (
    Setting("CLIPSEARCH_API_KEY", None, "Search API key (raw `sk-mavi-...`); a secret env var."),
    Setting("CLIPSEARCH_API_BASE_URL", DEFAULT_API_BASE_URL, "Search API base URL."),
    Setting(
        "CLIPSEARCH_DOWNLOAD_BASE_URL", "", "Download endpoint base URL (empty: the API base)."
    ),
    Setting("CLIPSEARCH_RESULTS_BUCKET", None, "Bucket for fetched videos and result JSON."),
    Setting("CLIPSEARCH_RESULTS_PREFIX", "clipsearch/", "Object-name prefix for our outputs."),
    Setting("CLIPSEARCH_QUERY_BUCKET", None, "The trigger's bucket (checked against outputs)."),
    Setting(
        "CLIPSEARCH_INCLUDE_PREFIXES", "", "Comma list; only these query prefixes (empty: all)."
    ),
    Setting("CLIPSEARCH_EXCLUDE_PREFIXES", "", "Comma list of query prefixes to skip."),
    Setting("CLIPSEARCH_RESULTS_TOPIC", None, "Topic for outcomes: projects/P/topics/T."),
    Setting("CLIPSEARCH_ERRORS_TOPIC", "", "Topic for error outcomes (empty: results topic)."),
    Setting("CLIPSEARCH_FETCH_MODE", "clip", "clip (matching seconds), copy (whole video), none."),
    Setting("CLIPSEARCH_CLIP_FALLBACK", "copy", "When a clip cannot be cut: copy or none."),
    Setting("CLIPSEARCH_CLIP_EXACT", "false", "true: trim to the exact start with an edit list."),
    Setting("CLIPSEARCH_MAX_CLIP_S", "300", "Longest clip we cut, seconds; longer falls back."),
    Setting("CLIPSEARCH_MAX_INDEX_BYTES", str(64 * 1024 * 1024), "Largest MP4 index we read."),
    Setting("CLIPSEARCH_INDEX_CACHE_BYTES", str(256 * 1024 * 1024), "In-memory index cache cap."),
    Setting("CLIPSEARCH_FETCH_SOURCE", "auto", "auto, gcs or api: where fetched bytes come from."),
    Setting("CLIPSEARCH_SOURCE_BUCKETS", "mavi-resource", "Comma list of buckets we fetch from."),
    Setting("CLIPSEARCH_CONNECT_TIMEOUT_S", "5", "API connect timeout, seconds."),
    Setting("CLIPSEARCH_READ_TIMEOUT_S", "60", "API read timeout, seconds."),
    Setting("CLIPSEARCH_RETRY_ATTEMPTS", "4", "In-process attempts per API call (>= 1)."),
    Setting("CLIPSEARCH_RETRY_BUDGET_S", "60", "Total seconds one API call may spend retrying."),
    Setting("CLIPSEARCH_SEARCH_RATE_PER_S", "1", "The account's search rate limit, per second."),
    Setting("CLIPSEARCH_DOWNLOAD_RATE_PER_MIN", "12", "The account's download rate, per minute."),
    Setting(
        "CLIPSEARCH_METADATA_RATE_PER_S", "1", "The account's status look-up rate, per second."
    ),
    Setting("CLIPSEARCH_MAX_INSTANCES", "1", "Max function instances (the deploy's cap)."),
    Setting(
        "CLIPSEARCH_FUNCTION_TIMEOUT_S", "540", "The function's timeout: event deadline, lease."
    ),
    Setting(
        "CLIPSEARCH_MAX_EVENT_AGE_S",
        "3600",
        "Older queries are not searched (event_too_old) nor retried (retries_exhausted).",
    ),
    Setting(
        "CLIPSEARCH_MAX_ATTEMPTS",
        "3",
        "Unplanned failures or crashed attempts (per stage) before internal_error.",
    ),
    Setting("CLIPSEARCH_UNINDEXED_WINDOW_S", "1800", "How long to wait for a video's indexing."),
    Setting("CLIPSEARCH_MAX_FETCH_BYTES", str(10 * 1024**3), "Cap on bytes fetched per query."),
    Setting(
        "CLIPSEARCH_RANGED_ABOVE_BYTES",
        str(4 * 1024**3),
        "API path: a source larger than this is read by ranged vendor requests, not copied.",
    ),
    Setting(
        "CLIPSEARCH_SOURCE_RECHECK_S",
        "3600",
        "API path: a source's copy is rechecked with the vendor at most this often.",
    ),
    Setting("CLIPSEARCH_MAX_IMAGE_BYTES", str(API_MAX_IMAGE_BYTES), "Query image cap (<= 20 MB)."),
    Setting("CLIPSEARCH_MAX_METADATA_CHARS", "2000", "Cap on each metadata value's length."),
    Setting("CLIPSEARCH_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL."),
    Setting(
        "CLIPSEARCH_RESULT_RETENTION_DAYS",
        "30",
        "Days the results bucket keeps a result (Terraform's result_retention_days): the"
        " outcome's expires_at is produced_at plus this.",
    ),
)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class _Env:
    """Reads one variable at a time from the environment, each checked, or a ConfigError
    naming it; an empty value means the table's default."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._known = {s.env: s for s in SETTINGS}

    def text(self, name: str) -> str:
        value = self._env.get(name)
        if value is None or value == "":
            default = self._known[name].default
            if default is None:
                raise ConfigError(f"{name} is required")
            return default
        return value

    def number(self, name: str, kind: type[int] | type[float], low: float) -> float:
        raw = self.text(name)
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value):  # nan compares false with everything: refuse it here
            raise ConfigError(f"{name} must be a finite number, got {raw!r}")
        if value < low:
            raise ConfigError(f"{name} must be >= {low}, got {raw!r}")
        return value

    def integer(self, name: str, low: int) -> int:
        return int(self.number(name, int, low))

    def choice(self, name: str, kind: type[FetchMode] | type[FetchSource]) -> str:
        raw = self.text(name).lower()
        allowed = [m.value for m in kind]
        if raw not in allowed:
            raise ConfigError(f"{name} must be one of {allowed}, got {raw!r}")
        return raw

    def flag(self, name: str) -> bool:
        raw = self.text(name).lower()
        if raw not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{name} must be true or false, got {raw!r}")
        return raw in ("true", "1", "yes")

    def log_level(self, name: str) -> str:
        raw = self.text(name).upper()
        allowed = sorted(n for n in logging.getLevelNamesMapping() if n != "NOTSET")
        if raw not in allowed:
            raise ConfigError(f"{name} must be one of {allowed}, got {raw!r}")
        return raw


@dataclass(frozen=True)
class Settings:
    api_key: str
    api_base_url: str
    download_base_url: str
    results_bucket: str
    results_prefix: str
    query_bucket: str
    include_prefixes: tuple[str, ...]
    exclude_prefixes: tuple[str, ...]
    results_topic: str
    errors_topic: str
    fetch_mode: FetchMode
    clip_fallback: FetchMode
    clip_exact: bool
    max_clip_s: float
    max_index_bytes: int
    index_cache_bytes: int
    fetch_source: FetchSource
    source_buckets: frozenset[str]
    connect_timeout_s: float
    read_timeout_s: float
    retry_attempts: int
    retry_budget_s: float
    search_rate_per_s: float
    download_rate_per_min: float
    metadata_rate_per_s: float
    max_instances: int
    function_timeout_s: float
    max_event_age_s: float
    max_attempts: int
    unindexed_window_s: float
    max_fetch_bytes: int
    ranged_above_bytes: int
    source_recheck_s: float
    max_image_bytes: int
    max_metadata_chars: int
    log_level: str
    result_retention_days: int

    def __repr__(self) -> str:  # the key must never reach a log line through a repr
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'api_key' else getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"Settings({shown})"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Every variable checked, in this order; the first bad one raises ConfigError."""
        read = _Env(env)
        results_topic = read.text("CLIPSEARCH_RESULTS_TOPIC")
        max_image = read.integer("CLIPSEARCH_MAX_IMAGE_BYTES", 1)
        if max_image > API_MAX_IMAGE_BYTES:
            raise ConfigError("CLIPSEARCH_MAX_IMAGE_BYTES cannot exceed the API's 20 MB")
        settings = cls(
            api_key=read.text("CLIPSEARCH_API_KEY"),
            api_base_url=read.text("CLIPSEARCH_API_BASE_URL").rstrip("/"),
            download_base_url=(
                read.text("CLIPSEARCH_DOWNLOAD_BASE_URL") or read.text("CLIPSEARCH_API_BASE_URL")
            ).rstrip("/"),
            results_bucket=read.text("CLIPSEARCH_RESULTS_BUCKET"),
            results_prefix=read.text("CLIPSEARCH_RESULTS_PREFIX"),
            query_bucket=read.text("CLIPSEARCH_QUERY_BUCKET"),
            include_prefixes=_split(read.text("CLIPSEARCH_INCLUDE_PREFIXES")),
            exclude_prefixes=_split(read.text("CLIPSEARCH_EXCLUDE_PREFIXES")),
            results_topic=results_topic,
            errors_topic=read.text("CLIPSEARCH_ERRORS_TOPIC") or results_topic,
            fetch_mode=FetchMode(read.choice("CLIPSEARCH_FETCH_MODE", FetchMode)),
            clip_fallback=FetchMode(read.choice("CLIPSEARCH_CLIP_FALLBACK", FetchMode)),
            clip_exact=read.flag("CLIPSEARCH_CLIP_EXACT"),
            max_clip_s=read.number("CLIPSEARCH_MAX_CLIP_S", float, 0.1),
            max_index_bytes=read.integer("CLIPSEARCH_MAX_INDEX_BYTES", 1024),
            index_cache_bytes=read.integer("CLIPSEARCH_INDEX_CACHE_BYTES", 0),
            fetch_source=FetchSource(read.choice("CLIPSEARCH_FETCH_SOURCE", FetchSource)),
            source_buckets=frozenset(_split(read.text("CLIPSEARCH_SOURCE_BUCKETS"))),
            connect_timeout_s=read.number("CLIPSEARCH_CONNECT_TIMEOUT_S", float, 0.001),
            read_timeout_s=read.number("CLIPSEARCH_READ_TIMEOUT_S", float, 0.001),
            retry_attempts=read.integer("CLIPSEARCH_RETRY_ATTEMPTS", 1),
            retry_budget_s=read.number("CLIPSEARCH_RETRY_BUDGET_S", float, 0),
            search_rate_per_s=read.number("CLIPSEARCH_SEARCH_RATE_PER_S", float, 0.001),
            download_rate_per_min=read.number("CLIPSEARCH_DOWNLOAD_RATE_PER_MIN", float, 0.001),
            metadata_rate_per_s=read.number("CLIPSEARCH_METADATA_RATE_PER_S", float, 0.001),
            max_instances=read.integer("CLIPSEARCH_MAX_INSTANCES", 1),
            function_timeout_s=read.number("CLIPSEARCH_FUNCTION_TIMEOUT_S", float, 10),
            max_event_age_s=read.number("CLIPSEARCH_MAX_EVENT_AGE_S", float, 1),
            max_attempts=read.integer("CLIPSEARCH_MAX_ATTEMPTS", 1),
            unindexed_window_s=read.number("CLIPSEARCH_UNINDEXED_WINDOW_S", float, 0),
            max_fetch_bytes=read.integer("CLIPSEARCH_MAX_FETCH_BYTES", 1),
            ranged_above_bytes=read.integer("CLIPSEARCH_RANGED_ABOVE_BYTES", 0),
            source_recheck_s=read.number("CLIPSEARCH_SOURCE_RECHECK_S", float, 0),
            max_image_bytes=max_image,
            max_metadata_chars=read.integer("CLIPSEARCH_MAX_METADATA_CHARS", 1),
            log_level=read.log_level("CLIPSEARCH_LOG_LEVEL"),
            result_retention_days=read.integer("CLIPSEARCH_RESULT_RETENTION_DAYS", 1),
        )
        settings._check_consistent()
        return settings

    def _check_consistent(self) -> None:
        """The checks that span variables."""
        if self.clip_fallback is FetchMode.CLIP:
            raise ConfigError("CLIPSEARCH_CLIP_FALLBACK must be copy or none")
        self.check_no_feedback_loop()
        self.check_tls()
        for topic in (self.results_topic, self.errors_topic):
            if not topic.startswith("projects/") or "/topics/" not in topic:
                raise ConfigError(f"topics must be full paths projects/P/topics/T, got {topic!r}")

    def in_scope(self, bucket: str, object_name: str) -> bool:
        """Whether a query object is ours: inside the prefixes, and never one of our outputs."""
        if bucket == self.results_bucket and object_name.startswith(self.results_prefix):
            return False
        if any(object_name.startswith(p) for p in self.exclude_prefixes):
            return False
        return not self.include_prefixes or any(
            object_name.startswith(p) for p in self.include_prefixes
        )

    @property
    def instance_search_rate(self) -> float:
        """This instance's share of the account-wide search rate, with headroom for jitter."""
        return self.search_rate_per_s * RATE_HEADROOM / self.max_instances

    @property
    def instance_download_rate(self) -> float:
        return self.download_rate_per_min * RATE_HEADROOM / 60.0 / self.max_instances

    @property
    def instance_metadata_rate(self) -> float:
        return self.metadata_rate_per_s * RATE_HEADROOM / self.max_instances

    def check_tls(self) -> None:
        """TLS verification is always on; plain HTTP only to a local stand-in."""
        for name, url in (
            ("CLIPSEARCH_API_BASE_URL", self.api_base_url),
            ("CLIPSEARCH_DOWNLOAD_BASE_URL", self.download_base_url),
        ):
            parts = urlsplit(url)
            local = parts.hostname in ("127.0.0.1", "localhost", "::1")
            if parts.scheme != "https" and not (parts.scheme == "http" and local):
                raise ConfigError(f"{name} must be an https:// URL, got {url!r}")

    def check_no_feedback_loop(self) -> None:
        """Refuse settings under which our own outputs could retrigger the function."""
        if self.query_bucket != self.results_bucket:
            return
        if not self.include_prefixes:
            raise ConfigError(
                "the results bucket is the query bucket and every object triggers the function:"
                " use a separate CLIPSEARCH_RESULTS_BUCKET or set CLIPSEARCH_INCLUDE_PREFIXES"
            )
        prefix = self.results_prefix
        overlapping = [
            p for p in self.include_prefixes if p.startswith(prefix) or prefix.startswith(p)
        ]
        if overlapping:
            raise ConfigError(
                f"CLIPSEARCH_INCLUDE_PREFIXES {overlapping} overlap the outputs prefix {prefix!r}:"
                " results would retrigger the function"
            )
