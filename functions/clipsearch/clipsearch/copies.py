"""Source videos on the API path: downloaded whole once into our results bucket, then cut from
our copy, whatever the vendor's download endpoint honours.

The endpoint's requests are the scarce resource (12 a minute per account), so the clip engine
does not read the vendor by ranges: `SourceCopies.open_range` hands it ranged reads of our copy
(Cloud Storage, no vendor request) and makes that copy on first sight with one download
request. Concurrent first sights, in any instance, download once: the one that takes a
create-only claim downloads, the others wait for its copy. The rule of which route a source
takes lives in clipsearch.core.sourcecopy; docs/cost.md gives the figures behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from clipsearch.clipping import ClipReason, ClipUnavailable, RangeSource
from clipsearch.core.naming import fit_name, video_copy_name
from clipsearch.core.sourcecopy import (
    META_CHECKED,
    META_SIZE,
    META_VERSION,
    CopyCheck,
    Route,
    Validators,
    VendorFacts,
    Verdict,
    changed,
    checked_at,
    comparable,
    content_version,
    copy_is_current,
    copy_version,
    judge_copy,
    plan_route,
)
from clipsearch.errors import OPERATOR_ALERT_REASONS, PermanentError, TransientError
from clipsearch.logs import ALERT
from clipsearch.model import SourceVideo, StoredCopy
from clipsearch.ports import MetadataLookup
from clipsearch.resuming import MustRestart, ResumingBody, TooLarge, VendorDownloads
from clipsearch.spend import VendorSpend


class CopyStore(Protocol):
    """Whole copies in our results bucket (clipsearch.adapters.gcs.GcsResultStore)."""

    def stat_copy(self, name: str, deadline: float | None = None) -> StoredCopy | None: ...

    def claim(self, name: str, lease_s: float, deadline: float | None = None) -> bool: ...

    def release(self, name: str, deadline: float | None = None) -> None: ...

    def write_copy(
        self,
        name: str,
        stream: Any,
        size: int | None,
        content_type: str,
        metadata: dict[str, str],
        if_generation_match: int,
        deadline: float | None = None,
    ) -> StoredCopy | None: ...

    def patch_copy(
        self, copy: StoredCopy, metadata: dict[str, str], deadline: float | None = None
    ) -> StoredCopy | None: ...

    def open_copy(self, copy: StoredCopy, deadline: float | None = None) -> RangeSource: ...


class KeyedSource:
    """A range source named by the content it holds, with what reaching it cost the vendor.

    The cache key (hence the clip names and the index sidecar) is the source's content
    version, so clips cut from our copy and from ranged vendor reads of the same file share
    names, and a changed file gets new ones.
    """

    def __init__(
        self,
        inner: RangeSource,
        cache_key: str,
        *,
        route: Route,
        spent: VendorSpend,
    ) -> None:
        self._inner = inner
        self._key = cache_key
        self.route = route
        self._spent = spent
        self.restarts = spent.restarts

    @property
    def size(self) -> int | None:
        return self._inner.size

    @property
    def cache_key(self) -> str:
        return self._key

    @property
    def requests(self) -> int:
        return self._inner.requests

    @property
    def bytes_read(self) -> int:
        return self._inner.bytes_read

    @property
    def vendor_requests(self) -> int:
        ranged = self._inner.requests if self.route is Route.RANGED else 0
        return self._spent.requests + ranged

    @property
    def vendor_bytes(self) -> int:
        ranged = self._inner.bytes_read if self.route is Route.RANGED else 0
        return self._spent.bytes + ranged

    def read(self, offset: int, length: int) -> bytes:
        return self._inner.read(offset, length)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Facts:
    """The metadata endpoint's answer for this query, asked at most once and only when needed;
    None when there is no query to ask about or the call failed (logged)."""

    def __init__(
        self, lookup: MetadataLookup | None, source: SourceVideo, logger: logging.Logger
    ) -> None:
        self._lookup = lookup
        self._source = source
        self._log = logger
        self._asked = False
        self._value: VendorFacts | None = None

    @property
    def consulted(self) -> bool:
        return self._lookup is not None

    def get(self, deadline: float) -> VendorFacts | None:
        if self._lookup is None or self._asked:
            return self._value
        self._asked = True
        try:
            self._value = VendorFacts.of(self._lookup(deadline))
        except (TransientError, PermanentError) as error:
            self._log.warning(
                "get_metadata for %s failed (%s): the copy is checked with a download request",
                self._source.uri,
                error.message,
                extra={"event": "download"},
            )
        return self._value


@dataclass
class _Seen:
    """What this instance last learned of a source from the endpoint."""

    validators: Validators
    route: Route


class SourceCopies:
    """The clip engine's source on the API path (a RangeOpener); one per instance."""

    def __init__(
        self,
        vendor: VendorDownloads,
        store: CopyStore,
        *,
        prefix: str,
        max_bytes: int,
        ranged_above_bytes: int,
        recheck_s: float,
        lease_s: float,
        max_restarts: int,
        logger: logging.Logger,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._vendor = vendor
        self._store = store
        self._prefix = prefix
        self._max_bytes = max_bytes
        self._ranged_above = ranged_above_bytes
        self._recheck_s = recheck_s
        self._now = now
        self._lease_s = lease_s
        self._max_restarts = max_restarts
        self._log = logger
        self._poll_s = poll_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._seen: dict[SourceVideo, _Seen] = {}
        self.range_honoured: bool | None = None  # learnt from the first answer, then kept

    def copy_name(self, source: SourceVideo) -> str:
        return video_copy_name(self._prefix, source.bucket, source.blob)

    def claim_name(self, source: SourceVideo) -> str:
        # ".claims" cannot be a bucket name, so no source's copy can take this name.
        return fit_name(f"{self._prefix}videos/.claims/{source.bucket}/{source.blob}")

    def open_range(
        self,
        source: SourceVideo,
        deadline: float | None = None,
        video: MetadataLookup | None = None,
    ) -> KeyedSource:
        """Our copy of the source, made now if need be; ranged vendor reads for a source
        the rule sends there. Vendor refusals become ClipUnavailable (the clips fall back).
        The source returned tells what reaching it cost the vendor.

        `video` asks the metadata endpoint about the query's video: an existing copy is cut
        from only when that answer agrees with what the copy recorded (clipsearch.core.
        sourcecopy.judge_copy); a new copy records it. Without it (tools, tests) a copy is
        trusted within the recheck interval."""
        if deadline is None:
            deadline = self._clock() + self._lease_s
        spend = VendorSpend()
        facts = _Facts(video, source, self._log)
        try:
            return self._open(source, deadline, spend, facts)
        except PermanentError as error:
            level = ALERT if error.reason in OPERATOR_ALERT_REASONS else logging.WARNING
            self._log.log(
                level,
                "download of %s refused: %s",
                source.uri,
                error.message,
                extra={"event": "download", "reason": error.reason.value},
            )
            raise ClipUnavailable(
                ClipReason.SOURCE_UNREADABLE, f"download refused: {error.message}"
            ) from None

    def _open(
        self, source: SourceVideo, deadline: float, spend: VendorSpend, facts: _Facts
    ) -> KeyedSource:
        name = self.copy_name(source)
        while True:
            with self._lock:
                seen = self._seen.get(source)
            if seen is not None and seen.route is Route.RANGED:
                return self._ranged(source, seen.validators, deadline, spend)
            stored = self._current(source, name, seen, deadline)
            if stored is not None and self._judge(stored, facts, deadline).check is CopyCheck.USE:
                return self._from_copy(source, stored, deadline, spend)
            claim = self.claim_name(source)
            if self._store.claim(claim, self._lease_s, deadline):
                try:
                    made = self._refresh(source, name, deadline, spend, facts)
                finally:
                    self._store.release(claim, deadline)
                if made is not None:
                    return made
                continue  # another writer's copy landed first: use it
            if self._clock() + self._poll_s >= deadline:
                raise TransientError(f"{source.uri}: another instance is still downloading it")
            self._sleep(self._poll_s)

    def _refresh(
        self, source: SourceVideo, name: str, deadline: float, spend: VendorSpend, facts: _Facts
    ) -> KeyedSource | None:
        """Holding the claim: the copy as it is, rechecked, or downloaded anew."""
        with self._lock:
            seen = self._seen.get(source)
        stored = self._current(source, name, seen, deadline)
        if stored is not None:
            verdict = self._judge(stored, facts, deadline)
            if verdict.check is CopyCheck.USE:  # made or confirmed just before our claim
                return self._from_copy(source, stored, deadline, spend)
            if verdict.check is CopyCheck.RECHECK:
                checked = self._recheck(source, stored, deadline, spend, facts.get(deadline))
                if checked is not None:
                    return self._from_copy(source, checked, deadline, spend)
            else:
                self._log.info(
                    "%s changed at the vendor (%s): copying it again",
                    source.uri,
                    verdict.why,
                    extra={"event": "download", "source_changed": verdict.why},
                )
        return self._download(source, name, deadline, spend, facts)

    def _judge(self, stored: StoredCopy, facts: _Facts, deadline: float) -> Verdict:
        return judge_copy(
            stored.metadata,
            facts.get(deadline),
            consulted=facts.consulted,
            recheck_due=self._recheck_due(stored),
        )

    def _recheck_due(self, stored: StoredCopy) -> bool:
        checked = checked_at(stored.metadata)
        return checked is None or (self._now() - checked).total_seconds() >= self._recheck_s

    def _recheck(
        self,
        source: SourceVideo,
        stored: StoredCopy,
        deadline: float,
        spend: VendorSpend,
        facts: VendorFacts | None,
    ) -> StoredCopy | None:
        """Ask the endpoint whether the file is still the one copied: one request for its
        first byte (the whole body's head when `Range` is ignored, closed unread). The copy,
        marked checked (and recording the metadata endpoint's answer, so a copy made without
        it gains it here, without a download), when nothing disagrees; None when it changed
        or cannot be told."""
        recorded = Validators.from_metadata(stored.metadata)
        assert recorded is not None  # copy_is_current checked it
        spend.add(requests=1)
        with self._vendor.open_body(source, deadline, 0, last=0) as body:
            head = body.head
            if head.ranged:
                spend.add(nbytes=len(body.stream.read(1)))
        self._learn_range(head.ranged)
        seen = head.validators
        why = changed(recorded, seen)
        if why is None and not comparable(recorded, seen):
            why = "the endpoint's answer carries nothing to compare"
        if why is not None:
            self._log.info(
                "%s changed (%s): copying it again",
                source.uri,
                why,
                extra={"event": "download", "source_changed": why},
            )
            with self._lock:
                self._seen[source] = _Seen(seen, Route.COPY)
            return None
        patch = {META_CHECKED: self._now().isoformat()}
        if facts is not None and facts.metadata():
            version = copy_version(stored.metadata)
            assert version is not None  # copy_is_current checked the validators
            patch.update(facts.metadata())
            patch[META_VERSION] = version  # the name its clips have had
        return self._store.patch_copy(stored, patch, deadline)

    def _current(
        self, source: SourceVideo, name: str, seen: _Seen | None, deadline: float
    ) -> StoredCopy | None:
        stored = self._store.stat_copy(name, deadline)
        known = None if seen is None else seen.validators
        if stored is not None and copy_is_current(stored.metadata, source.uri, stored.size, known):
            return stored
        return None

    def _from_copy(
        self, source: SourceVideo, stored: StoredCopy, deadline: float, spend: VendorSpend
    ) -> KeyedSource:
        version = copy_version(stored.metadata)
        assert version is not None  # copy_is_current checked the validators
        ranged = self._store.open_copy(stored, deadline)
        return KeyedSource(
            ranged,
            f"{source.uri}#{version}",
            route=Route.COPY,
            spent=spend,
        )

    def _ranged(
        self,
        source: SourceVideo,
        validators: Validators,
        deadline: float,
        spend: VendorSpend,
    ) -> KeyedSource:
        key = f"{source.uri}#{validators.version}"
        inner = self._vendor.open_range(source, deadline, cache_key=key)
        return KeyedSource(inner, key, route=Route.RANGED, spent=spend)

    def _download(
        self, source: SourceVideo, name: str, deadline: float, spend: VendorSpend, facts: _Facts
    ) -> KeyedSource | None:
        """One whole download into the copy (restarted from 0 when it cannot resume).

        The metadata endpoint is asked first: should the file change between the two, the
        copy records the older answer and the next query copies it again (never the reverse).
        """
        known = facts.get(deadline)
        previous = self._store.stat_copy(name, deadline)
        restarts = 0
        while True:
            try:
                return self._download_once(source, name, previous, deadline, spend, known)
            except MustRestart as why:
                restarts += 1
                spend.add(restarts=1)
                self._log.warning(
                    "download of %s restarts from byte 0 (%d): %s",
                    source.uri,
                    restarts,
                    why,
                    extra={"event": "download", "restarts": restarts},
                )
                if restarts > self._max_restarts:
                    raise TransientError(f"{source.uri}: the download kept dropping") from None
            except TooLarge as error:
                raise ClipUnavailable(
                    ClipReason.SOURCE_UNREADABLE, f"{error} (the per-query fetch cap)"
                ) from None

    def _download_once(
        self,
        source: SourceVideo,
        name: str,
        previous: StoredCopy | None,
        deadline: float,
        spend: VendorSpend,
        facts: VendorFacts | None,
    ) -> KeyedSource | None:
        started = self._clock()
        before = spend.bytes
        body = ResumingBody(
            self._vendor,
            source,
            deadline,
            max_bytes=self._max_bytes,
            max_resumes=self._max_restarts,
            spend=spend,
            clock=self._clock,
        )
        with body:
            answered = self._clock()  # the rate slot waited for, the head received
            head = body.head
            assert head is not None
            self._learn_range(head.ranged)
            validators = head.validators
            route = plan_route(validators.size, head.ranged, self._ranged_above)
            if route is Route.RANGED:
                return self._go_ranged(source, validators, deadline, spend)
            if validators.size is not None and validators.size > self._max_bytes:
                raise TooLarge(f"{validators.size} bytes is over {self._max_bytes}")
            metadata = {
                **validators.metadata(source.uri),
                **(facts.metadata() if facts is not None else {}),
                META_VERSION: content_version(validators, facts),
                META_CHECKED: self._now().isoformat(),
            }
            generation = previous.generation if previous is not None else 0
            stored = self._store.write_copy(
                name, body, validators.size, body.content_type, metadata, generation, deadline
            )
        if stored is not None and validators.size is None:
            stored, validators = self._record_size(stored, validators, facts, deadline)
        if stored is None:
            return None
        with self._lock:
            self._seen[source] = _Seen(validators, Route.COPY)
        self._log_copied(
            source,
            name,
            stored,
            started=started,
            answered=answered,
            resumes=body.resumed,
            range_honoured=head.ranged,
            vendor_bytes=spend.bytes - before,
        )
        return self._from_copy(source, stored, deadline, spend)

    def _go_ranged(
        self, source: SourceVideo, validators: Validators, deadline: float, spend: VendorSpend
    ) -> KeyedSource:
        with self._lock:
            self._seen[source] = _Seen(validators, Route.RANGED)
        self._log.info(
            "%s: %d bytes, over the copy size; clips by ranged vendor reads",
            source.uri,
            validators.size,
            extra={"event": "download", "route": Route.RANGED.value},
        )
        return self._ranged(source, validators, deadline, spend)

    def _record_size(
        self,
        stored: StoredCopy,
        validators: Validators,
        facts: VendorFacts | None,
        deadline: float,
    ) -> tuple[StoredCopy | None, Validators]:
        """A chunked body's size is known once it ended: the copy records it."""
        validators = Validators(stored.size, validators.etag, validators.last_modified)
        patch = {META_SIZE: str(stored.size), META_VERSION: content_version(validators, facts)}
        return self._store.patch_copy(stored, patch, deadline), validators

    def _log_copied(
        self,
        source: SourceVideo,
        name: str,
        stored: StoredCopy,
        *,
        started: float,
        answered: float,
        resumes: int,
        range_honoured: bool,
        vendor_bytes: int,
    ) -> None:
        done = self._clock()
        self._log.info(
            "copied %s into %s: %d bytes in %.0f ms after %.0f ms for the answer (%d resumes,"
            " Range %s)",
            source.uri,
            name,
            stored.size,
            (done - answered) * 1000,
            (answered - started) * 1000,
            resumes,
            "honoured" if range_honoured else "ignored",
            extra={
                "event": "download",
                "route": Route.COPY.value,
                "source_bytes": stored.size,
                "wait_s": round(answered - started, 3),
                "download_ms": round((done - answered) * 1000, 1),
                "vendor_bytes": vendor_bytes,
            },
        )

    def _learn_range(self, ranged: bool) -> None:
        with self._lock:
            if self.range_honoured is ranged:
                return
            self.range_honoured = ranged
        self._log.info(
            "the download endpoint %s Range",
            "honours" if ranged else "ignores",
            extra={"event": "download", "range_honoured": ranged},
        )
