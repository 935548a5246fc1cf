"""A fragment's own sample table: where each sample of a track lies and when it is decoded.

FFmpeg's mov demuxer gives a fragmented source's packets times it infers, and after a seek
they are not always the source's: it starts a fragment at its `tfra` time where the muxer
wrote a presentation time there (FFmpeg 5.1's CMAF audio: one AAC frame early, so a packet at
each join was taken for a repeat), and takes a packet's duration from the next fragment it
happens to have read (the last packet of a file, or of a fragment before one it skipped).
The `tfdt` and `trun` of the moof that holds a sample say exactly: its byte offset (the
packet's `pos`), its decode time and its duration. These are parsed from moofs the cut has
already read (the bounds were checked by `boxes.check_chain` before FFmpeg saw them).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from clipsearch.clipping.boxiter import leading_boxes

# tfhd flags (ISO/IEC 14496-12 8.8.7)
_BASE_DATA_OFFSET = 0x1
_SAMPLE_DESCRIPTION = 0x2
_DEFAULT_DURATION = 0x8
_DEFAULT_SIZE = 0x10
_DEFAULT_BASE_IS_MOOF = 0x20000
# trun flags (8.8.8)
_DATA_OFFSET = 0x1
_FIRST_SAMPLE_FLAGS = 0x4
_SAMPLE_DURATION = 0x100
_SAMPLE_SIZE = 0x200
_SAMPLE_FLAGS = 0x400
_SAMPLE_CTS = 0x800


@dataclass(frozen=True)
class TrackDefaults:
    """A track's `trex` defaults and the shift FFmpeg applies to its times (its edit list)."""

    duration: int
    size: int
    time_offset: int  # subtracted from tfdt: the first edit's media time less its empty edits


_NO_DEFAULTS = TrackDefaults(0, 0, 0)


@dataclass(frozen=True)
class FragmentSample:
    decode_time: int  # the track's timescale, on the demuxer's timeline (less time_offset)
    duration: int


def _boxes(data: bytes, start: int, end: int, kind: str) -> Iterator[tuple[int, int]]:
    for name, _, body, box_end in leading_boxes(data, start, end):
        if name == kind:
            yield body, box_end


def track_defaults(moov: bytes) -> dict[int, TrackDefaults]:
    """Per track_ID: trex's default duration and size, and the edit list's time offset.

    FFmpeg starts a track's timeline at the first edit's media time less the empty edits
    before it (mvhd timescale, rescaled): `time_offset`, taken off every tfdt.
    """
    out: dict[int, TrackDefaults] = {}
    body = 8
    movie_scale = 0
    for mvhd, mvhd_end in _boxes(moov, body, len(moov), "mvhd"):
        at = mvhd + (20 if moov[mvhd] == 1 else 12)
        if at + 4 <= mvhd_end:
            (movie_scale,) = struct.unpack_from(">I", moov, at)
    trex: dict[int, tuple[int, int]] = {}
    for mvex, mvex_end in _boxes(moov, body, len(moov), "mvex"):
        for box, box_end in _boxes(moov, mvex, mvex_end, "trex"):
            if box_end - box >= 24:
                track, _index, duration, size = struct.unpack_from(">IIII", moov, box + 4)
                trex[track] = (duration, size)
    for trak, trak_end in _boxes(moov, body, len(moov), "trak"):
        track_id = None
        for tkhd, tkhd_end in _boxes(moov, trak, trak_end, "tkhd"):
            at = tkhd + (20 if moov[tkhd] == 1 else 12)
            if at + 4 <= tkhd_end:
                (track_id,) = struct.unpack_from(">I", moov, at)
        if track_id is None:
            continue
        media_scale = 0
        for mdia, mdia_end in _boxes(moov, trak, trak_end, "mdia"):
            for mdhd, mdhd_end in _boxes(moov, mdia, mdia_end, "mdhd"):
                at = mdhd + (20 if moov[mdhd] == 1 else 12)
                if at + 4 <= mdhd_end:
                    (media_scale,) = struct.unpack_from(">I", moov, at)
        duration, size = trex.get(track_id, (0, 0))
        out[track_id] = TrackDefaults(
            duration, size, _time_offset(moov, trak, trak_end, movie_scale, media_scale)
        )
    return out


def _time_offset(moov: bytes, trak: int, trak_end: int, movie_scale: int, media_scale: int) -> int:
    empty = 0
    for edts, edts_end in _boxes(moov, trak, trak_end, "edts"):
        for elst, elst_end in _boxes(moov, edts, edts_end, "elst"):
            version = moov[elst]
            (count,) = struct.unpack_from(">I", moov, elst + 4)
            fmt, step = (">Qq", 20) if version == 1 else (">Ii", 12)
            for n in range(count):
                at = elst + 8 + n * step
                if at + step > elst_end:
                    break
                duration, media_time = struct.unpack_from(fmt, moov, at)
                if media_time == -1:
                    empty += duration
                    continue
                if movie_scale and media_scale:
                    return int(media_time) - empty * media_scale // movie_scale
                return int(media_time)
    return 0


