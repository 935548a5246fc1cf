"""The memories.ai search API over a pooled requests.Session."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, cast
from urllib.parse import quote

import requests
import urllib3

from clipsearch.adapters.ranges import HttpRangeSource, abort_response
from clipsearch.clipping import ClipReason, ClipUnavailable, RangeSource
from clipsearch.core import api
from clipsearch.core.sourcecopy import read_head
from clipsearch.errors import AnswerLost, PermanentError, Reason, TransientError
from clipsearch.model import DownloadStream, Hit, Query, SourceVideo, VendorBody, VideoMetadata
from clipsearch.ratelimit import RateLimiter
from clipsearch.retry import RetryPolicy, call_with_retries


def new_session(pool_size: int = 16) -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = True  # TLS verification stays on for the real API
    return session


class HttpSearchApi:
    def __init__(
        self,
        session: requests.Session,
        *,
        api_key: str,
        base_url: str,
        download_base_url: str,
        timeouts: tuple[float, float],
        retry: RetryPolicy,
        logger: logging.Logger,
        search_limiter: RateLimiter | None = None,
        download_limiter: RateLimiter | None = None,
        metadata_limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        self._key = api_key
        self._base = base_url
        self._download_base = download_base_url
        self._timeouts = timeouts
        self._retry = retry
        self._log = logger
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._search_limiter = search_limiter
        self._download_limiter = download_limiter
        self._metadata_limiter = metadata_limiter

    def _retrying(
        self,
        what: str,
        call: Callable[[], Any],
        deadline: float,
        limiter: RateLimiter | None = None,
        before_send: Callable[[], None] | None = None,
    ) -> Any:
        """Each attempt waits for its rate slot; attempts, budget and deadline all bound it."""

        def on_retry(attempt: int, error: Exception, delay: float) -> None:
            self._log.warning(
                "%s attempt %d failed (%s); retrying in %.2fs", what, attempt, error, delay
            )

        def paced() -> Any:
            if limiter is not None:
                limiter.acquire(deadline)
            if before_send is not None:
                try:
                    before_send()
                except TransientError as error:  # nothing was sent; retrying cannot help
                    raise _NotSent(error) from None
            return call()

        if self._clock() >= deadline:
            raise TransientError(f"{what}: no time left in this event")
        try:
            return call_with_retries(
                paced,
                self._retry,
                clock=self._clock,
                sleep=self._sleep,
                rng=self._rng,
                on_retry=on_retry,
                deadline=deadline,
            )
        except _NotSent as refused:
            raise refused.error from None

    def _request(
        self,
        method: str,
        url: str,
        deadline: float,
        *,
        extra_headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        # Never wait for an answer past the event's deadline: the platform would kill the
        # attempt mid-request, leaving no record of whether the vendor ran it.
        connect, read = self._timeouts
        read = max(0.5, min(read, deadline - self._clock()))
        try:
            # No redirects: the request carries the key, which must go nowhere else.
            return self._session.request(
                method,
                url,
                headers={"Authorization": self._key, **(extra_headers or {})},
                timeout=(connect, read),
                allow_redirects=False,
                **kwargs,
            )
        except requests.RequestException as error:
            # Say what failed without echoing the request (its headers hold the key).
            what = f"{method} {url.split('?', maxsplit=1)[0]}: {type(error).__name__}"
            if _never_reached(error):
                raise TransientError(what) from None
            raise AnswerLost(what) from None

    def search(
        self,
        query: Query,
        image: bytes,
        deadline: float,
        before_send: Callable[[], None] | None = None,
    ) -> list[Hit]:
        """Hits; retried only on failures after which the vendor cannot have run the search.

        A search whose answer is lost may have been billed: it ends the query as
        `search_unconfirmed` instead of being sent again; so does a 0409 ("Duplicate requests
        are not allowed": the vendor says no more, so an earlier send of this search may have
        run). `before_send` runs after the rate wait, right before each request goes out.
        """
        form = api.build_search_form(self._base, query)

        def once() -> list[Hit]:
            try:
                response = self._request(
                    "POST",
                    form.url,
                    deadline,
                    data=list(form.fields),
                    files=[("file", (form.filename, image, form.content_type))],
                )
                try:
                    return api.interpret_search_response(
                        response.status_code, dict(response.headers), response.content
                    )
                except TransientError:
                    if _already_handling(response):
                        raise PermanentError(
                            Reason.SEARCH_UNCONFIRMED,
                            "the API refused the search as a duplicate request (0409): an"
                            " earlier request of this query may have run and been billed, so it"
                            " is not sent again",
                        ) from None
                    raise
            except AnswerLost as error:
                raise PermanentError(
                    Reason.SEARCH_UNCONFIRMED,
                    f"the search was sent but its answer was lost ({error.message}); it may"
                    " have been billed, so it is not sent again",
                ) from None

        hits: list[Hit] = self._retrying(
            "search", once, deadline, self._search_limiter, before_send
        )
        return hits

    def video_metadata(self, video_no: str, unique_id: str, deadline: float) -> VideoMetadata:
        def once() -> VideoMetadata:
            response = self._request(
                "GET",
                self._base + api.METADATA_PATH,
                deadline,
                params={"video_no": video_no, "unique_id": unique_id},
            )
            return api.interpret_metadata_response(
                response.status_code, dict(response.headers), response.content, video_no
            )

        metadata: VideoMetadata = self._retrying(
            "get_metadata", once, deadline, self._metadata_limiter
        )
        return metadata

    def _download_url(self, source: SourceVideo) -> str:
        # The endpoint wants the slashes in `blob` as they are.
        return (
            f"{self._download_base}{api.DOWNLOAD_PATH}?bucket={quote(source.bucket, safe='')}"
            f"&blob={quote(source.blob, safe='/')}"
        )

    def _download_sent(self) -> None:
        """One line per request to the download endpoint (after its rate slot): the scarce
        resource, counted by a log-based metric against the account's limit."""
        self._log.info("download request", extra={"event": "download_request"})

    def open_range(
        self, source: SourceVideo, deadline: float | None = None, cache_key: str | None = None
    ) -> RangeSource:
        """Ranged reads through the download endpoint (HTTP Range), for clip cutting."""
        session = PacedSession(
            self._session,
            self._download_limiter,
            self._clock,
            deadline=deadline,
            on_send=self._download_sent,
        )
        return HttpRangeSource(
            session,
            self._download_url(source),
            {"Authorization": self._key},
            cache_key=cache_key or f"{source.uri}@download",
            timeout=self._timeouts,
            deadline=deadline,
            clock=self._clock,
        )

    @contextmanager
    def _download(
        self, source: SourceVideo, deadline: float, ranged: str | None
    ) -> Iterator[requests.Response]:
        """One paced request to the download endpoint (retried like the other calls), its
        JSON errors classified; the open response, its body cut off at the deadline (a read
        timeout restarts with every byte, so a trickling body needs the timer)."""
        url = self._download_url(source)
        ok = (200, 206) if ranged is not None else (200,)

        def once() -> requests.Response:
            self._download_sent()
            response = self._request(
                "GET",
                url,
                deadline,
                stream=True,
                extra_headers=None if ranged is None else {"Range": ranged},
            )
            content_type = response.headers.get("Content-Type", "")
            if response.status_code not in ok or content_type.startswith("application/json"):
                body = response.content
                response.close()
                api.interpret_download_error(response.status_code, dict(response.headers), body)
            return response

        response: requests.Response = self._retrying(
            "download", once, deadline, self._download_limiter
        )
        timer = threading.Timer(max(0.0, deadline - self._clock()), abort_response, (response,))
        timer.daemon = True
        timer.start()
        try:
            response.raw.decode_content = True
            yield response
        finally:
            timer.cancel()
            response.close()

    @contextmanager
    def open_body(
        self, source: SourceVideo, deadline: float, offset: int = 0, last: int | None = None
    ) -> Iterator[VendorBody]:
        """The file from byte `offset` on (to `last`), asked for with `Range: bytes=offset-`.

        The answer may be a 206 from `offset` or a 200 with the whole file (an endpoint that
        ignores `Range`): `head` says which.
        """
        wanted = f"bytes={offset}-{'' if last is None else last}"
        with self._download(source, deadline, wanted) as response:
            try:
                head = read_head(response.status_code, dict(response.headers), offset)
            except ValueError as error:
                raise PermanentError(Reason.API_REJECTED, f"download answer: {error}") from None
            yield VendorBody(
                head=head,
                stream=cast(IO[bytes], _BodyStream(response)),
                content_type=response.headers.get("Content-Type", "video/mp4"),
            )

    @contextmanager
    def open_download(self, source: SourceVideo, deadline: float) -> Iterator[DownloadStream]:
        with self._download(source, deadline, None) as response:
            length = response.headers.get("Content-Length")
            yield DownloadStream(
                stream=cast(IO[bytes], response.raw),
                size=int(length) if length and length.isdigit() else None,
                content_type=response.headers.get("Content-Type", "video/mp4"),
            )


