"""The vendor's download body as one file: resumed with `Range: bytes=N-` where it drops,
capped as it streams, each request counted (clipsearch.copies uploads it into a copy)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Protocol

from clipsearch.clipping import RangeSource
from clipsearch.core.sourcecopy import BodyHead, changed
from clipsearch.errors import TransientError
from clipsearch.model import SourceVideo, VendorBody
from clipsearch.spend import VendorSpend

# What reading an open body raises when it drops (the adapter turns its client's own errors
# into OSError).
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)


class VendorDownloads(Protocol):
    """The vendor's download endpoint (clipsearch.adapters.search_api.HttpSearchApi)."""

    def open_body(
        self, source: SourceVideo, deadline: float, offset: int = 0, last: int | None = None
    ) -> AbstractContextManager[VendorBody]: ...

    def open_range(
        self, source: SourceVideo, deadline: float | None = None, cache_key: str | None = None
    ) -> RangeSource: ...


class MustRestart(Exception):
    """The body dropped and cannot be resumed (the endpoint ignores Range, or the file
    changed under us): the copy must start again from byte 0."""


class TooLarge(Exception):
    """The body passed the byte cap while streaming (no Content-Length told it before)."""


class ResumingBody:
    """The download body as one file, resumed with `Range: bytes=N-` where it drops.

    The upload to Cloud Storage reads it chunk by chunk; a read that fails (or a body that ends
    before the length its head announced) opens a new request from the byte reached, as long
    as the endpoint honours Range and the file is the same one (same validators). Otherwise it
    raises MustRestart. The byte cap is enforced as it streams. Each request is counted in `spend`.
    """

    def __init__(
        self,
        vendor: VendorDownloads,
        source: SourceVideo,
        deadline: float,
        *,
        max_bytes: int,
        max_resumes: int,
        spend: VendorSpend,
        clock: Callable[[], float],
    ) -> None:
        self._vendor = vendor
        self._source = source
        self._deadline = deadline
        self._max_bytes = max_bytes
        self._resumes_left = max_resumes
        self._spend = spend
        self._clock = clock
        self._stack = ExitStack()
        self._body: VendorBody | None = None
        self._pos = 0
        self.head: BodyHead | None = None
        self.resumed = 0

    def __enter__(self) -> ResumingBody:
        self._open(0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open(self, offset: int) -> VendorBody:
        self._stack.close()
        self._stack = ExitStack()
        self._spend.add(requests=1)
        body = self._stack.enter_context(
            self._vendor.open_body(self._source, self._deadline, offset)
        )
        if self.head is None:
            self.head = body.head
        elif not body.head.ranged or changed(self.head.validators, body.head.validators):
            raise MustRestart("the resumed answer is not the rest of the same file")
        self._body = body
        return body

    @property
    def content_type(self) -> str:
        return "video/mp4" if self._body is None else self._body.content_type

    @property
    def end(self) -> int | None:
        """Where the file ends, when its head said."""
        assert self.head is not None
        if self.head.validators.size is not None:
            return self.head.validators.size
        if self.head.length is not None:
            return self.head.start + self.head.length
        return None

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset != self._pos:
            raise OSError("a download body cannot seek")
        return self._pos

    def read(self, size: int = -1) -> bytes:
        """`size` bytes (fewer only at the end of the file), as a file's read does."""
        chunks: list[bytes] = []
        want = size if size is not None and size >= 0 else None
        got = 0
        while want is None or got < want:
            piece = self._read_some(None if want is None else want - got)
            if not piece:
                break
            chunks.append(piece)
            got += len(piece)
        return b"".join(chunks)

    def _read_some(self, size: int | None) -> bytes:
        while True:
            assert self._body is not None
            if self._clock() >= self._deadline:
                raise TransientError("the event's deadline passed while downloading")
            try:
                data = self._body.stream.read(size if size is not None else 1024 * 1024)
            except READ_ERRORS:
                data = None
            end = self.end
            if data:
                self._pos += len(data)
                self._spend.add(nbytes=len(data))
                if self._pos > self._max_bytes:
                    raise TooLarge(f"over {self._max_bytes} bytes while streaming")
                if end is not None and self._pos > end:
                    raise MustRestart("the body ran past the length its head announced")
                return data
            if data is not None and (end is None or self._pos >= end):
                return b""  # the end of the file
            self._resume()

    def _resume(self) -> None:
        assert self.head is not None
        if not self.head.ranged or self._resumes_left <= 0:
            raise MustRestart(f"the body dropped at byte {self._pos}")
        self._resumes_left -= 1
        self.resumed += 1
        self._open(self._pos)
