"""Byte-range sources over the network: a Cloud Storage object and the API's download URL.

They implement clipping.RangeSource, counting requests and bytes like every source, and turn
their clients' failures into ClipUnavailable so the engine can fall back. They live here, not
in clipping/, so the engine imports no network client.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import requests
import urllib3
from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.sources import ReadCounters, check_range


class _Deadline:
    """The event's deadline (time.monotonic), applied to every request's timeouts.

    A request asked for after it fails at once; one asked for before it waits at most until
    it, so a slow source ends the clip (a fallback) instead of the platform killing the attempt.
    """

    def __init__(self, deadline: float | None, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self._clock = clock

    def left(self, what: str) -> float | None:
        """Seconds left, or None without a deadline; raises when none are left."""
        if self.deadline is None:
            return None
        left = self.deadline - self._clock()
        if left <= 0:
            raise ClipUnavailable(
                ClipReason.DEADLINE_EXCEEDED, f"{what}: the event's deadline passed"
            )
        return left

    def passed(self) -> bool:
        return self.deadline is not None and self._clock() >= self.deadline

    def bound(self, timeout: float | tuple[float, float], what: str) -> float | tuple[float, float]:
        left = self.left(what)
        if left is None:
            return timeout
        if isinstance(timeout, tuple):
            return (min(timeout[0], left), min(timeout[1], left))
        return min(timeout, left)


class GcsRangeSource(ReadCounters):
    """A Cloud Storage object, every read pinned to one generation.

    Pinning matters: the index and the clip's bytes must come from the same object version,
    or the clip would be silently wrong after an overwrite.
    """

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        blob: str,
        generation: int | None = None,
        *,
        size: int | None = None,
        timeout: float | tuple[float, float] = (10, 60),
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.bucket = bucket
        self.blob = blob
        self.metadata_requests = 0
        self._timeout = timeout
        self._deadline = _Deadline(deadline, clock)
        if generation is None or size is None:
            self.metadata_requests += 1
            try:
                meta = client.bucket(bucket).get_blob(
                    blob, generation=generation, **self._bounds(f"gs://{bucket}/{blob}")
                )
            except gexc.Forbidden:
                raise ClipUnavailable(
                    ClipReason.SOURCE_UNREADABLE, f"gs://{bucket}/{blob}: forbidden"
                ) from None
            except (gexc.ServerError, gexc.TooManyRequests) as error:
                raise ClipUnavailable(
                    ClipReason.SOURCE_UNREADABLE,
                    f"gs://{bucket}/{blob}: {type(error).__name__}",
                    transient=True,
                ) from None
            if meta is None:
                raise ClipUnavailable(
                    ClipReason.SOURCE_UNREADABLE, f"gs://{bucket}/{blob}: not found"
                )
            generation = int(meta.generation)
            size = int(meta.size or 0)
        self.generation: int = generation
        self._size: int = size
        self._blob = client.bucket(bucket).blob(blob, generation=generation)

    @property
    def size(self) -> int:
        return self._size

    @property
    def cache_key(self) -> str:
        return f"gs://{self.bucket}/{self.blob}#{self.generation}"

    def _bounds(self, what: str) -> dict[str, Any]:
        """Timeouts, and the client's own retries, ending at the deadline when there is one."""
        timeout = self._deadline.bound(self._timeout, what)
        left = self._deadline.left(what)
        if left is None:
            return {"timeout": timeout}
        return {"timeout": timeout, "retry": DEFAULT_RETRY.with_timeout(left)}

    def read(self, offset: int, length: int) -> bytes:
        check_range(offset, length)
        if offset >= self._size:
            return b""
        end = min(offset + length, self._size) - 1  # inclusive, as the API wants it
        bounds = self._bounds(self.cache_key)
        try:
            data = bytes(
                self._blob.download_as_bytes(start=offset, end=end, checksum=None, **bounds)
            )
        except (gexc.NotFound, gexc.PreconditionFailed):
            raise ClipUnavailable(
                ClipReason.SOURCE_CHANGED, f"{self.cache_key} is gone (overwritten or deleted)"
            ) from None
        except gexc.Forbidden:
            raise ClipUnavailable(
                ClipReason.SOURCE_UNREADABLE, f"{self.cache_key}: forbidden"
            ) from None
        except (gexc.GoogleAPIError, OSError, requests.RequestException) as error:
            if self._deadline.passed():
                raise ClipUnavailable(
                    ClipReason.DEADLINE_EXCEEDED,
                    f"{self.cache_key}: {type(error).__name__} as the event's deadline passed",
                ) from None
            raise ClipUnavailable(
                ClipReason.SOURCE_UNREADABLE,
                f"{self.cache_key}: {type(error).__name__}",
                transient=True,
            ) from None
        self._count(len(data))
        if len(data) != end - offset + 1:
            raise ClipUnavailable(
                ClipReason.SOURCE_CHANGED, f"{self.cache_key}: short read at {offset}"
            )
        return data


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_TRANSIENT_CODES = frozenset({"0429", "0500", "0502", "0503", "0504"})
_MAX_ENVELOPE = 64 * 1024
_BODY_CHUNK = 256 * 1024


