"""A fragmented source's indexes: the `mfra`'s random-access points, a `sidx`'s subsegments,
and what one `moof` says of a track's first sample.

Pure: bytes in, values out. Entries past a box's end are dropped, not read; a box that does
not parse gives nothing (the bounds checks in `boxes` judge the boxes the demuxer reads).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from clipsearch.clipping.boxiter import BadBox, boxes_in, find_path, leading_boxes


@dataclass(frozen=True)
class FragmentPoint:
    """A random-access point: presentation time (track timescale) and its moof offset."""

    time: int
    moof_offset: int


@dataclass(frozen=True)
class Subsegment:
    """One sidx reference: start time and byte range of a run of fragments."""

    time: int
    offset: int
    size: int
    starts_with_sap: bool


def _tfra_entry_bytes(sizes: int) -> int:
    """Bytes per tfra entry after its time and moof offset: traf, trun and sample numbers."""
    return ((sizes >> 4) & 3) + ((sizes >> 2) & 3) + (sizes & 3) + 3


def mfra_is_sound(mfra: bytes) -> bool:
    """Whether every tfra in this mfra is whole and its entries fit its size.

    FFmpeg's `use_mfra_for` trusts the mfra: a zero-size tfra makes it spin for minutes
    inside the open, so the option is only passed for an mfra that passes this check.
    """
    boxes = leading_boxes(mfra, 0, len(mfra))
    if len(boxes) != 1 or boxes[0].kind != "mfra" or boxes[0].end != len(mfra):
        return False
    try:
        children = boxes_in(mfra, boxes[0].body, boxes[0].end)
    except BadBox:
        return False
    for child in children:
        if struct.unpack_from(">I", mfra, child.start)[0] != child.end - child.start:
            return False  # a size of 0 (to the end) or 1 (64-bit) is refused too
        if child.kind == "tfra" and not _tfra_fits(mfra, child.body, child.end):
            return False
    return bool(children)


def _tfra_fits(mfra: bytes, body: int, end: int) -> bool:
    if end - body < 16:
        return False
    version = mfra[body]
    _track_id, sizes, count = struct.unpack_from(">III", mfra, body + 4)
    entry = (16 if version == 1 else 8) + _tfra_entry_bytes(sizes)
    return bool(count * entry <= end - body - 16)


def parse_tfra(mfra: bytes) -> dict[int, list[FragmentPoint]]:
    """Random-access points per track id from an mfra box's bytes (entries past the box end
    are dropped, not read)."""
    tracks: dict[int, list[FragmentPoint]] = {}
    for cbody, cend in find_path(mfra, 0, len(mfra), ("mfra", "tfra")):
        if cend - cbody < 16:
            continue
        version = mfra[cbody]
        track_id, sizes, count = struct.unpack_from(">III", mfra, cbody + 4)
        skip = _tfra_entry_bytes(sizes)
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


def parse_sidx(data: bytes, box_offset: int) -> tuple[int, list[Subsegment]]:
    """(timescale, subsegments with absolute offsets) from one sidx box's bytes.

    A box too short for its fields gives (0, []); references past its end are dropped.
    """
    kinds = leading_boxes(data, 0, len(data))
    if not kinds or kinds[0].kind != "sidx":
        return 0, []
    body, end = kinds[0].body, kinds[0].end
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


def separate_moofs(moov: bytes, moof: bytes) -> bool:
    """Whether fragments carry one track each (`separate_moof`) while the moov has several."""
    tracks = len(find_path(moov, 8, len(moov), ("trak",)))
    trafs = len(find_path(moof, 8, len(moof), ("traf",)))
    return tracks > 1 and trafs == 1


def has_fragments(moov: bytes) -> bool:
    """Whether a whole moov box announces movie fragments (holds an mvex)."""
    return bool(find_path(moov, 8, len(moov), ("mvex",)))


def first_sample_times(moof: bytes, track_id: int) -> tuple[int, int] | None:
    """(tfdt base decode time, first sample's composition offset) of a track in one moof."""
    info = first_sample(moof, track_id)
    return None if info is None else (info[0], info[1])


def first_sample(moof: bytes, track_id: int) -> tuple[int, int, bool | None] | None:
    """(tfdt, first composition offset, first sample is sync or None) of a track in a moof."""
    for traf, traf_end in find_path(moof, 8, len(moof), ("traf",)):
        tfhd = find_path(moof, traf, traf_end, ("tfhd",))
        if not tfhd or tfhd[0][1] - tfhd[0][0] < 8:
            continue
        if struct.unpack_from(">I", moof, tfhd[0][0] + 4)[0] != track_id:
            continue
        tfdt = find_path(moof, traf, traf_end, ("tfdt",))
        runs = find_path(moof, traf, traf_end, ("trun",))
        if not tfdt or not runs:
            return None
        base = _base_decode_time(moof, *tfdt[0])
        if base is None:
            return None
        cts, sample_flags = _first_run_sample(moof, *runs[0], _default_flags(moof, *tfhd[0]))
        sync = None if sample_flags is None else not sample_flags & 0x10000
        return int(base), int(cts), sync
    return None


def _base_decode_time(moof: bytes, body: int, end: int) -> int | None:
    """A tfdt's base media decode time (version 0 or 1), None when the box is too short."""
    if moof[body] == 1 and end - body >= 12:
        return int(struct.unpack_from(">Q", moof, body + 4)[0])
    if end - body >= 8:
        return int(struct.unpack_from(">I", moof, body + 4)[0])
    return None


def _default_flags(moof: bytes, body: int, end: int) -> int | None:
    """A tfhd's default_sample_flags (its last optional field), None without them."""
    tf_flags = int.from_bytes(moof[body + 1 : body + 4], "big")
    if not tf_flags & 0x20:
        return None
    optional = ((1, 8), (2, 4), (8, 4), (0x10, 4))
    at = body + 8 + sum(n for bit, n in optional if tf_flags & bit)
    return int(struct.unpack_from(">I", moof, at)[0]) if at + 4 <= end else None


def _first_run_sample(
    moof: bytes, body: int, end: int, sample_flags: int | None
) -> tuple[int, int | None]:
    """(composition offset, sample flags) of a trun's first sample; the flags default to
    `sample_flags` (the tfhd's)."""
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
    return int(cts), sample_flags
