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
from clipsearch.core.events import event_age_s, parse_finalized_event
from clipsearch.core.naming import result_name
from clipsearch.core.validation import check_image_bytes, validate_query
from clipsearch.errors import OPERATOR_ALERT_REASONS, PermanentError, Reason, TransientError
from clipsearch.idempotency import Attempt, Finished, Idempotency
from clipsearch.logs import ALERT, ContextLogger
from clipsearch.model import Hit, Query, QueryObject, Timings
from clipsearch.ports import Fetcher, ImageReader, Publisher, ResultStore, SearchApi
from clipsearch.settings import Settings


@dataclass(frozen=True)
class Outcome:
    status: str  # success | error | skipped | duplicate
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
        idempotency: Idempotency,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        wall_clock: Callable[[], str] = _utc_now,
    ) -> None:
        self.settings = settings
        self._images = images
        self._api = api
        self._fetcher = fetcher
        self._results = results
        self._publisher = publisher
        self._idempotency = idempotency
        self._log = logger
        self._clock = clock
        self._now = now
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
        # Leave a margin before the platform's timeout to record and publish what we have.
        timeout = self.settings.function_timeout_s
        deadline = started + timeout - min(15.0, timeout * 0.1)
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
        if not self.settings.in_scope(obj.bucket, obj.name):
            log.info("skipping gs://%s/%s: outside the configured prefixes", obj.bucket, obj.name)
            return Outcome("skipped", None, None)
        now = self._now()
        claim = self._idempotency.claim(obj.key, now)
        if isinstance(claim, Finished):
            log.info(
                "duplicate delivery: the outcome was published already",
                extra={"status": "duplicate"},
            )
            return Outcome("duplicate", claim.record.message_id, claim.record.message)
        attempt = Attempt(self._idempotency, claim)
        try:
            return self._run(obj, attempt, event_age_s(event_time, now), started, deadline, log)
        except BaseException:
            attempt.release()  # let the redelivery start at once
            raise

    def _run(
        self,
        obj: QueryObject,
        attempt: Attempt,
        age_s: float,
        started: float,
        deadline: float,
        log: ContextLogger,
    ) -> Outcome:
        stored = attempt.record
        if stored.message is not None and stored.topic is not None:
            log.info("publishing the outcome an earlier attempt stored")
            return self._publish(attempt, stored.message, stored.topic, log)
        query: Query | None = None
        stages = {"read": 0.0, "search": 0.0, "fetch": 0.0}
        mark = started
        try:
            if stored.hits is None and age_s > self.settings.max_event_age_s:
                raise PermanentError(
                    Reason.EVENT_TOO_OLD,
                    f"the upload is {age_s:.0f}s old, over CLIPSEARCH_MAX_EVENT_AGE_S"
                    f" ({self.settings.max_event_age_s:.0f}s)",
                )
            query = validate_query(
                obj,
                max_image_bytes=self.settings.max_image_bytes,
                max_metadata_chars=self.settings.max_metadata_chars,
            )
            if stored.hits is not None:
                hits = list(stored.hits)  # searched (and billed) already: never again
            else:
                image = self._images.read_image(
                    obj.bucket, obj.name, obj.generation, self.settings.max_image_bytes
                )
                check_image_bytes(query, image, self.settings.max_image_bytes)
                mark = self._lap(stages, "read", mark)
                hits = self._search(query, image, age_s, deadline)
                attempt.store_hits(hits)
                mark = self._lap(stages, "search", mark)
            clips = self._fetcher.fetch(query, hits, deadline)
            self._lap(stages, "fetch", mark)
        except PermanentError as error:
            _, uri = self._result_uri(obj)
            message = messages.error_message(
                obj,
                query,
                error.reason,
                error.message,
                self._timings(started, stages),
                uri,
                self._wall_clock(),
            )
            topic = self.settings.errors_topic
        else:
            _, uri = self._result_uri(obj)
            message = messages.success_message(
                query, clips, self._timings(started, stages), uri, self._wall_clock()
            )
            topic = self.settings.results_topic
        attempt.store_outcome(message, topic)
        return self._publish(attempt, message, topic, log)

    def _search(self, query: Query, image: bytes, age_s: float, deadline: float) -> list[Hit]:
        """Search; when the API calls the request invalid, ask the video's status why."""
        try:
            return self._api.search(query, image, deadline)
        except PermanentError as error:
            if error.reason is not Reason.API_INVALID_REQUEST:
                raise
            refusal = error
        try:
            meta = self._api.video_metadata(query.video_no, query.unique_id, deadline)
        except PermanentError:
            raise PermanentError(
                Reason.VIDEO_NOT_FOUND,
                f"video_no {query.video_no!r} is unknown in unique_id {query.unique_id!r}"
                f" ({refusal.message})",
            ) from None
        if meta.status == "UNPARSE":
            if age_s < self.settings.unindexed_window_s:
                raise TransientError(
                    f"video {query.video_no} is still being indexed", retry_after_s=60
                )
            raise PermanentError(
                Reason.VIDEO_NOT_INDEXED,
                f"video {query.video_no} was still not indexed after {age_s:.0f}s",
            )
        if meta.status == "PARSE_ERROR":
            raise PermanentError(
                Reason.VIDEO_PARSE_ERROR, f"video {query.video_no} failed indexing at the API"
            )
        raise refusal

    def _lap(self, stages: dict[str, float], stage: str, mark: float) -> float:
        now = self._clock()
        stages[stage] = (now - mark) * 1000
        return now

    def _timings(self, started: float, stages: dict[str, float]) -> Timings:
        total = (self._clock() - started) * 1000
        return Timings(stages["read"], stages["search"], stages["fetch"], total)

    def _result_uri(self, obj: QueryObject) -> tuple[str, str]:
        name = result_name(self.settings.results_prefix, obj.bucket, obj.name, obj.generation)
        return name, f"gs://{self._results.bucket}/{name}"

    def _publish(
        self, attempt: Attempt, message: dict[str, Any], topic: str, log: ContextLogger
    ) -> Outcome:
        """Result JSON first, so the URI in the message exists when a subscriber reads it.

        The stored JSON is plain; the published body is the same message in Avro's JSON
        encoding, which the results topic's schema requires (nullable values wrapped). The
        API's own words end up in messages; should they ever echo the key, it is masked.
        """
        name = result_name(
            self.settings.results_prefix,
            message["query"]["bucket"],
            message["query"]["object"],
            int(message["query"]["generation"]),
        )
        secret = self.settings.api_key.encode()
        stored = messages.encode(message).replace(secret, b"***")
        wire = messages.encode(to_avro_json(message)).replace(secret, b"***")
        attributes = {
            k: v.replace(self.settings.api_key, "***")
            for k, v in messages.attributes(message).items()
        }
        self._results.write_json(name, stored)
        message_id = self._publisher.publish(topic, wire, attributes)
        attempt.mark_published(message_id)
        status = message["status"]
        if status == "success":
            log.info(
                "query answered with %d clips",
                len(message["clips"]),
                extra={"status": "success", "video_no": message["query"]["video_no"]},
            )
        else:
            reason = Reason(message["error"]["reason"])
            level = ALERT if reason in OPERATOR_ALERT_REASONS else logging.WARNING
            log.log(
                level,
                "query failed: %s",
                message["error"]["message"].replace(self.settings.api_key, "***"),
                extra={"status": "error", "reason": reason.value},
            )
        return Outcome(status, message_id, message)
