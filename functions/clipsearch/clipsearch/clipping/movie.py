"""A movie's sample tables as compact arrays: the model every cut plans from, and its parse.

FFmpeg's demuxer builds ~57 bytes of index per sample on every open, so a cut from a 10 h
source that let it parse the 48 MB moov paid that per event. Here the moov is parsed once
into arrays (4 bytes per sample for sizes, 4 for composition offsets when the track has
them, a few bytes per chunk and per run); `moov.py` builds from them the small moov each
cut hands FFmpeg, and `sidecar.py` stores them.

Pure: bytes in, values out; no I/O.
"""

from __future__ import annotations

import bisect
import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from clipsearch.clipping.boxiter import box
from clipsearch.clipping.moov import rebuild, track_tables
from clipsearch.clipping.samples import (
    Ints,
    Runs,
    Unsupported,
    Where,
    children,
    chunk_map,
    chunk_offsets,
    member,
    read_ctts,
    read_groups,
    read_sdtp,
    read_sizes,
    read_stts,
    sample_numbers,
)

# Per-sample tables we rebuild; every other stbl child is copied as it is, if we know it.
_TABLES = {"stts", "ctts", "stss", "stps", "stsc", "stsz", "stz2", "stco", "co64", "sdtp", "sbgp"}
_KEPT = {"stsd", "sgpd", "cslg"}
MAX_TRACKS = 64


@dataclass(frozen=True, eq=False)
class Track:
    """One trak's sample tables, as arrays (sample numbers are 0-based).

    Per sample: a size (4 bytes) and, with B-frames, a composition offset (2 or 4). Per
    chunk: the low 32 bits of its offset (the high ones change a few times in a > 4 GiB
    file) and, when stsc changes its samples-per-chunk often, the chunk's first sample.
    """

    track_id: int
    handler: str  # "vide", "soun", ...
    timescale: int
    sizes: Ints  # per sample
    chunk_low: Ints  # per chunk: its offset's low 32 bits
    high_from: Ints  # chunks where the offsets' high 32 bits change, ascending
    high_value: Ints  # ... and their new high bits
    chunk_first: Ints  # dense: per chunk, its first sample (then the count);
    # runs (when `runs_chunk` is not empty): unused, and the stsc runs below say it
    runs_chunk: Ints  # per stsc run: its first chunk
    runs_sample: Ints  # ... its first sample
    runs_per_chunk: Ints  # ... its samples per chunk
    described_from: Ints  # chunks where the sample description changes
    described_as: Ints  # ... and its new index (1-based, as in stsc)
    stts: Runs  # values: the run's sample delta
    stts_dts: Ints  # decode time of each run's first sample
    ctts: Runs | None  # composition offsets (ctts as stored, run-length), or none
    ctts_version: int
    sync: Ints | None  # sync samples, 1-based as stored; None: all are
    partial_sync: Ints | None  # stps, 1-based
    sdtp: bytes | None  # one byte per sample
    groups: tuple[tuple[bytes, Runs], ...]  # sbgp: (its header after the box type, runs)
    edit_shift: int  # what the edit list adds to a decode time (track timescale)
    edit_media_time: int  # where the edit starts in the media (0 without one)

    @property
    def samples(self) -> int:
        return len(self.sizes)

    def arrays(self) -> tuple[Ints | None, ...]:
        return (
            self.sizes, self.chunk_low, self.high_from, self.high_value, self.chunk_first,
            self.runs_chunk, self.runs_sample, self.runs_per_chunk, self.described_from,
            self.described_as, self.stts.starts, self.stts.values, self.stts_dts,
            self.ctts.starts if self.ctts else None, self.ctts.values if self.ctts else None,
            self.sync, self.partial_sync,
        )  # fmt: skip

    @property
    def nbytes(self) -> int:
        total = sum(a.itemsize * len(a) for a in self.arrays() if a is not None)
        total += len(self.sdtp or b"")
        return total + sum(r.starts.itemsize * len(r.starts) * 2 for _, r in self.groups)

    def dts(self, sample: int) -> int:
        """Decode time (track timescale, as stored: before the edit list)."""
        run = self.stts.run_of(sample)
        return self.stts_dts[run] + (sample - self.stts.starts[run]) * self.stts.values[run]

    def duration_of(self, sample: int) -> int:
        return self.stts.values[self.stts.run_of(sample)]

    def composition(self, sample: int) -> int:
        if self.ctts is None:
            return 0
        return self.ctts.values[min(self.ctts.run_of(sample), len(self.ctts.values) - 1)]

    def sample_at(self, dts: int) -> int:
        """The last sample decoded at or before `dts` (0 when none is)."""
        run = min(bisect.bisect_right(self.stts_dts, dts), len(self.stts.values)) - 1
        if run < 0:
            return 0
        delta = self.stts.values[run]
        within = (dts - self.stts_dts[run]) // delta if delta else 0
        last = self.stts.starts[run + 1] - 1
        return max(0, min(self.stts.starts[run] + within, last))

    def is_sync(self, sample: int) -> bool:
        return self.sync is None or member(self.sync, sample + 1)

    def sync_at_or_before(self, sample: int) -> int | None:
        if self.sync is None:
            return sample
        i = bisect.bisect_right(self.sync, sample + 1) - 1
        return self.sync[i] - 1 if i >= 0 else None

    def sync_after(self, sample: int) -> int | None:
        if self.sync is None:
            return sample + 1 if sample + 1 < self.samples else None
        i = bisect.bisect_right(self.sync, sample + 1)
        return self.sync[i] - 1 if i < len(self.sync) else None

    def _chunk_of(self, sample: int) -> tuple[int, int]:
        """(the chunk holding `sample`, the chunk's first sample)."""
        if not self.runs_chunk:
            chunk = bisect.bisect_right(self.chunk_first, sample) - 1
            return chunk, self.chunk_first[chunk]
        run = bisect.bisect_right(self.runs_sample, sample) - 1
        per = self.runs_per_chunk[run]
        within = (sample - self.runs_sample[run]) // per
        return self.runs_chunk[run] + within, self.runs_sample[run] + within * per

    def offset(self, sample: int) -> int:
        chunk, first = self._chunk_of(sample)
        high = bisect.bisect_right(self.high_from, chunk) - 1
        base = self.high_value[high] << 32 if high >= 0 else 0
        return base + self.chunk_low[chunk] + sum(self.sizes[first:sample])

    def description(self, sample: int) -> int:
        chunk, _ = self._chunk_of(sample)
        return self.described_as[max(bisect.bisect_right(self.described_from, chunk) - 1, 0)]