def _envelope_code(response: requests.Response) -> str | None:
    """The `code` of a small JSON error envelope, else None (without reading a big body)."""
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return None
    try:
        body = response.raw.read(_MAX_ENVELOPE + 1, decode_content=True)
        if len(body) > _MAX_ENVELOPE:
            return None
        code = json.loads(body).get("code")
    except (ValueError, AttributeError, OSError, requests.RequestException):
        return None
    return code if isinstance(code, str) else None


class HttpRangeSource(ReadCounters):
    """An HTTP endpoint honouring `Range` (the API's download endpoint).

    The headers carry the API key: they are never logged nor put into exception messages, and
    neither is the query string (it names the object, which is harmless, but keep it short).
    """

    def __init__(
        self,
        session: requests.Session,
        url: str,
        headers: dict[str, str],
        *,
        cache_key: str | None = None,
        timeout: tuple[float, float] = (5, 60),
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._session = session
        self._deadline = _Deadline(deadline, clock)
        self._url = url
        self._headers = dict(headers)
        self._key = cache_key
        self._timeout = timeout
        self._size: int | None = None
        self._where = url.split("?", maxsplit=1)[0]

    def __repr__(self) -> str:  # never show the headers
        return f"HttpRangeSource({self._where!r})"

    @property
    def size(self) -> int | None:
        return self._size

    @property
    def cache_key(self) -> str | None:
        return self._key

    def _fail(self, message: str, *, transient: bool, reason: ClipReason | None = None) -> NoReturn:
        raise ClipUnavailable(
            reason or ClipReason.SOURCE_UNREADABLE,
            f"GET {self._where}: {message}",
            transient=transient,
        ) from None

    def read(self, offset: int, length: int) -> bytes:
        check_range(offset, length)
        if self._size is not None and offset >= self._size:
            return b""
        headers = {**self._headers, "Range": f"bytes={offset}-{offset + length - 1}"}
        timeout = self._deadline.bound(self._timeout, f"GET {self._where}")
        try:
            # stream=True: a 200 (the whole object) must never be read into memory.
            # No redirects: the request carries the key, which must go nowhere else.
            response = self._session.get(
                self._url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
            )
        except requests.RequestException as error:
            if self._deadline.passed():
                self._fail(
                    f"{type(error).__name__} as the event's deadline passed",
                    transient=False,
                    reason=ClipReason.DEADLINE_EXCEEDED,
                )
            self._fail(type(error).__name__, transient=True)
        with response:
            status = response.status_code
            if status == 416:
                self._count(0)
                return b""
            if status in (408, 429) or status >= 500:
                self._count(0)
                self._fail(f"HTTP {status}", transient=True)
            if status != 206:
                # 200 here is an error envelope (the API answers errors with HTTP 200 and a
                # JSON code) or the whole object, which we never read.
                self._count(0)
                code = _envelope_code(response) if status == 200 else None
                if code is not None:
                    self._fail(f"API code {code}", transient=code in _TRANSIENT_CODES)
                self._fail(f"HTTP {status} to a ranged request", transient=False)
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != offset:
                self._count(0)
                self._fail("missing or wrong Content-Range", transient=False)
            if match.group(3) != "*":
                total = int(match.group(3))
                if self._size is not None and total != self._size:
                    self._count(0)
                    self._fail(
                        "object size changed", transient=False, reason=ClipReason.SOURCE_CHANGED
                    )
                self._size = total
            expected = int(match.group(2)) - offset + 1
            if expected > length:
                self._count(0)
                self._fail("Content-Range wider than asked", transient=False)
            data = self._body(response, expected)
        self._count(len(data))
        if len(data) != expected:
            self._fail("short body", transient=True)
        return data

    def _body(self, response: requests.Response, expected: int) -> bytes:
        """The 206 body, its length checked as it streams: never more than the range held.

        A read timeout restarts with every byte received, so a source trickling one byte at a
        time would never time out: a timer aborts the connection at the deadline instead.
        """
        chunks: list[bytes] = []
        got = 0
        left = self._deadline.left("reading the body")
        timer = None if left is None else threading.Timer(left, abort_response, (response,))
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            for chunk in response.iter_content(_BODY_CHUNK):
                got += len(chunk)
                if got > expected:
                    self._count(0)
                    self._fail("body longer than its Content-Range", transient=False)
                chunks.append(chunk)
                if self._deadline.passed():
                    self._late()
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            if self._deadline.passed():
                self._late()
            self._count(0)
            self._fail(type(e).__name__, transient=True)
        finally:
            if timer is not None:
                timer.cancel()
        if got != expected and self._deadline.passed():
            self._late()
        return b"".join(chunks)

    def _late(self) -> NoReturn:
        self._count(0)
        self._fail(
            "the event's deadline passed mid-body",
            transient=False,
            reason=ClipReason.DEADLINE_EXCEEDED,
        )


def abort_response(response: requests.Response) -> None:
    """Stop a body read blocked in another thread (at the event's deadline): closing alone
    does not wake a blocked recv() on Linux, shutting the socket down does."""
    raw = getattr(response, "raw", None)
    # The pooled connection's socket; or, when the server said it closes the connection
    # (http.client then hands the socket to the response), the one under the response's file.
    file = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
    for sock in (
        getattr(getattr(raw, "connection", None), "sock", None),
        getattr(file, "_sock", None),
    ):
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
    close = getattr(response, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
