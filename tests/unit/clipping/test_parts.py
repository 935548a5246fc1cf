"""The cutter's parts: the box iterator, the sparse reader, the index blob and cache, the HTTP
range source."""

from __future__ import annotations

import json
import struct
import threading
from typing import Any

import pytest
import requests

from clipsearch.adapters.ranges import HttpRangeSource
from clipsearch.clipping import (
    ClipReason,
    ClipUnavailable,
    FileRangeSource,
    IndexCache,
    SourceIndex,
)
from clipsearch.clipping.boxiter import BadBox, box, boxes_in, find_path, full_box, leading_boxes
from clipsearch.clipping.codecs import video_composition_offsets
from clipsearch.clipping.fragindex import mfra_is_sound
from clipsearch.clipping.index import Box
from clipsearch.clipping.reader import SparseFile


class Bytes:
    """An in-memory RangeSource that logs its requests."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.log: list[tuple[int, int]] = []
        self.size = len(data)
        self.cache_key = None

    @property
    def requests(self) -> int:
        return len(self.log)

    @property
    def bytes_read(self) -> int:
        return sum(n for _, n in self.log)

    def read(self, offset: int, length: int) -> bytes:
        chunk = self.data[offset : offset + length]
        self.log.append((offset, len(chunk)))
        return chunk


DATA = bytes(range(256)) * 4096  # 1 MiB


def test_one_box_iterator_raises_at_a_bad_header_and_leading_boxes_stop_there():
    a, b = box("free", b"12"), box("skip")
    large = b"\0\0\0\1wide" + (20).to_bytes(8, "big") + b"four"
    data = a + b + large + box("mdat", b"xyz")[:-1]  # the last box is cut short
    with pytest.raises(BadBox, match="does not fit"):
        boxes_in(data, 0, len(data))
    spans = leading_boxes(data, 0, len(data))
    assert [(s.kind, s.start, s.body, s.end) for s in spans] == [
        ("free", 0, 8, 10),
        ("skip", 10, 18, 18),
        ("wide", 18, 34, 38),
    ]
    to_end = b"\0\0\0\0mdat" + b"rest"  # size 0: to the end of the range
    assert boxes_in(to_end, 0, len(to_end))[0].end == len(to_end)
    with pytest.raises(BadBox, match="truncated box header"):
        boxes_in(a + b"\0\0\0", 0, len(a) + 3)
    with pytest.raises(BadBox, match="truncated large box header"):
        boxes_in(b"\0\0\0\1wide\0\0", 0, 10)
    nested = box("moov", box("trak", box("tkhd", b"t")), box("trak", b"\0\0"))
    assert find_path(nested, 0, len(nested), ("moov", "trak", "tkhd")) == [(24, 25)]


def test_composition_offsets_read_signed_per_sample_and_none_past_the_table():
    runs = [(2, 512), (1, -512 & 0xFFFFFFFF)]  # (samples, offset as stored)
    entries = b"".join(n.to_bytes(4, "big") + v.to_bytes(4, "big") for n, v in runs)
    ctts = box("ctts", b"\0\0\0\0", len(runs).to_bytes(4, "big"), entries)
    hdlr = box("hdlr", bytes(8), b"vide", bytes(12))
    trak = box("trak", box("mdia", hdlr, box("minf", box("stbl", ctts))))
    table = video_composition_offsets(box("moov", trak))
    assert table is not None
    assert [table.at(i) for i in (-1, 0, 1, 2, 3)] == [None, 512, 512, -512, None]


def test_sparse_file_reads_short_at_region_ends_and_fetches_gaps_once():
    source = Bytes(DATA)
    f = SparseFile(source, size=len(DATA), readahead=1000)
    f.ensure(100, 200)
    f.ensure(300, 400)
    assert source.log == [(100, 100), (300, 100)]
    assert f.gaps(0, 500) == [(0, 100), (200, 300), (400, 500)]
    f.seek(150)
    assert f.read(500) == DATA[150:200]  # short: stops at the held region's end
    assert f.read(50) == DATA[200:250]  # a miss fetches up to the next region only
    assert source.log[-1] == (200, 100)
    assert f.regions == ((100, DATA[100:400]),)  # adjacent regions merged
    f.ensure(0, 1000)
    assert source.log[-2:] == [(0, 100), (400, 600)]
    f.seek(-10, 2)
    assert f.read() == DATA[-10:]
    assert f.read(5) == b""
    f.drop_except(((0, DATA[:10]),))
    assert f.held_bytes == 10


def test_sparse_file_refuses_a_source_that_changed_size():
    source = Bytes(DATA)
    f = SparseFile(source, size=len(DATA) + 1)
    with pytest.raises(ClipUnavailable) as info:
        f.ensure(0, 10)
    assert info.value.reason is ClipReason.SOURCE_CHANGED


def test_index_blob_round_trip_and_rejects_garbage():
    index = SourceIndex(
        size=10_000,
        layout="moov_at_end",
        boxes=(Box("ftyp", 0, 32), Box("mdat", 32, 9000), Box("moov", 9032, 968)),
        spans=((0, b"a" * 100), (9032, b"m" * 968)),
    )
    blob = index.dumps()
    assert SourceIndex.loads(blob) == index
    assert len(blob) < index.nbytes
    for bad in (b"", b"CSIX", blob[:-3], b"XXXX" + blob[4:], blob[:4] + b"\x09" + blob[5:]):
        with pytest.raises(ValueError):
            SourceIndex.loads(bad)
    with pytest.raises(ValueError):
        SourceIndex.loads(blob, max_bytes=100)


def test_index_cache_is_an_lru_bounded_in_bytes():
    def index(n: int) -> SourceIndex:
        return SourceIndex(n, "faststart", (), ((0, b"x" * n),))

    cache = IndexCache(max_bytes=3000)
    cache.put("a", index(1000))
    cache.put("b", index(1000))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", index(1000))  # over budget: b goes
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    assert cache.nbytes <= 3000
    cache.put("huge", index(10_000))  # never kept
    assert cache.get("huge") is None
    assert cache.evictions == 1  # b; the three gets above found theirs
    cache.discard("a")
    assert len(cache) == 1


def test_index_cache_under_concurrent_use():
    cache = IndexCache(max_bytes=50_000)

    def work(worker: int) -> None:
        for i in range(300):
            key = f"k{(worker * 7 + i) % 40}"
            if cache.get(key) is None:
                cache.put(key, SourceIndex(i, "faststart", (), ((0, b"y" * 2000),)))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes <= 50_000
    assert cache.nbytes == sum(2000 + 256 for _ in range(len(cache)))


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.status_code = status
        self.content = body
        self.headers = headers or {}

    def __enter__(self) -> FakeResponse:
        return self

    def iter_content(self, chunk_size: int) -> Any:
        for i in range(0, len(self.content), chunk_size):
            yield self.content[i : i + chunk_size]

    def __exit__(self, *exc: object) -> None:
        pass


class Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def read(self, n: int, decode_content: bool = False) -> bytes:
        return self.body[:n]


def envelope(code: str) -> FakeResponse:
    response = FakeResponse(200, b"", {"Content-Type": "application/json"})
    response.raw = Raw(json.dumps({"code": code, "msg": "m"}).encode())  # type: ignore[attr-defined]
    return response


class FakeSession:
    def __init__(self, *responses: Any) -> None:
        self.responses = list(responses)
        self.sent: list[dict[str, str]] = []

    def get(
        self, url: str, headers: dict[str, str], timeout: Any, stream: bool, **kwargs: Any
    ) -> FakeResponse:
        assert stream
        self.sent.append(headers)
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return response


SECRET = "sk-mavi-SECRET"


def http(*responses: Any) -> tuple[HttpRangeSource, FakeSession]:
    session = FakeSession(*responses)
    source = HttpRangeSource(
        session,  # type: ignore[arg-type]
        "http://x/download?bucket=b&blob=v.mp4",
        {"Authorization": SECRET},
    )
    return source, session


def test_http_range_source_reads_206_and_learns_the_size():
    source, session = http(
        FakeResponse(206, b"abcd", {"Content-Range": "bytes 10-13/100"}),
        FakeResponse(206, b"xy", {"Content-Range": "bytes 98-99/100"}),
    )
    assert source.size is None
    assert source.read(10, 4) == b"abcd"
    assert source.size == 100
    assert source.read(98, 10) == b"xy"
    assert source.read(100, 10) == b""  # past the end: no request
    assert (source.requests, source.bytes_read) == (2, 6)
    assert session.sent[0] == {"Authorization": SECRET, "Range": "bytes=10-13"}
    assert SECRET not in repr(source)


@pytest.mark.parametrize(
    ("response", "transient", "reason"),
    [
        (FakeResponse(200, b"whole file"), False, ClipReason.SOURCE_UNREADABLE),
        (envelope("0429"), True, ClipReason.SOURCE_UNREADABLE),
        (envelope("0001"), False, ClipReason.SOURCE_UNREADABLE),
        (FakeResponse(429), True, ClipReason.SOURCE_UNREADABLE),
        (FakeResponse(503), True, ClipReason.SOURCE_UNREADABLE),
        (
            FakeResponse(206, b"ab", {"Content-Range": "bytes 5-6/9"}),
            False,
            ClipReason.SOURCE_UNREADABLE,
        ),
        (
            FakeResponse(206, b"a", {"Content-Range": "bytes 0-1/9"}),
            True,
            ClipReason.SOURCE_UNREADABLE,
        ),
        (requests.ConnectionError(f"boom {SECRET}"), True, ClipReason.SOURCE_UNREADABLE),
    ],
)
def test_http_range_source_failures_never_show_the_key(response, transient, reason):
    source, _ = http(response)
    with pytest.raises(ClipUnavailable) as info:
        source.read(0, 2)
    assert info.value.transient is transient
    assert info.value.reason is reason
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_http_range_source_notices_a_changed_object():
    source, _ = http(
        FakeResponse(206, b"ab", {"Content-Range": "bytes 0-1/9"}),
        FakeResponse(206, b"ab", {"Content-Range": "bytes 2-3/10"}),
    )
    source.read(0, 2)
    with pytest.raises(ClipUnavailable) as info:
        source.read(2, 2)
    assert info.value.reason is ClipReason.SOURCE_CHANGED


def test_file_range_source_counts(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(DATA[:1000])
    source = FileRangeSource(path)
    assert source.read(990, 100) == DATA[990:1000]
    assert (source.size, source.requests, source.bytes_read, source.cache_key) == (
        1000,
        1,
        10,
        None,
    )


def _tfra(entries: int, room: int) -> bytes:
    """A version-0 tfra of track 1 declaring `entries` 8+3-byte entries, with `room` entries."""
    return full_box("tfra", 0, 0, struct.pack(">III", 1, 0, entries), b"\0" * (11 * room))


@pytest.mark.parametrize(
    ("mfra", "sound"),
    [
        (box("mfra", _tfra(2, 2), full_box("mfro", 0, 0, b"\0" * 4)), True),
        (box("mfra", _tfra(3, 2)), False),  # entries past the tfra's end
        (box("mfra"), False),  # no child at all
        (box("mfra", b"\0\0\0\0tfra" + b"\0" * 16), False),  # a size of 0 (to the end)
        (box("mfra", struct.pack(">I4sQ", 1, b"free", 16)), False),  # a 64-bit size
        (box("mfra", _tfra(1, 1)[:-3]), False),  # a child cut short
        (box("moof", _tfra(1, 1)), False),  # not an mfra
    ],
)
def test_an_mfra_is_sound_only_when_every_child_is_whole_with_a_32_bit_size(
    mfra: bytes, sound: bool
) -> None:
    assert mfra_is_sound(mfra) is sound