@dataclass(frozen=True, eq=False)
class Movie:
    """A whole moov as compact tables plus the boxes we copy verbatim (`skeleton`)."""

    skeleton: bytes  # the moov with every per-sample table removed from each stbl
    tracks: tuple[Track, ...]
    movie_timescale: int

    @property
    def nbytes(self) -> int:
        return len(self.skeleton) + sum(t.nbytes for t in self.tracks)

    @property
    def samples(self) -> int:
        return sum(t.samples for t in self.tracks)

    def synthesize(self, windows: Sequence[tuple[int, int] | None]) -> bytes:
        """A moov whose tracks hold the samples of `windows[t]` = (first, last) and the few
        the demuxer reads at the ends and at the edit (`moov.track_tables`).

        Each gap becomes placeholder samples (never read: a cut that reaches one is done
        again the whole way) spanning the decode time left out, so every kept sample keeps
        its decode time and its byte offset in the source. A track whose window is None
        keeps only those few (a track no clip uses).
        """
        tables = [track_tables(t, w) for t, w in zip(self.tracks, windows, strict=True)]
        return rebuild(self.skeleton, tables)


# -- parsing ---------------------------------------------------------------------------


def parse_movie(data: bytes | memoryview, file_size: int) -> Movie:
    """Compact tables for a whole `moov` box; Unsupported when we cannot reproduce it exactly.

    Reads through a memoryview: a 10 h source's moov is 48 MB, not to be copied. The readers
    take fields at fixed offsets and build typed arrays: a box too short for its fields, or
    values no array holds, end in the errors Python reports for them, and such a moov is one
    the tables cannot reproduce (FFmpeg's own parse, behind `boxes.check_box`, then decides).
    """
    try:
        return _parse_movie(memoryview(data), file_size)
    except (struct.error, IndexError, ValueError, ArithmeticError) as error:
        raise Unsupported(f"a table the tables cannot hold ({type(error).__name__})") from None