def _traf_header(
    moof: bytes,
    traf: int,
    traf_end: int,
    moof_offset: int,
    implicit: int,
    defaults: Mapping[int, TrackDefaults],
) -> tuple[int, int, int, int] | None:
    """(track_ID, base data offset, default duration, default size) from a traf's tfhd."""
    tfhd = next(_boxes(moof, traf, traf_end, "tfhd"), None)
    if tfhd is None or tfhd[1] - tfhd[0] < 8:
        return None
    flags = int.from_bytes(moof[tfhd[0] + 1 : tfhd[0] + 4], "big")
    (track,) = struct.unpack_from(">I", moof, tfhd[0] + 4)
    at = tfhd[0] + 8
    base = implicit
    if flags & _BASE_DATA_OFFSET:
        (base,) = struct.unpack_from(">Q", moof, at)
        at += 8
    elif flags & _DEFAULT_BASE_IS_MOOF:
        base = moof_offset
    at += 4 if flags & _SAMPLE_DESCRIPTION else 0
    trex = defaults.get(track, _NO_DEFAULTS)
    duration, size = trex.duration, trex.size
    if flags & _DEFAULT_DURATION:
        (duration,) = struct.unpack_from(">I", moof, at)
        at += 4
    if flags & _DEFAULT_SIZE:
        (size,) = struct.unpack_from(">I", moof, at)
    return int(track), int(base), int(duration), int(size)


def _tfdt(moof: bytes, traf: int, traf_end: int) -> int | None:
    tfdt = next(_boxes(moof, traf, traf_end, "tfdt"), None)
    if tfdt is None:
        return None
    body = tfdt[0]
    at, fmt = (body + 4, ">Q") if moof[body] == 1 else (body + 4, ">I")
    return int(struct.unpack_from(fmt, moof, at)[0])


def _samples(
    moof: bytes, moof_offset: int, defaults: Mapping[int, TrackDefaults]
) -> Iterator[tuple[int, int, int, int | None, int]]:
    """(track_ID, byte offset, size, decode time or None, duration) of every sample."""
    implicit = moof_offset  # a traf's data follows the previous traf's, the first the moof's
    for traf, traf_end in _boxes(moof, 8, len(moof), "traf"):
        header = _traf_header(moof, traf, traf_end, moof_offset, implicit, defaults)
        if header is None:
            continue
        track, base, default_duration, default_size = header
        decode_time = _tfdt(moof, traf, traf_end)
        data = base
        for trun, trun_end in _boxes(moof, traf, traf_end, "trun"):
            run_flags = int.from_bytes(moof[trun + 1 : trun + 4], "big")
            (count,) = struct.unpack_from(">I", moof, trun + 4)
            at = trun + 8
            if run_flags & _DATA_OFFSET:
                (offset,) = struct.unpack_from(">i", moof, at)
                data = base + offset
                at += 4
            at += 4 if run_flags & _FIRST_SAMPLE_FLAGS else 0
            fields = [
                bit
                for bit in (_SAMPLE_DURATION, _SAMPLE_SIZE, _SAMPLE_FLAGS, _SAMPLE_CTS)
                if run_flags & bit
            ]
            if at + 4 * len(fields) * count > trun_end:
                break  # check_chain refuses this before FFmpeg sees it; nothing to say here
            for _ in range(count):
                duration, size = default_duration, default_size
                for bit in fields:
                    (value,) = struct.unpack_from(">I", moof, at)
                    at += 4
                    if bit == _SAMPLE_DURATION:
                        duration = value
                    elif bit == _SAMPLE_SIZE:
                        size = value
                yield track, data, size, decode_time, duration
                if decode_time is not None:
                    decode_time += duration
                data += size
        implicit = data


def fragment_samples(
    moof: bytes, moof_offset: int, track_id: int, defaults: Mapping[int, TrackDefaults]
) -> dict[int, FragmentSample]:
    """{byte offset in the file: sample} of `track_id`'s samples in one whole moof box.

    A traf without a tfdt gives nothing (its times follow whatever the demuxer read before:
    nothing here can say them).
    """
    shift = defaults.get(track_id, _NO_DEFAULTS).time_offset
    return {
        pos: FragmentSample(decode_time - shift, duration)
        for track, pos, _size, decode_time, duration in _samples(moof, moof_offset, defaults)
        if track == track_id and decode_time is not None
    }


def samples_span(
    moof: bytes, moof_offset: int, defaults: Mapping[int, TrackDefaults]
) -> tuple[int, int]:
    """(first byte, byte just past the last) of the samples this moof's trafs place: inside
    the mdat that follows it, in a well-formed file."""
    spans = [(pos, pos + size) for _t, pos, size, _d, _n in _samples(moof, moof_offset, defaults)]
    if not spans:
        return moof_offset + len(moof), moof_offset + len(moof)
    return min(a for a, _ in spans), max(b for _, b in spans)
