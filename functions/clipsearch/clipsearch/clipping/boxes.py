"""Walking an MP4's top-level boxes with a few ranged reads, to find and fetch its index.

Layouts: `faststart` (moov before mdat), `moov_at_end` (mdat then moov), and `fragmented`
(an empty moov, then moof/mdat pairs, indexed by a trailing `mfra` or a `sidx`). Anything
else is refused up front rather than fed to the demuxer byte by byte.
"""

from __future__ import annotations

import array
import bisect
import itertools
import struct
import sys
from dataclasses import dataclass

from clipsearch.clipping.errors import ClipReason, ClipUnavailable
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
            # index: fetch it in one request when it is small enough. Behind anything else
            # (the `free` space robust muxers reserve before and after a moov near the start)
            # the rest is media: read on from the next header only.
            rest = size - pos
            behind_mdat = boxes[-1].kind == "mdat"
            if moov is None and behind_mdat and rest <= max_index_bytes + TAIL_BYTES:
                f.ensure(pos, size)
            else:
                f.ensure(pos, pos + (HEAD_BYTES if moov is None else NEXT_HEADER))
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
            check_box(f.peek(box.offset, box.size), "moov", size)
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
                if not mfra_is_sound(f.peek(size - mfra_size, mfra_size)):
                    raise _malformed("mfra fails its bounds check")
                boxes.append(Box("mfra", size - mfra_size, mfra_size))
                return Layout("fragmented", tuple(boxes))
    sidx = next((b for b in boxes if b.kind == "sidx"), None)
    if sidx is not None:
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
    raise _refuse("fragmented MP4 without mfra or sidx (cannot seek without reading it all)")


@dataclass(frozen=True)
class FragmentPoint:
    """A random-access point: presentation time (track timescale) and its moof offset."""

    time: int
    moof_offset: int


