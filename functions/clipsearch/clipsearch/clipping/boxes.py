"""Walking an MP4's top-level boxes with a few ranged reads, to find and fetch its index.

Layouts: `faststart` (moov before mdat), `moov_at_end` (mdat then moov), and `fragmented`
(an empty moov, then moof/mdat pairs, indexed by a trailing `mfra` or a `sidx`). Anything
else is refused up front rather than fed to the demuxer byte by byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.index import Box
from clipsearch.clipping.reader import SparseFile

HEAD_BYTES = 64 * 1024  # first read: ftyp, often the whole moov of a short faststart file
NEXT_HEADER = 64  # after a leading moov: the next boxes' headers (often `free`, then mdat)
TAIL_BYTES = 64 * 1024  # fragmented: a guess at the mfra size, read with mfro
MAX_BOXES = 64  # before moov; more means something we do not want to walk

_KNOWN = {
    "ftyp", "styp", "moov", "mdat", "moof", "mfra", "sidx", "free", "skip", "wide", "uuid",
    "meta", "pdin", "emsg", "prft", "udta",
}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    kind: str  # faststart | moov_at_end | fragmented
    boxes: tuple[Box, ...]


def _refuse(message: str) -> ClipUnavailable:
    return ClipUnavailable(ClipReason.UNSUPPORTED_CONTAINER, message)


def _header(f: SparseFile, pos: int, size: int) -> Box:
    raw = f.peek(pos, 16)
    if len(raw) < 8:
        raise _refuse(f"truncated box header at {pos}")
    length, kind_raw = struct.unpack_from(">I4s", raw)
    kind = kind_raw.decode("latin-1")
    if length == 1:
        if len(raw) < 16:
            raise _refuse(f"truncated large box header at {pos}")
        (length,) = struct.unpack_from(">Q", raw, 8)
    elif length == 0:
        length = size - pos
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
            # Past what we hold. Behind a big mdat, the rest of the file is usually just the
            # index: fetch it in one request when it is small enough.
            rest = size - pos
            if moov is None and rest <= max_index_bytes + TAIL_BYTES:
                f.ensure(pos, size)
            else:
                f.ensure(pos, pos + HEAD_BYTES)
        box = _header(f, pos, size)
        if not boxes and box.kind not in ("ftyp", "styp"):
            raise _refuse(f"first box is {box.kind!r}, not ftyp")
        if box.kind not in _KNOWN and len(box.kind) != 4:
            raise _refuse(f"unknown box {box.kind!r}")
        boxes.append(box)
        if box.kind == "moov":
            if box.size > max_index_bytes:
                raise ClipUnavailable(
                    ClipReason.INDEX_TOO_LARGE,
                    f"moov is {box.size} bytes, over the {max_index_bytes} cap",
                )
            moov = box
            seen_media = any(b.kind in ("mdat", "moof") for b in boxes)
            # Leading moov not held whole yet: take the next box's header along in the same
            # request. The first packets, which the demuxer probes, are not fetched: the open
            # answers them with blanks (`SparseFile.serving_blanks`).
            if f.gaps(box.offset, box.end):
                f.ensure(box.offset, min(size, box.end + (0 if seen_media else NEXT_HEADER)))
            if seen_media:
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


def _fragmented(f: SparseFile, boxes: list[Box], size: int, max_index_bytes: int) -> Layout:
    """Find the fragment index: a trailing mfra (via mfro), else a sidx we already walked."""
    tail_start = max(0, size - TAIL_BYTES)
    f.ensure(tail_start, size)
    mfro = f.peek(size - 16, 16)
    if len(mfro) == 16 and mfro[4:8] == b"mfro":
        (mfra_size,) = struct.unpack_from(">I", mfro, 12)
        if 16 <= mfra_size <= size:
            if mfra_size > max_index_bytes:
                raise ClipUnavailable(
                    ClipReason.INDEX_TOO_LARGE,
                    f"mfra is {mfra_size} bytes, over the {max_index_bytes} cap",
                )
            f.ensure(size - mfra_size, size)
            if f.peek(size - mfra_size + 4, 4) == b"mfra":
                boxes.append(Box("mfra", size - mfra_size, mfra_size))
                return Layout("fragmented", tuple(boxes))
    if any(b.kind == "sidx" for b in boxes):
        return Layout("fragmented", tuple(boxes))
    raise _refuse("fragmented MP4 without mfra or sidx (cannot seek without reading it all)")


@dataclass(frozen=True)
class FragmentPoint:
    """A random-access point: presentation time (track timescale) and its moof offset."""

    time: int
    moof_offset: int


def _children(data: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    out = []
    pos = start
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if length == 1:
            (length,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif length == 0:
            length = end - pos
        if length < header or pos + length > end:
            break
        out.append((kind.decode("latin-1"), pos + header, pos + length))
        pos += length
    return out


def parse_tfra(mfra: bytes) -> dict[int, list[FragmentPoint]]:
    """Random-access points per track id from an mfra box's bytes."""
    tracks: dict[int, list[FragmentPoint]] = {}
    for kind, body, end in _children(mfra, 0, len(mfra)):
        if kind != "mfra":
            continue
        for child, cbody, cend in _children(mfra, body, end):
            if child != "tfra" or cend - cbody < 16:
                continue
            version = mfra[cbody]
            track_id, sizes, count = struct.unpack_from(">III", mfra, cbody + 4)
            skip = ((sizes >> 4) & 3) + ((sizes >> 2) & 3) + (sizes & 3) + 3
            pos = cbody + 16
            points = []
            fmt = ">QQ" if version == 1 else ">II"
            step = struct.calcsize(fmt)
            for _ in range(count):
                if pos + step + skip > cend:
                    break
                time, offset = struct.unpack_from(fmt, mfra, pos)
                points.append(FragmentPoint(time, offset))
                pos += step + skip
            tracks[track_id] = points
    return tracks


@dataclass(frozen=True)
class Subsegment:
    """One sidx reference: start time and byte range of a run of fragments."""

    time: int
    offset: int
    size: int
    starts_with_sap: bool


def parse_sidx(data: bytes, box_offset: int) -> tuple[int, list[Subsegment]]:
    """(timescale, subsegments with absolute offsets) from one sidx box's bytes."""
    kinds = _children(data, 0, len(data))
    if not kinds or kinds[0][0] != "sidx":
        return 0, []
    _, body, end = kinds[0]
    version = data[body]
    _ref_id, timescale = struct.unpack_from(">II", data, body + 4)
    if version == 0:
        earliest, first_offset = struct.unpack_from(">II", data, body + 12)
        pos = body + 20
    else:
        earliest, first_offset = struct.unpack_from(">QQ", data, body + 12)
        pos = body + 28
    (count,) = struct.unpack_from(">H", data, pos + 2)
    pos += 4
    offset = box_offset + len(data) + first_offset
    time = earliest
    out = []
    for _ in range(count):
        if pos + 12 > end:
            break
        ref, duration, sap = struct.unpack_from(">III", data, pos)
        size = ref & 0x7FFFFFFF
        out.append(Subsegment(time, offset, size, bool(sap >> 31)))
        offset += size
        time += duration
        pos += 12
    return timescale, out
