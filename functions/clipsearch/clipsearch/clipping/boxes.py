"""Walking an MP4's top-level boxes with a few ranged reads, to find and fetch its index, and
bounds-checking every box the demuxer will parse before it sees it.

Layouts: `faststart` (moov before mdat), `moov_at_end` (mdat then moov), and `fragmented`
(an empty moov, then moof/mdat pairs, indexed by a trailing `mfra` or a `sidx`). Anything
else is refused up front rather than fed to the demuxer byte by byte.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from clipsearch.clipping.boxiter import TruncatedHeader, decode_header, leading_boxes
from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.fragindex import (
    mfra_is_sound,
    parse_sidx,
)
from clipsearch.clipping.index import Box
from clipsearch.clipping.reader import SparseFile

HEAD_BYTES = 64 * 1024  # first read: ftyp, often the whole moov of a short faststart file
NEXT_HEADER = 64  # after a leading moov: the next boxes' headers (often `free`, then mdat)
TAIL_BYTES = 64 * 1024  # fragmented: a guess at the mfra size, read with mfro
MAX_BOXES = 64  # before moov; more means something we do not want to walk
SMALL_FILE_BYTES = 8 * 1024 * 1024  # a fragmented file this small may be read whole to open

_KNOWN = {
    "ftyp", "styp", "moov", "mdat", "moof", "mfra", "sidx", "free", "skip", "wide", "uuid",
    "meta", "pdin", "emsg", "prft", "udta",
}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    kind: str  # faststart | moov_at_end | fragmented
    boxes: tuple[Box, ...]

    def first(self, kind: str) -> Box | None:
        """The first top-level box of type `kind` the walk met, if any."""
        return next((b for b in self.boxes if b.kind == kind), None)


def _refuse(message: str) -> ClipUnavailable:
    return ClipUnavailable(ClipReason.UNSUPPORTED_CONTAINER, message)


def _header(f: SparseFile, pos: int, size: int) -> Box:
    try:
        kind_raw, length, _ = decode_header(f.peek(pos, 16), 0, size - pos)
    except TruncatedHeader as error:
        what = "large box header" if error.large else "box header"
        raise _refuse(f"truncated {what} at {pos}") from None
    kind = kind_raw.decode("latin-1")
    if length < 8 or pos + length > size or not kind.isprintable():
        raise _refuse(f"not an MP4 box at {pos} ({kind!r}, {length} bytes)")
    return Box(kind, pos, length)


def walk(f: SparseFile, *, max_index_bytes: int) -> Layout:
    """Find moov (and mfra/sidx), holding them in `f`, in as few ranged reads as we can."""
    f.ensure(0, HEAD_BYTES)
    size = f.size
    boxes: list[Box] = []
    moov: Box | None = None
    pos = 0
    while pos < size:
        if len(boxes) >= MAX_BOXES:
            raise _refuse("too many top-level boxes before the index")
        if f.gaps(pos, pos + 16):
            _read_ahead(f, boxes, pos, moov is not None, max_index_bytes)
        box = _next_box(f, boxes, pos)
        if box.kind == "moov":
            moov = box
            if _hold_moov(f, boxes, max_index_bytes):
                return Layout("moov_at_end", tuple(boxes))
        elif box.kind == "mdat" and moov is not None:
            return Layout("faststart", tuple(boxes))
        elif box.kind == "moof":
            if moov is None:
                raise _refuse("moof before moov")
            return _fragmented(f, boxes, size, max_index_bytes)
        elif box.kind == "sidx" and moov is not None:
            f.ensure(box.offset, box.end)
        pos = box.end
    if moov is None:
        raise _refuse("no moov box")
    return Layout("faststart", tuple(boxes))


def _read_ahead(
    f: SparseFile, boxes: list[Box], pos: int, found_moov: bool, max_index_bytes: int
) -> None:
    """Fetch from `pos`, past what we hold.

    Behind a big mdat, the rest of the file is usually just the index: fetch it in one
    request when it is small enough. Behind anything else (the `free` space robust muxers
    reserve before and after a moov near the start) the rest is media: read on from the next
    header only.
    """
    rest = f.size - pos
    behind_mdat = boxes[-1].kind == "mdat"
    if not found_moov and behind_mdat and rest <= max_index_bytes + TAIL_BYTES:
        f.ensure(pos, f.size)
    else:
        f.ensure(pos, pos + (HEAD_BYTES if not found_moov else NEXT_HEADER))


def _next_box(f: SparseFile, boxes: list[Box], pos: int) -> Box:
    """The top-level box at `pos`, appended to `boxes`; refused unless the walk may go on."""
    box = _header(f, pos, f.size)
    if not boxes and box.kind not in ("ftyp", "styp"):
        raise _refuse(f"first box is {box.kind!r}, not ftyp")
    if box.kind not in _KNOWN and len(box.kind) != 4:
        raise _refuse(f"unknown box {box.kind!r}")
    boxes.append(box)
    return box


def _hold_moov(f: SparseFile, boxes: list[Box], max_index_bytes: int) -> bool:
    """Fetch and check the moov just walked (`boxes[-1]`); whether media came before it."""
    box = boxes[-1]
    if box.size > max_index_bytes:
        raise ClipUnavailable(
            ClipReason.INDEX_TOO_LARGE,
            f"moov is {box.size} bytes, over the {max_index_bytes} cap",
        )
    seen_media = any(b.kind in ("mdat", "moof") for b in boxes)
    # Leading moov not held whole yet: take the next box's header along in the same
    # request. The first packets, which the demuxer probes, are not fetched: the open
    # answers them with blanks (`SparseFile.serving_blanks`).
    if f.gaps(box.offset, box.end):
        f.ensure(box.offset, min(f.size, box.end + (0 if seen_media else NEXT_HEADER)))
    check_box(f.peek(box.offset, box.size), "moov", f.size)
    return seen_media


def _fragmented(f: SparseFile, boxes: list[Box], size: int, max_index_bytes: int) -> Layout:
    """Find the fragment index: a trailing mfra (via mfro), else a sidx we already walked.

    The first moof (which the open parses) and the mfra are bounds-checked here; a sidx that
    indexes only part of the file is refused unless the file is small, because the demuxer
    then reads every fragment of the file to open it.
    """
    moof = boxes[-1]
    if moof.size > MAX_MOOF_BYTES:
        raise _malformed(f"moof of {moof.size} bytes")
    f.ensure(moof.offset, moof.end)
    check_box(f.peek(moof.offset, moof.size), "moof", size)
    mfra = _trailing_mfra(f, size, max_index_bytes)
    if mfra is not None:
        boxes.append(mfra)
        return Layout("fragmented", tuple(boxes))
    sidx = next((b for b in boxes if b.kind == "sidx"), None)
    if sidx is None:
        raise _refuse("fragmented MP4 without mfra or sidx (cannot seek without reading it all)")
    _timescale, refs = parse_sidx(f.peek(sidx.offset, sidx.size), sidx.offset)
    if not refs:
        raise _malformed("sidx holds no reference")
    covered = refs[-1].offset + refs[-1].size
    if covered < size and size > SMALL_FILE_BYTES:
        raise _refuse(
            "fragmented MP4 whose sidx indexes only part of it and no mfra "
            "(opening it would read every fragment)"
        )
    if covered < size:
        f.ensure(0, size)  # small: the demuxer walks every fragment, read it in one go
    return Layout("fragmented", tuple(boxes))


def _trailing_mfra(f: SparseFile, size: int, max_index_bytes: int) -> Box | None:
    """The mfra the file's last 16 bytes (an mfro) point to, fetched and checked; None when
    they point to none."""
    f.ensure(max(0, size - TAIL_BYTES), size)
    mfro = f.peek(size - 16, 16)
    if len(mfro) != 16 or mfro[4:8] != b"mfro":
        return None
    (mfra_size,) = struct.unpack_from(">I", mfro, 12)
    if not 16 <= mfra_size <= size:
        return None
    if mfra_size > max_index_bytes:
        raise ClipUnavailable(
            ClipReason.INDEX_TOO_LARGE,
            f"mfra is {mfra_size} bytes, over the {max_index_bytes} cap",
        )
    f.ensure(size - mfra_size, size)
    if f.peek(size - mfra_size + 4, 4) != b"mfra":
        return None
    if not mfra_is_sound(f.peek(size - mfra_size, mfra_size)):
        raise _malformed("mfra fails its bounds check")
    return Box("mfra", size - mfra_size, mfra_size)


def _malformed(message: str) -> ClipUnavailable:
    return ClipUnavailable(ClipReason.MALFORMED_SOURCE, message)


# -- table bounds: what the demuxer would allocate, checked against what the box holds ------

_CONTAINERS = {
    "moov", "trak", "mdia", "minf", "stbl", "edts", "mvex", "moof", "traf", "mfra",
}  # fmt: skip
MAX_MOOF_BYTES = 16 * 1024 * 1024
MAX_TRACKS = 64


def _full(data: bytes, body: int, end: int, kind: str, need: int) -> tuple[int, int]:
    """(version, flags) of a full box whose body must hold at least `need` bytes."""
    if end - body < max(4, need):
        raise _malformed(f"{kind} is {end - body} bytes, needs {need}")
    return data[body], int.from_bytes(data[body + 1 : body + 4], "big")


def _count_fits(kind: str, count: int, entry: int, room: int) -> None:
    if count * entry > room:
        raise _malformed(f"{kind} declares {count} entries of {entry} bytes in {room} bytes")


_Check = Callable[[str, bytes, int, int, int], None]
_ENTRY_BYTES = {"stts": 8, "ctts": 8, "stss": 4, "stsc": 12, "stco": 4, "co64": 8}


def _check_counted(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    _full(data, body, end, kind, 8)
    (count,) = struct.unpack_from(">I", data, body + 4)
    _count_fits(kind, count, _ENTRY_BYTES[kind], end - body - 8)


def _check_stsz(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    _full(data, body, end, kind, 12)
    sample_size, count = struct.unpack_from(">II", data, body + 4)
    if sample_size == 0:
        _count_fits(kind, count, 4, end - body - 12)
    elif count * sample_size > file_size:
        raise _malformed(f"stsz: {count} samples of {sample_size} bytes exceed the file")


def _check_stz2(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    _full(data, body, end, kind, 12)
    field, count = data[body + 7], struct.unpack_from(">I", data, body + 8)[0]
    if field not in (4, 8, 16):
        raise _malformed(f"stz2 field size {field}")
    if (count * field + 7) // 8 > end - body - 12:
        raise _malformed(f"stz2 declares {count} entries in {end - body - 12} bytes")


def _check_elst(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    version, _ = _full(data, body, end, kind, 8)
    (count,) = struct.unpack_from(">I", data, body + 4)
    _count_fits(kind, count, 20 if version == 1 else 12, end - body - 8)


def _check_mdhd(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    version = data[body] if end > body else 0
    _full(data, body, end, kind, 36 if version == 1 else 24)
    (timescale,) = struct.unpack_from(">I", data, body + (20 if version == 1 else 12))
    if timescale == 0:
        raise _malformed("mdhd timescale is 0")


def _versioned(v0: int, v1: int) -> _Check:
    """A check that the body holds `v0` bytes (version 0) or `v1` (version 1)."""

    def check(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
        version = data[body] if end > body else 0
        _full(data, body, end, kind, v1 if version == 1 else v0)

    return check


def _check_hdlr(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    _full(data, body, end, kind, 24)


def _check_stsd(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    _full(data, body, end, kind, 8)
    (count,) = struct.unpack_from(">I", data, body + 4)
    entries = leading_boxes(data, body + 8, end)
    if count == 0 or count > len(entries) or any(e.end - e.body < 8 for e in entries[:count]):
        raise _malformed(f"stsd declares {count} entries, holds {len(entries)} whole")


def _check_tfhd(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    _, flags = _full(data, body, end, kind, 8)
    optional = ((1, 8), (2, 4), (8, 4), (0x10, 4), (0x20, 4))
    need = 8 + sum(n for bit, n in optional if flags & bit)
    _full(data, body, end, kind, need)


def _check_trun(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    _, flags = _full(data, body, end, kind, 8)
    (count,) = struct.unpack_from(">I", data, body + 4)
    head = 8 + (4 if flags & 1 else 0) + (4 if flags & 4 else 0)
    per = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
    _full(data, body, end, kind, head)
    if per:
        _count_fits(kind, count, per, end - body - head)
    elif count > file_size:
        raise _malformed(f"trun declares {count} samples in a {file_size}-byte file")
    if flags & 0x200:  # sample sizes: together they must fit in the file
        at = body + head
        field = 1 if flags & 0x100 else 0
        records = struct.iter_unpack(f">{per // 4}I", data[at : at + count * per])
        if sum(record[field] for record in records) > file_size:
            raise _malformed(f"trun's {count} samples are larger than the file")


_CHECKS: dict[str, _Check] = {
    **dict.fromkeys(_ENTRY_BYTES, _check_counted),
    "stsz": _check_stsz,
    "stz2": _check_stz2,
    "elst": _check_elst,
    "mdhd": _check_mdhd,
    "tkhd": _versioned(84, 96),
    "hdlr": _check_hdlr,
    "stsd": _check_stsd,
    "tfhd": _check_tfhd,
    "tfdt": _versioned(8, 12),
    "trun": _check_trun,
}


def check_tables(data: bytes, start: int, end: int, file_size: int, depth: int = 0) -> None:
    """Bounds-check every sample table, header and fragment run under data[start:end].

    Each declared entry count must fit in its box: FFmpeg sizes its allocations by those
    counts (unchecked, a trun claiming 89 million samples in a 230 KB file costs 1.2 GB).
    """
    if depth > 8:
        raise _malformed("boxes nested too deep")
    children = leading_boxes(data, start, end)
    if len(children) > 10_000:
        raise _malformed("too many boxes")
    filled = children[-1].end if children else start
    if any(data[filled:end]):  # only zero padding may follow the last whole child
        raise _malformed(f"a box inside {end - start} bytes does not parse")
    tracks = 0
    for kind, _, body, cend in children:
        if kind == "trak":
            tracks += 1
            if tracks > MAX_TRACKS:
                raise _malformed("too many tracks")
        if kind in _CONTAINERS:
            check_tables(data, body, cend, file_size, depth + 1)
        elif kind in _CHECKS:
            _CHECKS[kind](kind, data, body, cend, file_size)


def check_box(data: bytes, kind: str, file_size: int) -> None:
    """`data` is one whole top-level box of type `kind`: check its header and its tables."""
    boxes = leading_boxes(data, 0, len(data))
    if not boxes or boxes[0].kind != kind or boxes[0].end != len(data):
        raise _malformed(f"{kind} box does not parse whole")
    check_tables(data, boxes[0].body, boxes[0].end, file_size, 1)


def check_chain(f: SparseFile, start: int, end: int, checked: set[int]) -> None:
    """Bounds-check every moof on the top-level box chain from `start` up to `end`.

    Only headers already held are followed (no request for an mdat's header); a moof met is
    fetched whole (it is small) and checked once (`checked` holds the offsets done), before
    the demuxer can parse it.
    """
    size = f.size
    for _ in range(100_000):
        if start >= min(end, size) or f.gaps(start, start + 8):
            return
        raw = f.peek(start, 16) if not f.gaps(start, start + 16) else f.peek(start, 8)
        try:
            kind, length, _ = decode_header(raw, 0, size - start)
        except TruncatedHeader as error:
            if error.large:  # the 64-bit size is not held yet: the chain is followed no further
                return
            raise _malformed(f"truncated box header at {start}") from None
        if length < 8 or start + length > size:
            raise _malformed(f"box {kind!r} at {start} has size {length}")
        if kind == b"moof" and start not in checked:
            if length > MAX_MOOF_BYTES:
                raise _malformed(f"moof of {length} bytes")
            f.ensure(start, start + length)
            check_box(f.peek(start, length), "moof", size)
            checked.add(start)
        start += length