def _children(data: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    """(type, body start, end) of the boxes in data[start:end]; stops at the first bad header."""
    out = []
    pos = start
    end = min(end, len(data))
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if length == 1:
            if pos + 16 > end:
                break
            (length,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif length == 0:
            length = end - pos
        if length < header or pos + length > end:
            break
        out.append((kind.decode("latin-1"), pos + header, pos + length))
        pos += length
    return out


def _malformed(message: str) -> ClipUnavailable:
    return ClipUnavailable(ClipReason.MALFORMED_SOURCE, message)


def mfra_is_sound(mfra: bytes) -> bool:
    """Whether every tfra in this mfra is whole and its entries fit its size.

    FFmpeg's `use_mfra_for` trusts the mfra: a zero-size tfra makes it spin for minutes
    inside the open, so the option is only passed for an mfra that passes this check.
    """
    boxes = _children(mfra, 0, len(mfra))
    if len(boxes) != 1 or boxes[0][0] != "mfra" or boxes[0][2] != len(mfra):
        return False
    _, body, end = boxes[0]
    pos, seen = body, 0
    while pos < end:
        if pos + 8 > end:
            return False
        length, kind = struct.unpack_from(">I4s", mfra, pos)
        if length < 8 or pos + length > end:  # 0 (to the end) and 1 (64-bit) are refused too
            return False
        cbody, cend = pos + 8, pos + length
        if kind == b"tfra":
            if cend - cbody < 16:
                return False
            version = mfra[cbody]
            _track_id, sizes, count = struct.unpack_from(">III", mfra, cbody + 4)
            entry = (16 if version == 1 else 8) + ((sizes >> 4) & 3) + ((sizes >> 2) & 3)
            entry += (sizes & 3) + 3
            if count * entry > cend - cbody - 16:
                return False
        pos, seen = cend, seen + 1
    return seen > 0


def parse_tfra(mfra: bytes) -> dict[int, list[FragmentPoint]]:
    """Random-access points per track id from an mfra box's bytes (entries past the box end
    are dropped, not read)."""
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
            fmt = ">QQ" if version == 1 else ">II"
            step = struct.calcsize(fmt)
            count = min(count, (cend - pos) // (step + skip))
            points = []
            for _ in range(count):
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
    """(timescale, subsegments with absolute offsets) from one sidx box's bytes.

    A box too short for its fields gives (0, []); references past its end are dropped.
    """
    kinds = _children(data, 0, len(data))
    if not kinds or kinds[0][0] != "sidx":
        return 0, []
    _, body, end = kinds[0]
    if end - body < 4:
        return 0, []
    version = data[body]
    fixed = 4 + 8 + (8 if version == 0 else 16) + 4
    if end - body < fixed:
        return 0, []
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
    for _ in range(min(count, (end - pos) // 12)):
        ref, duration, sap = struct.unpack_from(">III", data, pos)
        size = ref & 0x7FFFFFFF
        out.append(Subsegment(time, offset, size, bool(sap >> 31)))
        offset += size
        time += duration
        pos += 12
    return timescale, out


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


def _check_table(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    if kind in ("stts", "ctts", "stss", "stsc", "stco", "co64"):
        _full(data, body, end, kind, 8)
        (count,) = struct.unpack_from(">I", data, body + 4)
        entry = {"stts": 8, "ctts": 8, "stss": 4, "stsc": 12, "stco": 4, "co64": 8}[kind]
        _count_fits(kind, count, entry, end - body - 8)
    elif kind == "stsz":
        _full(data, body, end, kind, 12)
        sample_size, count = struct.unpack_from(">II", data, body + 4)
        if sample_size == 0:
            _count_fits(kind, count, 4, end - body - 12)
        elif count * sample_size > file_size:
            raise _malformed(f"stsz: {count} samples of {sample_size} bytes exceed the file")
    elif kind == "stz2":
        _full(data, body, end, kind, 12)
        field, count = data[body + 7], struct.unpack_from(">I", data, body + 8)[0]
        if field not in (4, 8, 16):
            raise _malformed(f"stz2 field size {field}")
        if (count * field + 7) // 8 > end - body - 12:
            raise _malformed(f"stz2 declares {count} entries in {end - body - 12} bytes")
    else:
        _check_header(kind, data, body, end, file_size)


def _check_header(kind: str, data: bytes, body: int, end: int, file_size: int) -> None:
    if kind == "elst":
        version, _ = _full(data, body, end, kind, 8)
        (count,) = struct.unpack_from(">I", data, body + 4)
        _count_fits(kind, count, 20 if version == 1 else 12, end - body - 8)
    elif kind == "mdhd":
        version = data[body] if end > body else 0
        _full(data, body, end, kind, 36 if version == 1 else 24)
        (timescale,) = struct.unpack_from(">I", data, body + (20 if version == 1 else 12))
        if timescale == 0:
            raise _malformed("mdhd timescale is 0")
    elif kind == "tkhd":
        version = data[body] if end > body else 0
        _full(data, body, end, kind, 96 if version == 1 else 84)
    elif kind == "hdlr":
        _full(data, body, end, kind, 24)
    elif kind == "stsd":
        _full(data, body, end, kind, 8)
        (count,) = struct.unpack_from(">I", data, body + 4)
        entries = _children(data, body + 8, end)
        if count == 0 or count > len(entries) or any(e - b < 8 for _, b, e in entries[:count]):
            raise _malformed(f"stsd declares {count} entries, holds {len(entries)} whole")
    elif kind == "tfhd":
        _, flags = _full(data, body, end, kind, 8)
        optional = ((1, 8), (2, 4), (8, 4), (0x10, 4), (0x20, 4))
        need = 8 + sum(n for bit, n in optional if flags & bit)
        _full(data, body, end, kind, need)
    elif kind == "tfdt":
        version = data[body] if end > body else 0
        _full(data, body, end, kind, 12 if version == 1 else 8)
    elif kind == "trun":
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


def check_tables(data: bytes, start: int, end: int, file_size: int, depth: int = 0) -> None:
    """Bounds-check every sample table, header and fragment run under data[start:end].

    Each declared entry count must fit in its box: FFmpeg sizes its allocations by those
    counts (a trun claiming 89 million samples in a 230 KB file cost 1.2 GB before this).
    """
    if depth > 8:
        raise _malformed("boxes nested too deep")
    children = _children(data, start, end)
    if len(children) > 10_000:
        raise _malformed("too many boxes")
    filled = children[-1][2] if children else start
    if any(data[filled:end]):  # only zero padding may follow the last whole child
        raise _malformed(f"a box inside {end - start} bytes does not parse")
    tracks = 0
    for kind, body, cend in children:
        if kind == "trak":
            tracks += 1
            if tracks > MAX_TRACKS:
                raise _malformed("too many tracks")
        if kind in _CONTAINERS:
            check_tables(data, body, cend, file_size, depth + 1)
        else:
            _check_table(kind, data, body, cend, file_size)


def check_box(data: bytes, kind: str, file_size: int) -> None:
    """`data` is one whole top-level box of type `kind`: check its header and its tables."""
    boxes = _children(data, 0, len(data))
    if not boxes or boxes[0][0] != kind or boxes[0][2] != len(data):
        raise _malformed(f"{kind} box does not parse whole")
    _, body, end = boxes[0]
    check_tables(data, body, end, file_size, 1)


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
        if len(raw) < 8:
            raise _malformed(f"truncated box header at {start}")
        length, kind = struct.unpack_from(">I4s", raw)
        if length == 1:
            if len(raw) < 16:
                return
            (length,) = struct.unpack_from(">Q", raw, 8)
        elif length == 0:
            length = size - start
        if length < 8 or start + length > size:
            raise _malformed(f"box {kind!r} at {start} has size {length}")
        if kind == b"moof" and start not in checked:
            if length > MAX_MOOF_BYTES:
                raise _malformed(f"moof of {length} bytes")
            f.ensure(start, start + length)
            check_box(f.peek(start, length), "moof", size)
            checked.add(start)
        start += length


def _find(data: bytes, start: int, end: int, path: tuple[str, ...]) -> list[tuple[int, int]]:
    """Bodies (start, end) of the boxes at `path` under data[start:end]."""
    if not path:
        return [(start, end)]
    out = []
    for kind, body, cend in _children(data, start, end):
        if kind == path[0]:
            out += _find(data, body, cend, path[1:])
    return out


def video_sample_entry(moov: bytes) -> tuple[str, dict[str, bytes]]:
    """The first video track's sample entry type and its child boxes (codec configuration)."""
    for trak, trak_end in _find(moov, 8, len(moov), ("trak",)):
        handlers = _find(moov, trak, trak_end, ("mdia", "hdlr"))
        if not handlers or moov[handlers[0][0] + 8 : handlers[0][0] + 12] != b"vide":
            continue
        for body, end in _find(moov, trak, trak_end, ("mdia", "minf", "stbl", "stsd")):
            entries = _children(moov, body + 8, end)
            if not entries:
                continue
            kind, ebody, eend = entries[0]
            # A visual sample entry: 8 bytes of SampleEntry, 70 of VisualSampleEntry, then boxes.
            children = {k: moov[b:e] for k, b, e in _children(moov, ebody + 78, eend)}
            return kind, children
    return "", {}


_VP9_FORMATS = {
    (8, 0): "yuv420p", (8, 1): "yuv420p", (8, 2): "yuv422p", (8, 3): "yuv444p",
    (10, 0): "yuv420p10le", (10, 1): "yuv420p10le", (10, 2): "yuv422p10le",
    (10, 3): "yuv444p10le", (12, 0): "yuv420p12le", (12, 1): "yuv420p12le",
    (12, 2): "yuv422p12le", (12, 3): "yuv444p12le",
}  # fmt: skip


def vpcc_pixel_format(vpcc: bytes) -> str | None:
    """The pixel format a vpcC (version 1) declares; the muxer needs it to write one back."""
    if len(vpcc) < 12 or vpcc[0] != 1:
        return None
    depth, chroma = vpcc[6] >> 4, (vpcc[6] >> 1) & 7
    return _VP9_FORMATS.get((depth, chroma))


def random_access_nal(codec: str, sample: bytes, length_size: int) -> bool | None:
    """Whether a length-prefixed H.264/HEVC sample holds an IDR (H.264) or IRAP (HEVC) slice.

    `stss` may mark recovery points (x264 intra refresh) that a decoder cannot start from;
    None for other codecs or an unparsable sample.
    """
    if codec not in ("h264", "hevc") or length_size not in (1, 2, 4):
        return None
    pos = 0
    while pos + length_size < len(sample):
        n = int.from_bytes(sample[pos : pos + length_size], "big")
        pos += length_size
        if n == 0 or pos + n > len(sample):
            return None
        head = sample[pos]
        if codec == "h264":
            kind = head & 0x1F
            if kind == 5:
                return True
            if kind == 1:  # an I slice starts an open GOP; a P slice is a recovery point
                return _h264_slice_type(sample[pos + 1 : pos + min(n, 17)]) in (2, 4, 7, 9)
        else:
            kind = (head >> 1) & 0x3F
            if 16 <= kind <= 23:
                return True
            if kind < 16:
                return False
        pos += n
    return None


def separate_moofs(moov: bytes, moof: bytes) -> bool:
    """Whether fragments carry one track each (`separate_moof`) while the moov has several."""
    tracks = len(_find(moov, 8, len(moov), ("trak",)))
    trafs = len(_find(moof, 8, len(moof), ("traf",)))
    return tracks > 1 and trafs == 1


def has_fragments(moov: bytes) -> bool:
    """Whether a whole moov box announces movie fragments (holds an mvex)."""
    return bool(_find(moov, 8, len(moov), ("mvex",)))


def video_track_id(moov: bytes) -> int | None:
    """track_ID of the first video trak (tkhd), from a whole moov box's bytes."""
    for trak, trak_end in _find(moov, 8, len(moov), ("trak",)):
        handlers = _find(moov, trak, trak_end, ("mdia", "hdlr"))
        if not handlers or moov[handlers[0][0] + 8 : handlers[0][0] + 12] != b"vide":
            continue
        for body, end in _find(moov, trak, trak_end, ("tkhd",)):
            at = body + (20 if moov[body] == 1 else 12)
            if at + 4 <= end:
                return int(struct.unpack_from(">I", moov, at)[0])
    return None


def first_sample_times(moof: bytes, track_id: int) -> tuple[int, int] | None:
    """(tfdt base decode time, first sample's composition offset) of a track in one moof."""
    info = first_sample(moof, track_id)
    return None if info is None else (info[0], info[1])


def first_sample(moof: bytes, track_id: int) -> tuple[int, int, bool | None] | None:
    """(tfdt, first composition offset, first sample is sync or None) of a track in a moof."""
    for traf, traf_end in _find(moof, 8, len(moof), ("traf",)):
        tfhd = _find(moof, traf, traf_end, ("tfhd",))
        if not tfhd or tfhd[0][1] - tfhd[0][0] < 8:
            continue
        if struct.unpack_from(">I", moof, tfhd[0][0] + 4)[0] != track_id:
            continue
        tfdt = _find(moof, traf, traf_end, ("tfdt",))
        runs = _find(moof, traf, traf_end, ("trun",))
        if not tfdt or not runs:
            return None
        body, end = tfdt[0]
        if moof[body] == 1 and end - body >= 12:
            base = struct.unpack_from(">Q", moof, body + 4)[0]
        elif end - body >= 8:
            base = struct.unpack_from(">I", moof, body + 4)[0]
        else:
            return None
        sample_flags: int | None = None
        hbody, hend = tfhd[0]
        tf_flags = int.from_bytes(moof[hbody + 1 : hbody + 4], "big")
        if tf_flags & 0x20:  # default_sample_flags: the last optional field
            at = (
                hbody
                + 8
                + sum(n for bit, n in ((1, 8), (2, 4), (8, 4), (0x10, 4)) if tf_flags & bit)
            )
            if at + 4 <= hend:
                sample_flags = struct.unpack_from(">I", moof, at)[0]
        body, end = runs[0]
        version, flags = moof[body], int.from_bytes(moof[body + 1 : body + 4], "big")
        at = body + 8 + (4 if flags & 1 else 0)
        if flags & 4 and at + 4 <= end:
            sample_flags = struct.unpack_from(">I", moof, at)[0]
        at += 4 if flags & 4 else 0
        at += sum(4 for bit in (0x100, 0x200) if flags & bit)
        if flags & 0x400 and not flags & 4 and at + 4 <= end:
            sample_flags = struct.unpack_from(">I", moof, at)[0]
        at += 4 if flags & 0x400 else 0
        cts = 0
        if flags & 0x800 and at + 4 <= end:
            cts = struct.unpack_from(">i" if version == 1 else ">I", moof, at)[0]
        sync = None if sample_flags is None else not sample_flags & 0x10000
        return int(base), int(cts), sync
    return None


def _h264_slice_type(header: bytes) -> int | None:
    """slice_type from the first bytes of a slice header (two Exp-Golomb codes)."""
    bits = "".join(f"{b:08b}" for b in header.replace(b"\x00\x00\x03", b"\x00\x00"))
    pos, values = 0, []
    for _ in range(2):  # first_mb_in_slice, slice_type
        zeros = 0
        while pos < len(bits) and bits[pos] == "0":
            zeros, pos = zeros + 1, pos + 1
        if pos + zeros >= len(bits) or zeros > 16:
            return None
        values.append(int(bits[pos : pos + zeros + 1], 2) - 1)
        pos += zeros + 1
    return values[1]


@dataclass(frozen=True)
class CompositionOffsets:
    """The first video track's `ctts`: per-sample composition offsets, run-length coded.

    `ends[r]` is the number of samples covered by runs 0..r; `offsets[r]` the run's offset
    as stored (read as signed, as FFmpeg reads both versions).
    """

    ends: list[int]
    offsets: array.array[int]

    def at(self, sample: int) -> int | None:
        """The offset of sample `sample` (0-based), None past the table."""
        if sample < 0:
            return None
        run = bisect.bisect_right(self.ends, sample)
        if run >= len(self.offsets):
            return None
        offset = self.offsets[run]
        return offset - (1 << 32) if offset >= 1 << 31 else offset


def video_composition_offsets(moov: bytes) -> CompositionOffsets | None:
    """The first video trak's ctts (None without one, or one that fails its bounds check)."""
    for trak, trak_end in _find(moov, 8, len(moov), ("trak",)):
        handlers = _find(moov, trak, trak_end, ("mdia", "hdlr"))
        if not handlers or moov[handlers[0][0] + 8 : handlers[0][0] + 12] != b"vide":
            continue
        for body, end in _find(moov, trak, trak_end, ("mdia", "minf", "stbl", "ctts")):
            if end - body < 8:
                return None
            (count,) = struct.unpack_from(">I", moov, body + 4)
            if count == 0 or count * 8 > end - body - 8:
                return None
            table = array.array("I", moov[body + 8 : body + 8 + count * 8])
            if sys.byteorder == "little":
                table.byteswap()
            return CompositionOffsets(list(itertools.accumulate(table[0::2])), table[1::2])
        return None
    return None


@dataclass(frozen=True)
class LastSample:
    """A track's last sample: where it lies in the file, and its stts duration (`delta`, in
    the track's `timescale`)."""

    offset: int
    delta: int
    timescale: int


def last_samples(moov: bytes) -> dict[int, LastSample]:
    """Per track_ID, its last sample (from stts, stsz, stsc, stco/co64 of a whole moov box's
    bytes): a handful of table entries read, whatever the track's length. A track whose
    tables are missing or do not add up is left out."""
    out: dict[int, LastSample] = {}
    for trak, trak_end in _find(moov, 8, len(moov), ("trak",)):
        try:
            found = _last_sample(moov, trak, trak_end)
        except (struct.error, IndexError, ValueError):
            found = None
        if found is not None:
            out[found[0]] = found[1]
    return out


def _last_sample(moov: bytes, trak: int, trak_end: int) -> tuple[int, LastSample] | None:
    def one(*path: str) -> tuple[int, int] | None:
        found = _find(moov, trak, trak_end, path)
        return found[0] if len(found) == 1 else None

    tkhd, mdhd = one("tkhd"), one("mdia", "mdhd")
    stbl = ("mdia", "minf", "stbl")
    stts, stsz, stsc = one(*stbl, "stts"), one(*stbl, "stsz"), one(*stbl, "stsc")
    stco, co64 = one(*stbl, "stco"), one(*stbl, "co64")
    if tkhd is None or mdhd is None or stts is None or stsz is None or stsc is None:
        return None
    (track_id,) = struct.unpack_from(">I", moov, tkhd[0] + (20 if moov[tkhd[0]] == 1 else 12))
    (timescale,) = struct.unpack_from(">I", moov, mdhd[0] + (20 if moov[mdhd[0]] == 1 else 12))
    (entries,) = struct.unpack_from(">I", moov, stts[0] + 4)
    size, count = struct.unpack_from(">II", moov, stsz[0] + 4)
    (runs,) = struct.unpack_from(">I", moov, stsc[0] + 4)
    if not (timescale and entries and count and runs) or (stco is None) == (co64 is None):
        return None
    if stts[0] + 8 + 8 * entries > stts[1] or stsc[0] + 8 + 12 * runs > stsc[1]:
        return None
    _, delta = struct.unpack_from(">II", moov, stts[0] + 8 + 8 * (entries - 1))
    table, fmt, step = (stco, ">I", 4) if stco is not None else (co64, ">Q", 8)
    assert table is not None
    (chunks,) = struct.unpack_from(">I", moov, table[0] + 4)
    if not chunks or table[0] + 8 + step * chunks > table[1]:
        return None
    (chunk_offset,) = struct.unpack_from(fmt, moov, table[0] + 8 + step * (chunks - 1))
    first_chunk, per_chunk, _ = struct.unpack_from(">III", moov, stsc[0] + 8 + 12 * (runs - 1))
    if not 0 < per_chunk <= count or first_chunk > chunks:
        return None
    # the last chunk holds the last run's `per_chunk` samples, the track's last ones
    if not size and stsz[0] + 12 + 4 * count > stsz[1]:
        return None
    before = [
        size or struct.unpack_from(">I", moov, stsz[0] + 12 + 4 * i)[0]
        for i in range(count - per_chunk, count - 1)
    ]
    return track_id, LastSample(chunk_offset + sum(before), delta, timescale)
