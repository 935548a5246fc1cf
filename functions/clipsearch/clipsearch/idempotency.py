"""Exactly one outcome per query, at most one billed search: a small record per query object.

Key: bucket/object#generation. The record is claimed with a create-only write; it holds an
in-progress lease (expiring with the function's timeout, so a crashed attempt can be taken
over), then the time a search request was about to be sent, then the search hits as soon as
the API returns them, then the outcome message, then the published message id. A redelivery
therefore never searches twice and never publishes twice: it acknowledges a finished query,
publishes a stored outcome, reuses stored hits, ends a query whose search was sent but never
answered as `search_unconfirmed`, or — while another attempt holds the lease — raises to be
retried later. `attempts` counts claims; `failures` counts the attempts that failed in a way
nobody planned for — an unexpected exception, or a crash (a takeover of a lease that was never
released) — since the query last made progress (hits or outcome stored), so such failures end
the query after a bounded number of them while transient redeliveries do not count.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from typing import Any, Protocol

from clipsearch.errors import TransientError
from clipsearch.model import Hit, SourceVideo

RECORD_VERSION = 1


@dataclass(frozen=True)
class Record:
    lease_until: float  # epoch seconds; 0 = released
    attempts: int = 1
    hits: tuple[Hit, ...] | None = None
    message: dict[str, Any] | None = None  # the outcome, plain JSON, before it is published
    topic: str | None = None
    message_id: str | None = None  # "" : ended without a confirmed publish (given up)
    created_at: float | None = None  # epoch seconds of the first claim
    search_sent_at: float | None = None  # set right before the search request goes out
    last_error: str | None = None  # what the last failed attempt failed on
    failures: int = 0  # unplanned failures and crashes since the last progress

    @property
    def stage(self) -> str:
        """How far the query got, as the record shows it (no extra write needed)."""
        if self.message is not None:
            return "publish"
        if self.hits is not None:
            return "fetch"
        if self.search_sent_at is not None:
            return "search"
        return "read"

    def dumps(self) -> bytes:
        return json.dumps(
            {
                "version": RECORD_VERSION,
                "lease_until": self.lease_until,
                "attempts": self.attempts,
                "hits": None if self.hits is None else [_hit_json(h) for h in self.hits],
                "message": self.message,
                "topic": self.topic,
                "message_id": self.message_id,
                "created_at": self.created_at,
                "search_sent_at": self.search_sent_at,
                "last_error": self.last_error,
                "failures": self.failures,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def loads(cls, data: bytes) -> Record:
        doc = json.loads(data)
        hits = doc.get("hits")
        return cls(
            lease_until=float(doc["lease_until"]),
            attempts=int(doc.get("attempts", 1)),
            hits=None if hits is None else tuple(_hit_from_json(h) for h in hits),
            message=doc.get("message"),
            topic=doc.get("topic"),
            message_id=doc.get("message_id"),
            created_at=_float_or_none(doc.get("created_at")),
            search_sent_at=_float_or_none(doc.get("search_sent_at")),
            last_error=doc.get("last_error"),
            failures=int(doc.get("failures", 0)),
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _hit_json(hit: Hit) -> dict[str, Any]:
    return {
        "start_time": hit.start_time,
        "end_time": hit.end_time,
        "score": hit.score,
        "bucket": hit.source.bucket if hit.source else None,
        "blob": hit.source.blob if hit.source else None,
    }


def _hit_from_json(doc: dict[str, Any]) -> Hit:
    source = SourceVideo(doc["bucket"], doc["blob"]) if doc.get("bucket") else None
    return Hit(float(doc["start_time"]), float(doc["end_time"]), float(doc["score"]), source)


class RecordStore(Protocol):
    """Conditional writes on small records; `generation` is the compare-and-swap token."""

    def create(self, key: str, record: Record) -> int | None:
        """Write only if absent; the new generation, or None when the key already exists."""
        ...

    def read(self, key: str) -> tuple[Record, int] | None: ...

    def replace(self, key: str, record: Record, generation: int) -> int | None:
        """Write only over `generation`; the new generation, or None when it moved on."""
        ...


@dataclass(frozen=True)
class Claim:
    """This attempt owns the query until `record.lease_until`."""

    key: str
    record: Record
    generation: int


@dataclass(frozen=True)
class Finished:
    """The query already has its published outcome."""

    record: Record


class Idempotency:
    def __init__(self, store: RecordStore, lease_s: float) -> None:
        self._store = store
        self._lease_s = lease_s

    def claim(self, key: str, now: float) -> Claim | Finished:
        fresh = Record(lease_until=now + self._lease_s, created_at=now)
        generation = self._store.create(key, fresh)
        if generation is not None:
            return Claim(key, fresh, generation)
        found = self._store.read(key)
        if found is None:  # removed between the two calls (lifecycle): try again later
            raise TransientError(f"idempotency record {key} vanished while claiming")
        record, generation = found
        if record.message_id is not None:
            return Finished(record)
        if record.lease_until > now:
            raise TransientError(
                f"{key} is being handled by another attempt",
                retry_after_s=record.lease_until - now,
            )
        taken = replace(record, lease_until=now + self._lease_s, attempts=record.attempts + 1)
        if record.lease_until > 0:
            # Expired but never released: the attempt holding it was stopped (killed, out of
            # memory, past the platform's timeout) with no chance to say why. That counts.
            taken = replace(
                taken,
                failures=record.failures + 1,
                last_error=(
                    f"attempt {record.attempts} was stopped during the {record.stage} stage"
                    " (killed, out of memory or past the function's timeout)"
                ),
            )
        return self._save(Claim(key, taken, generation), taken)

    def _save(self, claim: Claim, record: Record) -> Claim:
        generation = self._store.replace(claim.key, record, claim.generation)
        if generation is None:
            raise TransientError(f"{claim.key} was taken over by another attempt")
        return Claim(claim.key, record, generation)

    def store_hits(self, claim: Claim, hits: list[Hit]) -> Claim:
        """Progress: the failure count starts again for the next stage."""
        return self._save(claim, replace(claim.record, hits=tuple(hits), failures=0))

    def mark_search_sent(self, claim: Claim, now: float) -> Claim:
        """Say a search is about to be sent: a takeover must then never send another."""
        return self._save(claim, replace(claim.record, search_sent_at=now))

    def clear_search_sent(self, claim: Claim) -> Claim:
        """The search was answered (a refusal) or provably not run: a retry may send it."""
        if claim.record.search_sent_at is None:
            return claim
        return self._save(claim, replace(claim.record, search_sent_at=None))

    def store_outcome(self, claim: Claim, message: dict[str, Any], topic: str) -> Claim:
        """Progress: publishing gets its own CLIPSEARCH_MAX_ATTEMPTS failures."""
        return self._save(claim, replace(claim.record, message=message, topic=topic, failures=0))

    def mark_published(self, claim: Claim, message_id: str) -> Claim:
        return self._save(claim, replace(claim.record, message_id=message_id, lease_until=0.0))

    def release(self, claim: Claim, error: str | None = None, *, failed: bool = False) -> None:
        """Give the lease up after a failure, so the redelivery need not wait; keep why.

        `failed`: the failure was not a planned, transient one; it counts towards the cap.
        """
        record = replace(
            claim.record,
            lease_until=0.0,
            last_error=error or claim.record.last_error,
            failures=claim.record.failures + (1 if failed else 0),
        )
        with contextlib.suppress(TransientError):  # someone else holds it: nothing to release
            self._save(claim, record)


class Attempt:
    """This attempt's hold on a query; follows the record's generation as it is saved.

    Mutable on purpose: whatever fails, `release()` must use the latest generation.
    """

    def __init__(self, idempotency: Idempotency, claim: Claim) -> None:
        self._idempotency = idempotency
        self.claim = claim
        self._released = False

    @property
    def record(self) -> Record:
        return self.claim.record

    def store_hits(self, hits: list[Hit]) -> None:
        self.claim = self._idempotency.store_hits(self.claim, hits)

    def mark_search_sent(self, now: float) -> None:
        self.claim = self._idempotency.mark_search_sent(self.claim, now)

    def clear_search_sent(self) -> None:
        self.claim = self._idempotency.clear_search_sent(self.claim)

    def store_outcome(self, message: dict[str, Any], topic: str) -> None:
        self.claim = self._idempotency.store_outcome(self.claim, message, topic)

    def mark_published(self, message_id: str) -> None:
        self.claim = self._idempotency.mark_published(self.claim, message_id)

    def release(self, error: str | None = None, *, failed: bool = False) -> None:
        """Once: a second call (an outer handler after an inner one) does nothing."""
        if not self._released:
            self._released = True
            self._idempotency.release(self.claim, error, failed=failed)
