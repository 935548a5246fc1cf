"""The pipeline: one storage event in, exactly one outcome message out (or a retryable raise)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clipsearch.contract import to_avro_json
from clipsearch.core import messages
from clipsearch.core.attempt_policy import (
    Decision,
    Deliver,
    End,
    GiveUp,
    Happened,
    LeaveUnpublished,
    Limits,
    Retry,
    Situation,
    decide,
)
from clipsearch.core.events import event_age_s, parse_finalized_event
from clipsearch.core.naming import result_name
from clipsearch.core.validation import check_image_bytes, validate_query
from clipsearch.errors import (
    OPERATOR_ALERT_REASONS,
    PermanentError,
    Reason,
    TransientError,
    where_raised,
)
from clipsearch.idempotency import Attempt, Finished, Idempotency
from clipsearch.logs import ALERT, ContextLogger
from clipsearch.model import Hit, Query, QueryObject, Timings
from clipsearch.ports import Fetcher, ImageReader, Publisher, ResultStore, SearchApi
from clipsearch.settings import Settings
from clipsearch.spend import VendorSpend

GIVEN_UP = ""  # the record's message id when delivery was given up on (none confirmed)


@dataclass(frozen=True)
class Outcome:
    status: str  # success | error | skipped | duplicate
    message_id: str | None
    message: dict[str, Any] | None


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class _Attempting:
    """One attempt at one query: what each of its steps reads."""

    obj: QueryObject
    attempt: Attempt
    age_s: float  # since the upload, or since the first claim
    started: float  # on the monotonic clock
    deadline: float  # on the monotonic clock
    log: ContextLogger
    stages: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "search": 0.0, "fetch": 0.0}
    )  # milliseconds each stage took, as laps fill them in
    spend: VendorSpend = field(default_factory=VendorSpend)


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
        obj = self._usable_event(event_id, event_type, data, event_time, trace)
        if obj is None:
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
        if not self._is_ours(obj, log):
            return Outcome("skipped", None, None)
        now = self._now()
        try:
            claim = self._idempotency.claim(obj.key, now)
        except TransientError as error:
            log.warning("retrying later: %s", error.message, extra={"event": "retry"})
            raise
        if isinstance(claim, Finished):
            log.info(
                "duplicate delivery: the query has ended already",
                extra={"status": "duplicate", "event": "duplicate"},
            )
            return Outcome("duplicate", claim.record.message_id, claim.record.message)
        attempt = Attempt(self._idempotency, claim)
        # The query's age: since the upload, or since our first claim when the event has no
        # usable time (so the bound holds for every event).
        age_s = event_age_s(event_time, now)
        if claim.record.created_at is not None:
            age_s = max(age_s, now - claim.record.created_at)
        try:
            return self._run(_Attempting(obj, attempt, age_s, started, deadline, log))
        except BaseException as error:
            # Let the redelivery start at once (a no-op if released already). What escaped
            # `_run` unhandled, other than a transient failure, counts as a failed attempt.
            failed = not isinstance(error, TransientError)
            attempt.release(
                self._mask(f"unexpected {where_raised(error)}") if failed else None, failed=failed
            )
            raise

    def _usable_event(
        self,
        event_id: str,
        event_type: str,
        data: Mapping[str, Any] | Any,
        event_time: str,
        trace: str | None,
    ) -> QueryObject | None:
        """The event's query object; None (logged) when nothing could ever match it."""
        try:
            obj = parse_finalized_event(
                event_id, event_type, data, event_time=event_time, trace=trace
            )
        except PermanentError as error:
            # No bucket/object: nothing a subscriber could correlate, so log and acknowledge.
            self._log.error("dropping unusable event: %s", error, extra={"event_id": event_id})
            return None
        texts = [obj.bucket, obj.name, obj.content_type, *obj.metadata, *obj.metadata.values()]
        if not all(_is_utf8(text) for text in texts):
            # Cloud Storage's names and metadata are UTF-8: a lone surrogate only comes from a
            # forged event, which no object (nor record, nor subscriber) could ever match.
            self._log.error(
                "dropping unusable event: %s", Reason.BAD_EVENT, extra={"event_id": event_id}
            )
            return None
        return obj

    def _is_ours(self, obj: QueryObject, log: ContextLogger) -> bool:
        if obj.bucket != self.settings.query_bucket:
            log.info(
                "skipping gs://%s/%s: not the query bucket %s",
                obj.bucket,
                obj.name,
                self.settings.query_bucket,
            )
            return False
        if not self.settings.in_scope(obj.bucket, obj.name):
            log.info("skipping gs://%s/%s: outside the configured prefixes", obj.bucket, obj.name)
            return False
        return True

    def _run(self, run: _Attempting) -> Outcome:
        """Answer, record, deliver; on a failure, `attempt_policy.decide` says whether the
        event is redelivered or the query ends."""
        attempt = run.attempt
        try:
            started = self._situation(Happened.STARTED, attempt, run.age_s, now=self._now())
            return self._act(decide(started), run)
        except TransientError as error:
            decision = decide(
                self._situation(Happened.TRANSIENT, attempt, run.age_s, error.message)
            )
            if isinstance(decision, Retry):
                self._retry_later(attempt, error.message, run.log)
                raise
        except Exception as error:
            where = where_raised(error)
            situation = self._situation(Happened.UNEXPECTED, attempt, run.age_s, where)
            decision = decide(situation)
            self._log_unexpected(run.log, attempt, where, decision, situation.failures)
            if isinstance(decision, Retry):
                attempt.release(self._mask(f"unexpected {where}"), failed=True)
                raise
        return self._act(decision, run)

    def _situation(
        self, happened: Happened, attempt: Attempt, age_s: float, error: str = "", now: float = 0.0
    ) -> Situation:
        limits = Limits(self.settings.max_attempts, self.settings.max_event_age_s)
        return Situation(happened, attempt.record, age_s, limits, now=now, error=error)

    def _act(self, decision: Decision, run: _Attempting) -> Outcome:
        """Carry out what the policy decided (a Retry is the caller's: it raises)."""
        attempt, log = run.attempt, run.log
        if isinstance(decision, GiveUp):
            return self._give_up(
                attempt, decision.message, decision.failures, decision.last_error, log
            )
        if isinstance(decision, Deliver):
            log.info("publishing the outcome an earlier attempt stored")
            message, topic = decision.message, decision.topic
        else:
            if isinstance(decision, End):
                message = self._error_message(
                    run.obj, decision.reason, decision.text, run.started, run.stages
                )
                topic = self.settings.errors_topic
            else:
                message, topic = self._answer(run)
            message = self._masked(message)
            attempt.store_outcome(message, topic)
        return self._deliver(attempt, message, topic, run.age_s, log, run.spend)

    def _log_unexpected(
        self,
        log: ContextLogger,
        attempt: Attempt,
        where: str,
        decision: Decision,
        failures: int,
    ) -> None:
        """Called from the handler of the unexpected exception, whose traceback it logs."""
        if isinstance(decision, Retry):
            log.error(
                "attempt %d failed unexpectedly (%s); retrying",
                attempt.record.attempts,
                where,
                exc_info=True,
                extra={"event": "retry", "attempt": attempt.record.attempts},
            )
        elif isinstance(decision, GiveUp):
            log.error("unexpected failure: %s", where, exc_info=True)
        else:
            log.error("unexpected failure: %s", where, exc_info=True, extra={"attempt": failures})

    def _give_up(
        self,
        attempt: Attempt,
        message: dict[str, Any],
        failures: int,
        last: str | None,
        log: ContextLogger,
    ) -> Outcome:
        """A stored outcome whose delivery failed unexpectedly (or was stopped) on
        CLIPSEARCH_MAX_ATTEMPTS attempts: acknowledge, with the result JSON saying it.

        It may have been published already (e.g. the publish landed, then recording it
        failed), so it is never replaced by another outcome.
        """
        name, uri = self._result_uri_of(message)
        try:
            self._results.write_json(name, self._mask_bytes(messages.encode(message)))
            holds = f"{uri} holds the outcome"
        except Exception as error:  # best effort: the attempt ends either way
            holds = f"its result JSON could not be written either ({where_raised(error)})"
        try:
            # Ended: a later delivery is a duplicate (an empty message id: none confirmed).
            attempt.mark_published(GIVEN_UP)
        except Exception:  # then a later delivery gives up again, at once
            attempt.release(self._mask(last or ""), failed=True)
        self._log_outcome(
            log,
            message,
            attempt,
            f"delivery failed unexpectedly or was stopped on {failures} attempts (the last:"
            f" {self._mask(last or 'unknown')}); not retried (it may have been published): {holds}",
            level=logging.ERROR,
        )
        return Outcome(message["status"], None, message)

    def _mask_bytes(self, data: bytes) -> bytes:
        return data.replace(self.settings.api_key.encode(), b"***")

    def _mask(self, text: str) -> str:
        """The API key never reaches the record, the result JSON or a message."""
        return text.replace(self.settings.api_key, "***")

    def _masked(self, message: dict[str, Any]) -> dict[str, Any]:
        wire = json.dumps(message)
        secret = json.dumps(self.settings.api_key)[1:-1]
        if secret not in wire:
            return message
        masked: dict[str, Any] = json.loads(wire.replace(secret, "***"))
        return masked

    def _answer(self, run: _Attempting) -> tuple[dict[str, Any], str]:
        """The outcome message and its topic; a PermanentError becomes an error outcome."""
        obj, attempt, deadline, stages = run.obj, run.attempt, run.deadline, run.stages
        stored = attempt.record
        query: Query | None = None
        mark = run.started
        try:
            query = self._validate(obj)
            lookup = None
            if stored.hits is not None:
                hits = list(stored.hits)  # searched (and billed) already: never again
            else:
                image = self._images.read_image(
                    obj.bucket, obj.name, obj.generation, self.settings.max_image_bytes
                )
                check_image_bytes(query, image, self.settings.max_image_bytes)
                mark = self._lap(stages, "read", mark)
                # The fetch's metadata call needs only the query: it runs beside the search.
                lookup = self._fetcher.prefetch(query, deadline, run.spend)
                hits = self._search(query, image, run.age_s, deadline, attempt)
                attempt.store_hits(hits)
                mark = self._lap(stages, "search", mark)
            clips = self._fetcher.fetch(query, hits, deadline, run.spend, lookup)
            self._lap(stages, "fetch", mark)
        except PermanentError as error:
            _, uri = self._result_uri(obj)
            message = messages.error_message(
                obj,
                query,
                error.reason,
                error.message,
                self._timings(run.started, stages),
                uri,
                self._wall_clock(),
                retention_days=self.settings.result_retention_days,
            )
            return message, self.settings.errors_topic
        _, uri = self._result_uri(obj)
        message = messages.success_message(
            query,
            clips,
            self._timings(run.started, stages),
            uri,
            self._wall_clock(),
            retention_days=self.settings.result_retention_days,
        )
        return message, self.settings.results_topic

    def _validate(self, obj: QueryObject) -> Query:
        return validate_query(
            obj,
            max_image_bytes=self.settings.max_image_bytes,
            max_metadata_chars=self.settings.max_metadata_chars,
        )

    def _error_message(
        self,
        obj: QueryObject,
        reason: Reason,
        text: str,
        started: float,
        stages: dict[str, float],
    ) -> dict[str, Any]:
        query: Query | None = None
        with contextlib.suppress(Exception):  # the query's words, when they are valid
            query = self._validate(obj)
        _, uri = self._result_uri(obj)
        return messages.error_message(
            obj,
            query,
            reason,
            text,
            self._timings(started, stages),
            uri,
            self._wall_clock(),
            retention_days=self.settings.result_retention_days,
        )

    def _retry_later(self, attempt: Attempt, why: str, log: ContextLogger) -> None:
        log.warning(
            "retrying later: %s",
            why,
            extra={"event": "retry", "attempt": attempt.record.attempts},
        )
        attempt.release(self._mask(why))

    def _search(
        self, query: Query, image: bytes, age_s: float, deadline: float, attempt: Attempt
    ) -> list[Hit]:
        """Search; when the API calls the request invalid, ask the video's status why.

        Right before the request leaves, the record says a search is in flight: should this
        instance die before the answer is stored, the takeover ends the query as
        `search_unconfirmed` instead of paying again. When the search provably did not run
        (a transient failure) or was answered with a refusal (0001/0003), the mark goes. A
        0409 ("Duplicate requests are not allowed": an earlier send may have run) keeps it:
        see the adapter.
        """
        try:
            return self._api.search(
                query, image, deadline, lambda: self._announce_search(query, attempt)
            )
        except TransientError:
            attempt.clear_search_sent()  # the vendor cannot have run it
            raise
        except PermanentError as error:
            if error.reason is not Reason.API_INVALID_REQUEST:
                raise
            refusal = error
        # Refused (0001/0003), so not run nor billed: say so before asking why, or a failing
        # metadata call would leave the mark and end the query as search_unconfirmed.
        attempt.clear_search_sent()
        raise self._refusal_explained(query, refusal, age_s, deadline)

    def _announce_search(self, query: Query, attempt: Attempt) -> None:
        """Right before the search request leaves: mark it in flight, log it."""
        if attempt.record.search_sent_at is None:
            attempt.mark_search_sent(self._now())
        self._log.info(
            "sending the search",
            extra={
                "event": "search_sent",
                "attempt": attempt.record.attempts,
                "event_id": query.object.event_id,
                "object": f"gs://{query.object.bucket}/{query.object.name}",
                "generation": query.object.generation,
                "video_no": query.video_no,
                "trace": query.object.trace,
            },
        )

    def _refusal_explained(
        self, query: Query, refusal: PermanentError, age_s: float, deadline: float
    ) -> PermanentError | TransientError:
        """Why the API called the search invalid, as the video's status tells it."""
        try:
            meta = self._api.video_metadata(query.video_no, query.unique_id, deadline)
        except PermanentError:
            return PermanentError(
                Reason.VIDEO_NOT_FOUND,
                f"video_no {query.video_no!r} is unknown in unique_id {query.unique_id!r}"
                f" ({refusal.message})",
            )
        if meta.status == "UNPARSE":
            if age_s < self.settings.unindexed_window_s:
                return TransientError(
                    f"video {query.video_no} is still being indexed", retry_after_s=60
                )
            return PermanentError(
                Reason.VIDEO_NOT_INDEXED,
                f"video {query.video_no} was still not indexed after {age_s:.0f}s",
            )
        if meta.status == "PARSE_ERROR":
            return PermanentError(
                Reason.VIDEO_PARSE_ERROR, f"video {query.video_no} failed indexing at the API"
            )
        return refusal

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

    def _deliver(
        self,
        attempt: Attempt,
        message: dict[str, Any],
        topic: str,
        age_s: float,
        log: ContextLogger,
        spend: VendorSpend | None = None,
    ) -> Outcome:
        """Result JSON, then the message; a publish that fails transiently is retried, or past
        CLIPSEARCH_MAX_EVENT_AGE_S left to the result JSON (`attempt_policy`)."""
        name, uri = self._result_uri_of(message)
        self._results.write_json(name, self._mask_bytes(messages.encode(message)))
        try:
            message_id = self._publish(topic, message)
        except TransientError as error:
            situation = self._situation(Happened.UNPUBLISHED, attempt, age_s, error.message)
            if not isinstance(decide(situation), LeaveUnpublished):
                raise
            attempt.release(self._mask(error.message))
            self._log_outcome(
                log,
                message,
                attempt,
                f"not published ({error.message}); the query is {age_s:.0f}s old, so it is"
                f" not retried: {uri} holds the outcome",
                level=logging.ERROR,
                spend=spend,
            )
            return Outcome(message["status"], None, message)
        attempt.mark_published(message_id)
        self._log_outcome(log, message, attempt, None, spend=spend)
        return Outcome(message["status"], message_id, message)

    def _result_uri_of(self, message: dict[str, Any]) -> tuple[str, str]:
        name = result_name(
            self.settings.results_prefix,
            message["query"]["bucket"],
            message["query"]["object"],
            int(message["query"]["generation"]),
        )
        return name, f"gs://{self._results.bucket}/{name}"

    def _publish(self, topic: str, message: dict[str, Any]) -> str:
        """The published body is the message in Avro's JSON encoding, which the results
        topic's schema requires (nullable values wrapped). The API's own words end up in
        messages; should they ever echo the key, it is masked."""
        secret = self.settings.api_key.encode()
        wire = messages.encode(to_avro_json(message)).replace(secret, b"***")
        attributes = {
            k: v.replace(self.settings.api_key, "***")
            for k, v in messages.attributes(message).items()
        }
        return self._publisher.publish(topic, wire, attributes)

    def _log_outcome(
        self,
        log: ContextLogger,
        message: dict[str, Any],
        attempt: Attempt,
        problem: str | None,
        level: int | None = None,
        spend: VendorSpend | None = None,
    ) -> None:
        """The one `event=outcome` line per query (metrics count these), with what this
        attempt spent at the vendor's download endpoint."""
        status = message["status"]
        extra: dict[str, Any] = {
            "event": "outcome",
            "status": status,
            "attempt": attempt.record.attempts,
            "timings_ms": message.get("timings_ms"),
            "video_no": message["query"]["video_no"],
            **(spend or VendorSpend()).as_log(),
        }
        args: list[Any]
        if status == "success":
            text, args = "query answered with %d clips", [len(message["clips"])]
            chosen = logging.INFO
        else:
            reason = Reason(message["error"]["reason"])
            extra["reason"] = reason.value
            text = "query failed: %s"
            args = [message["error"]["message"].replace(self.settings.api_key, "***")]
            chosen = ALERT if reason in OPERATOR_ALERT_REASONS else logging.WARNING
        if problem is not None:
            text += "; %s"
            args.append(problem)
        log.log(level or chosen, text, *args, extra=extra)