_BODY_PIECE = 1024 * 1024


class _BodyStream:
    """A response body read as it arrives: `read` returns what one receive brings (at most
    `size` bytes, b"" at the end), so bytes received before a drop are never lost with it;
    a drop raises OSError, whatever the client raised."""

    def __init__(self, response: requests.Response) -> None:
        self._raw = response.raw

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._raw.read1(size if size > 0 else _BODY_PIECE))
        except (urllib3.exceptions.HTTPError, requests.RequestException) as error:
            raise OSError(type(error).__name__) from None


def _already_handling(response: requests.Response) -> bool:
    """0409 / HTTP 409: "Duplicate requests are not allowed", all the vendor's pages say of it.
    It can only mean an earlier send of this search reached the vendor, which may have run and
    billed it: sending again could pay twice, so the search is not retried and the query ends
    as `search_unconfirmed`, its mark kept."""
    if response.status_code == 409:
        return True
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        return False
    return str(code) in ("0409", "409")


class _NotSent(Exception):
    """`before_send` refused (e.g. the record moved on): raised past the retry loop as is."""

    def __init__(self, error: TransientError) -> None:
        super().__init__(error.message)
        self.error = error


def _never_reached(error: requests.RequestException) -> bool:
    """True when the request cannot have reached the vendor: no connection was made."""
    if isinstance(error, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if isinstance(error, requests.ConnectionError) and error.args:
        reason = getattr(error.args[0], "reason", None)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


class PacedSession(requests.Session):
    """A session whose every request waits for a download rate slot (ranged reads count too).

    A slot past the event's deadline cannot be used: the read fails at once with
    ClipUnavailable(DEADLINE_EXCEEDED), so the clip falls back instead of the attempt
    running into the platform's timeout. Without a deadline, a minute is the most it waits.
    """

    def __init__(
        self,
        inner: requests.Session,
        limiter: RateLimiter | None,
        clock: Callable[[], float],
        *,
        deadline: float | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._inner = inner
        self._limiter = limiter
        self._clock = clock
        self._deadline = deadline
        self._on_send = on_send

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        deadline = self._clock() + 60.0 if self._deadline is None else self._deadline
        try:
            if self._limiter is not None:
                self._limiter.acquire(deadline)
        except TransientError as error:
            if self._deadline is None:
                raise
            raise ClipUnavailable(ClipReason.DEADLINE_EXCEEDED, error.message) from None
        if self._on_send is not None:
            self._on_send()
        return self._inner.request(method, url, *args, **kwargs)