def _parse_movie(moov: memoryview, file_size: int) -> Movie:
    top = children(moov, 0, len(moov))
    if len(top) != 1 or top[0][0] != "moov":
        raise Unsupported("not one whole moov box")
    _, _, body, end = top[0]
    movie_timescale = 0
    tracks: list[Track] = []
    skeleton: list[bytes | memoryview] = []
    for kind, start, cbody, cend in children(moov, body, end):
        if kind in ("mvex", "cmov"):
            raise Unsupported(f"a moov with {kind}")
        if kind == "mvhd":
            version = moov[cbody]
            at = cbody + (20 if version == 1 else 12)
            (movie_timescale,) = struct.unpack_from(">I", moov, at)
            skeleton.append(moov[start:cend])
        elif kind == "trak":
            track, trak_skeleton = _parse_trak(moov, start, cbody, cend, movie_timescale, file_size)
            tracks.append(track)
            skeleton.append(trak_skeleton)
        else:
            skeleton.append(moov[start:cend])
    if not tracks or len(tracks) > MAX_TRACKS or movie_timescale <= 0:
        raise Unsupported("no tracks, too many, or no movie timescale")
    return Movie(box("moov", *skeleton), tuple(tracks), movie_timescale)


def _find(data: memoryview | bytes, start: int, end: int, kind: str) -> tuple[int, int, int] | None:
    found = [(s, b, e) for k, s, b, e in children(data, start, end) if k == kind]
    if len(found) > 1:
        raise Unsupported(f"two {kind} boxes")
    return found[0] if found else None


def _parse_trak(
    moov: memoryview, start: int, body: int, end: int, movie_timescale: int, file_size: int
) -> tuple[Track, bytes]:
    tkhd = _find(moov, body, end, "tkhd")
    mdia = _find(moov, body, end, "mdia")
    if tkhd is None or mdia is None:
        raise Unsupported("a trak without tkhd or mdia")
    track_id = struct.unpack_from(">I", moov, tkhd[1] + (20 if moov[tkhd[1]] == 1 else 12))[0]
    mdhd = _find(moov, mdia[1], mdia[2], "mdhd")
    hdlr = _find(moov, mdia[1], mdia[2], "hdlr")
    minf = _find(moov, mdia[1], mdia[2], "minf")
    if mdhd is None or hdlr is None or minf is None:
        raise Unsupported("an mdia without mdhd, hdlr or minf")
    timescale = struct.unpack_from(">I", moov, mdhd[1] + (20 if moov[mdhd[1]] == 1 else 12))[0]
    handler = bytes(moov[hdlr[1] + 8 : hdlr[1] + 12]).decode("latin-1")
    stbl = _find(moov, minf[1], minf[2], "stbl")
    if stbl is None or timescale <= 0:
        raise Unsupported("a track without stbl or timescale")
    boxes: dict[str, tuple[int, int]] = {}
    groups: list[tuple[int, int]] = []
    kept: list[bytes] = []
    for kind, s, b, e in children(moov, stbl[1], stbl[2]):
        if kind == "sbgp":
            groups.append((b, e))
        elif kind in _TABLES:
            if kind in boxes:
                raise Unsupported(f"two {kind} boxes")
            boxes[kind] = (b, e)
        elif kind in _KEPT:
            kept.append(bytes(moov[s:e]))
        else:
            raise Unsupported(f"an stbl with {kind}")
    track = _tables(moov, boxes, groups, track_id, handler, timescale, file_size)
    track = _with_edit(track, *_edit(moov, body, end, timescale, movie_timescale))
    skeleton = _replace_stbl(moov, start, end, (stbl[0], stbl[2]), box("stbl", *kept))
    return track, skeleton


