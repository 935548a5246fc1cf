"""A download body read as one file across drops: resumed where `Range` works and the file is
the same one, restarted otherwise; the cap and the deadline hold while it streams."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from clipsearch.core.sourcecopy import BodyHead, Validators
from clipsearch.errors import TransientError
from clipsearch.model import SourceVideo, VendorBody
from clipsearch.resuming import MustRestart, ResumingBody, TooLarge
from clipsearch.spend import VendorSpend

FILE = bytes(range(256)) * 40  # 10,240 bytes
SOURCE = SourceVideo("mavi-resource", "V1.mp4")


class _Dropping(io.RawIOBase):
    """Serves `data`, then fails like a dropped connection after `drop_after` bytes."""

    def __init__(self, data: bytes, drop_after: int | None) -> None:
        self._data = data
        self._pos = 0
        self._drop = drop_after

    def read(self, size: int = -1) -> bytes:
        if self._drop is not None and self._pos >= self._drop:
            raise OSError("connection dropped")
        end = len(self._data) if size < 0 else self._pos + min(size, 1000)
        if self._drop is not None:
            end = min(end, self._drop)
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk


@dataclass
class _Vendor:
    """Answers each request from a script: (ranged?, etag, drop_after) per request."""

    answers: list[tuple[bool, str, int | None]]
    asked: list[int] = field(default_factory=list)

    @contextmanager
    def open_body(
        self, source: SourceVideo, deadline: float, offset: int = 0, last: int | None = None
    ) -> Iterator[VendorBody]:
        ranged, etag, drop = self.answers.pop(0)
        self.asked.append(offset)
        start = offset if ranged else 0
        body = FILE[start:]
        head = BodyHead(start, ranged, len(body), Validators(len(FILE), etag))
        yield VendorBody(head, _Dropping(body, drop), "video/mp4")  # type: ignore[arg-type]


def read_all(vendor: _Vendor, **kw: object) -> tuple[bytes, ResumingBody, VendorSpend]:
    spend = VendorSpend()
    options: dict = {"max_bytes": 10**6, "max_resumes": 3, "clock": lambda: 0.0, **kw}
    body = ResumingBody(vendor, SOURCE, 100.0, spend=spend, **options)
    with body:
        data = b"".join(iter(lambda: body.read(4096), b""))
    return data, body, spend


def test_a_drop_where_range_works_resumes_from_the_byte_reached():
    vendor = _Vendor([(True, '"a"', 3000), (True, '"a"', None)])
    data, body, spend = read_all(vendor)
    assert data == FILE
    assert vendor.asked == [0, 3000]
    assert body.resumed == 1
    assert (spend.requests, spend.bytes) == (2, len(FILE))


def test_a_drop_where_range_is_ignored_must_restart():
    with pytest.raises(MustRestart, match="dropped at byte 3000"):
        read_all(_Vendor([(False, '"a"', 3000)]))


@pytest.mark.parametrize(
    ("second", "why"),
    [((False, '"a"', None), "not the rest"), ((True, '"b"', None), "not the rest")],
)
def test_a_resumed_answer_that_is_not_the_same_file_restarts(second, why):
    """A 200 (the whole file again) or another ETag: splicing would corrupt the copy."""
    with pytest.raises(MustRestart, match=why):
        read_all(_Vendor([(True, '"a"', 3000), second]))


def test_resumes_are_bounded():
    vendor = _Vendor([(True, '"a"', 1000), (True, '"a"', 2000), (True, '"a"', 3000)])
    with pytest.raises(MustRestart, match="dropped"):
        read_all(vendor, max_resumes=2)
    assert vendor.asked == [0, 1000, 3000]  # each drop is counted from where its body began


def test_the_cap_holds_while_streaming():
    with pytest.raises(TooLarge):
        read_all(_Vendor([(True, '"a"', None)]), max_bytes=5000)


def test_the_deadline_holds_while_streaming():
    with pytest.raises(TransientError, match="deadline"):
        read_all(_Vendor([(True, '"a"', None)]), clock=lambda: 1000.0)


def test_reads_are_whole_until_the_end_as_the_upload_expects():
    """Cloud Storage's resumable upload takes a short read for the end of the stream."""
    vendor = _Vendor([(True, '"a"', None)])
    spend = VendorSpend()
    body = ResumingBody(
        vendor, SOURCE, 100.0, max_bytes=10**6, max_resumes=0, spend=spend, clock=lambda: 0.0
    )
    with body:
        sizes = [len(body.read(4096)), len(body.read(4096)), len(body.read(4096))]
        assert body.read(4096) == b""
        assert body.tell() == len(FILE)
    assert sizes == [4096, 4096, len(FILE) - 8192]
