"""The pipeline: one storage event in, exactly one outcome message out (or a retryable raise)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clipsearch.contract import to_avro_json
from clipsearch.core import messages
from clipsearch.core.events import parse_finalized_event
from clipsearch.core.naming import result_name
from clipsearch.core.validation import check_image_bytes, validate_query
from clipsearch.errors import OPERATOR_ALERT_REASONS, PermanentError
from clipsearch.logs import ALERT, ContextLogger
from clipsearch.model import ClipResult, Query, QueryObject, Timings
from clipsearch.ports import Fetcher, ImageReader, Publisher, ResultStore, SearchApi
from clipsearch.settings import Settings


@dataclass(frozen=True)
class Outcome:
    status: str  # success | error | skipped
    message_id: str | None
    message: dict[str, Any] | None


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ClipSearchService:
    def __init__(
        self,
        settings: Settings,
        *,
        images: ImageReader,
        api: SearchApi,
        fetcher: Fetcher,
        results: ResultStore,
        publisher: Publisher,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], str] = _utc_now,
    ) -> None:
        self.settings = settings
        self._settings = settings
        self._images = images
        self._api = api
        self._fetcher = fetcher
        self._results = results
        self._publisher = publisher
        self._log = logger
        self._clock = clock
        self._wall_clock = wall_clock

    def handle_event(
        self,
        event_id: str,
        event_type: str,
        data: Mapping[str, Any] | Any,
        *,
        event_time: str = "",
        trace: str | None = None,
    ) -> Outcome:
        started = self._clock()
        try:
            obj = parse_finalized_event(
                event_id, event_type, data, event_time=event_time, trace=trace
            )
        except PermanentError as error:
            # No bucket/object: nothing a subscriber could correlate, so log and acknowledge.
            self._log.error("dropping unusable event: %s", error, extra={"event_id": event_id})
            return Outcome("skipped", None, None)
        log = ContextLogger(
            self._log,
            {
                "event_id": event_id,
                "object": f"gs://{obj.bucket}/{obj.name}",
                "generation": obj.generation,
                "trace": trace,
            },
        )
        if not self._settings.in_scope(obj.bucket, obj.name):
            log.info("skipping gs://%s/%s: outside the configured prefixes", obj.bucket, obj.name)
            return Outcome("skipped", None, None)

        query: Query | None = None
        stages = {"read": 0.0, "search": 0.0, "fetch": 0.0}
        mark = started
        try:
            query = validate_query(
                obj,
                max_image_bytes=self._settings.max_image_bytes,
                max_metadata_chars=self._settings.max_metadata_chars,
            )
            image = self._images.read_image(
                obj.bucket, obj.name, obj.generation, self._settings.max_image_bytes
            )
            check_image_bytes(query, image, self._settings.max_image_bytes)
            mark = self._lap(stages, "read", mark)
            hits = self._api.search(query, image)
            mark = self._lap(stages, "search", mark)
            clips = self._fetcher.fetch(query, hits)
            self._lap(stages, "fetch", mark)
        except PermanentError as error:
            return self._finish_error(obj, query, error, started, stages, log)
        return self._finish_success(query, clips, started, stages, log)

    def _lap(self, stages: dict[str, float], stage: str, mark: float) -> float:
        now = self._clock()
        stages[stage] = (now - mark) * 1000
        return now

    def _timings(self, started: float, stages: dict[str, float]) -> Timings:
        total = (self._clock() - started) * 1000
        return Timings(stages["read"], stages["search"], stages["fetch"], total)

    def _result_uri(self, obj: QueryObject) -> tuple[str, str]:
        name = result_name(self._settings.results_prefix, obj.bucket, obj.name, obj.generation)
        return name, f"gs://{self._results.bucket}/{name}"

    def _finish_success(
        self,
        query: Query,
        clips: list[ClipResult],
        started: float,
        stages: dict[str, float],
        log: ContextLogger,
    ) -> Outcome:
        name, uri = self._result_uri(query.object)
        message = messages.success_message(
            query, clips, self._timings(started, stages), uri, self._wall_clock()
        )
        message_id = self._emit(name, message, self._settings.results_topic)
        log.info(
            "query answered with %d clips",
            len(clips),
            extra={"status": "success", "video_no": query.video_no},
        )
        return Outcome("success", message_id, message)

    def _finish_error(
        self,
        obj: QueryObject,
        query: Query | None,
        error: PermanentError,
        started: float,
        stages: dict[str, float],
        log: ContextLogger,
    ) -> Outcome:
        name, uri = self._result_uri(obj)
        message = messages.error_message(
            obj,
            query,
            error.reason,
            error.message,
            self._timings(started, stages),
            uri,
            self._wall_clock(),
        )
        message_id = self._emit(name, message, self._settings.errors_topic)
        level = ALERT if error.reason in OPERATOR_ALERT_REASONS else logging.WARNING
        log.log(
            level,
            "query failed: %s",
            error.message,
            extra={"status": "error", "reason": error.reason.value},
        )
        return Outcome("error", message_id, message)

    def _emit(self, name: str, message: dict[str, Any], topic: str) -> str:
        """Result JSON first, so the URI in the message exists when a subscriber reads it.

        The stored JSON is plain; the published body is the same message in Avro's JSON
        encoding, which the results topic's schema requires (nullable values wrapped).

        The API's own words end up in messages; should they ever echo the key, it is masked.
        """
        secret = self._settings.api_key.encode()
        stored = messages.encode(message).replace(secret, b"***")
        wire = messages.encode(to_avro_json(message)).replace(secret, b"***")
        attributes = {
            k: v.replace(self._settings.api_key, "***")
            for k, v in messages.attributes(message).items()
        }
        self._results.write_json(name, stored)
        return self._publisher.publish(topic, wire, attributes)