def _replace_stbl(
    moov: memoryview, start: int, end: int, stbl: tuple[int, int], new: bytes
) -> bytes:
    """The trak's bytes with its stbl replaced; the containers' sizes rewritten to match."""

    def walk(s: int, e: int) -> bytes:
        kind, _, body, cend = children(moov, s, e)[0]
        if (s, e) == stbl:
            return new
        parts = []
        for _, cs, _, ce in children(moov, body, cend):
            inside = cs <= stbl[0] and stbl[1] <= ce
            parts.append(walk(cs, ce) if inside else moov[cs:ce])
        return box(kind, *parts)

    return walk(start, end)


def _tables(
    moov: memoryview,
    boxes: dict[str, Where],
    groups: list[Where],
    track_id: int,
    handler: str,
    timescale: int,
    file_size: int,
) -> Track:
    """The track's arrays from its stbl's tables (`boxes`, by type) and sbgp boxes."""
    for need in ("stts", "stsc"):
        if need not in boxes:
            raise Unsupported(f"no {need}")
    sizes = read_sizes(moov, boxes)
    n = len(sizes)
    low, high_from, high_value = chunk_offsets(moov, boxes, file_size)
    chunks = chunk_map(moov, boxes["stsc"], len(low), n)
    stts, stts_dts = read_stts(moov, boxes["stts"], n)
    if handler == "soun" and len(stts.values) == 1 and stts.values[0] == 1:
        raise Unsupported("audio timed per PCM frame")  # FFmpeg reads it chunk by chunk
    ctts = read_ctts(moov, boxes["ctts"], n) if "ctts" in boxes else None
    sdtp = read_sdtp(moov, boxes["sdtp"], n) if "sdtp" in boxes else None
    parsed_groups = read_groups(moov, groups, n)
    return Track(
        track_id=track_id,
        handler=handler,
        timescale=timescale,
        sizes=sizes,
        chunk_low=low,
        high_from=high_from,
        high_value=high_value,
        **chunks,
        stts=stts,
        stts_dts=stts_dts,
        ctts=ctts,
        ctts_version=moov[boxes["ctts"][0]] if ctts is not None else 0,
        sync=sample_numbers(moov, boxes.get("stss"), n),
        partial_sync=sample_numbers(moov, boxes.get("stps"), n),
        sdtp=sdtp,
        groups=parsed_groups,
        edit_shift=0,
        edit_media_time=0,
    )


def _with_edit(track: Track, shift: int, media_time: int) -> Track:
    return dataclasses.replace(track, edit_shift=shift, edit_media_time=media_time)


def _edit(
    moov: memoryview, body: int, end: int, timescale: int, movie_timescale: int
) -> tuple[int, int]:
    """What FFmpeg adds to a stored decode time for this track's edit list (before its own
    video-start correction, which the caller learns from the demuxer).

    Only the lists we reproduce: leading empty edits, then one normal edit at rate 1.
    """
    edts = _find(moov, body, end, "edts")
    if edts is None:
        return 0, 0
    if movie_timescale <= 0:
        raise Unsupported("an edit list without a movie timescale")
    elst = _find(moov, edts[1], edts[2], "elst")
    if elst is None:
        return 0, 0
    _, b, e = elst
    version = moov[b]
    (count,) = struct.unpack_from(">I", moov, b + 4)
    entry = ">QqHH" if version == 1 else ">IiHH"
    width = struct.calcsize(entry)
    if 8 + count * width > e - b:
        raise Unsupported("elst entries past its end")
    empty = 0
    normal: list[int] = []
    for i in range(count):
        duration, media_time, rate, _ = struct.unpack_from(entry, moov, b + 8 + i * width)
        if media_time == -1 and not normal:
            empty += duration
        elif media_time >= 0 and rate == 1 and not normal:
            normal.append(media_time)
        else:
            raise Unsupported("an edit list beyond leading empty edits and one edit")
    if not normal:
        raise Unsupported("an edit list of empty edits only")
    empty_ticks = (empty * timescale + movie_timescale // 2) // movie_timescale
    return empty_ticks - normal[0], normal[0]
