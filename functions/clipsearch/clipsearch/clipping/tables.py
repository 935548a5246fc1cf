"""A movie's sample tables as compact arrays, and the small `moov` a clip is demuxed from.

FFmpeg's demuxer builds ~57 bytes of index per sample on every open, so a cut from a 10 h
source paid a full parse of its 48 MB moov per event. Here the moov is parsed once into
arrays (4 bytes per sample for sizes, 4 for composition offsets when the track has them, a
few bytes per chunk and per run), and each cut hands FFmpeg a synthetic moov holding only
the samples near the clip: the tables are cut the way nginx's mp4 module and MP4Box
`-splitx` cut them, but every kept sample keeps its decode time and its byte offset in the
source, so the demuxer sees the source's own timeline.

Pure: bytes in, values out; no I/O.
"""

from __future__ import annotations

import array
import bisect
import dataclasses
import itertools
import operator
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

_LITTLE = sys.byteorder == "little"
# A table: an array we built, or a typed view straight into a loaded sidecar (no copy).
Ints: TypeAlias = "array.array[int] | memoryview[int]"
# Per-sample tables we rebuild; every other stbl child is copied as it is, if we know it.
_TABLES = {"stts", "ctts", "stss", "stps", "stsc", "stsz", "stz2", "stco", "co64", "sdtp", "sbgp"}
_KEPT = {"stsd", "sgpd", "cslg"}
HEAD_SAMPLES = 16  # a track's first and last samples are kept: the demuxer's view of its ends
MAX_GAP_TICKS = (1 << 31) - 1  # one stts delta; longer gaps are split into several samples
MAX_ROWS = 400_000  # samples in one synthetic track (a clip's, with its margins, is far fewer)
MAX_PLACEHOLDERS = 4096  # per gap: 10 h at a 1 GHz timescale needs 17; more is a hostile stts
MAX_TRACKS = 64


class Unsupported(Exception):
    """This movie's tables are outside what the synthetic index reproduces exactly.

    Not an error of the source: the caller cuts it the full way (FFmpeg parses the moov).
    """


def _be(kind: str, data: bytes | bytearray | memoryview) -> array.array[int]:
    table = array.array(kind)
    table.frombytes(data)
    if _LITTLE:
        table.byteswap()
    return table


def _be32(data: bytes | memoryview, stride: int = 4, at: int = 0) -> array.array[int]:
    """Big-endian 32-bit entries (every `stride` bytes from `at`), as 16-bit ones when all
    fit (audio frame sizes, composition offsets): half the memory, and found with byte
    slices, not a pass in Python over a million values."""
    raw = bytes(data)
    n = max(0, (len(raw) - at - 4) // stride + 1)
    high0, high1 = raw[at : at + n * stride : stride], raw[at + 1 : at + n * stride : stride]
    if high0.count(0) == n and high1.count(0) == n:
        small = bytearray(2 * n)
        first, second = (3, 2) if _LITTLE else (2, 3)
        small[0::2] = raw[at + first : at + n * stride : stride]
        small[1::2] = raw[at + second : at + n * stride : stride]
        out = array.array("H")
        out.frombytes(small)
        return out
    if stride == 4 and at == 0:
        return _be("I", raw)
    column = bytearray(4 * n)
    for i in range(4):
        column[i::4] = raw[at + i : at + n * stride : stride]
    return _be("I", column)


def _children(data: bytes | memoryview, start: int, end: int) -> list[tuple[str, int, int, int]]:
    """(type, box start, body start, end) of the boxes in data[start:end], all of them whole."""
    out = []
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise Unsupported("a truncated box header")
        length, kind_raw = struct.unpack_from(">I4s", data, pos)
        header = 8
        if length == 1:
            if pos + 16 > end:
                raise Unsupported("a truncated large box header")
            (length,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif length == 0:
            length = end - pos
        if length < header or pos + length > end:
            raise Unsupported("a box that does not fit its parent")
        out.append((kind_raw.decode("latin-1"), pos, pos + header, pos + length))
        pos += length
    return out


def _box(kind: str, *parts: bytes | memoryview) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind.encode("latin-1")) + body


def _full_box(kind: str, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


@dataclass(frozen=True, eq=False)
class Runs:
    """A run-length table (stts, sbgp): run r covers samples [starts[r], starts[r+1])."""

    starts: Ints  # first sample of each run, then the total count
    values: Ints

    @classmethod
    def of(cls, counts: Sequence[int], values: Ints) -> Runs:
        try:
            starts = array.array("I", itertools.accumulate(counts, initial=0))
        except OverflowError:  # past 4 billion samples
            starts = array.array("q", itertools.accumulate(counts, initial=0))
        return cls(starts, values)

    @property
    def count(self) -> int:
        return self.starts[-1]

    def run_of(self, sample: int) -> int:
        return bisect.bisect_right(self.starts, sample) - 1


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
        return self.sync is None or _member(self.sync, sample + 1)

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
        the demuxer reads at the ends and at the edit (`_rows`).

        Each gap becomes placeholder samples (never read: a cut that reaches one is done
        again the whole way) spanning the decode time left out, so every kept sample keeps
        its decode time and its byte offset in the source. A track whose window is None
        keeps only those few (a track no clip uses).
        """
        tables = [_track_tables(t, w) for t, w in zip(self.tracks, windows, strict=True)]
        return _rebuild(self.skeleton, tables)


# -- parsing ---------------------------------------------------------------------------


def parse_movie(data: bytes | memoryview, file_size: int) -> Movie:
    """Compact tables for a whole `moov` box; Unsupported when we cannot reproduce it exactly.

    Reads through a memoryview: a 10 h source's moov is 48 MB, not to be copied.
    """
    moov = memoryview(data)
    top = _children(moov, 0, len(moov))
    if len(top) != 1 or top[0][0] != "moov":
        raise Unsupported("not one whole moov box")
    _, _, body, end = top[0]
    movie_timescale = 0
    tracks: list[Track] = []
    skeleton: list[bytes | memoryview] = []
    for kind, start, cbody, cend in _children(moov, body, end):
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
    return Movie(_box("moov", *skeleton), tuple(tracks), movie_timescale)


def _find(data: memoryview | bytes, start: int, end: int, kind: str) -> tuple[int, int, int] | None:
    found = [(s, b, e) for k, s, b, e in _children(data, start, end) if k == kind]
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
    for kind, s, b, e in _children(moov, stbl[1], stbl[2]):
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
    skeleton = _replace_stbl(moov, start, end, (stbl[0], stbl[2]), _box("stbl", *kept))
    return track, skeleton


def _replace_stbl(
    moov: memoryview, start: int, end: int, stbl: tuple[int, int], new: bytes
) -> bytes:
    """The trak's bytes with its stbl replaced; the containers' sizes rewritten to match."""

    def rebuild(s: int, e: int) -> bytes:
        kind, _, body, cend = _children(moov, s, e)[0]
        if (s, e) == stbl:
            return new
        parts = []
        for _, cs, _, ce in _children(moov, body, cend):
            inside = cs <= stbl[0] and stbl[1] <= ce
            parts.append(rebuild(cs, ce) if inside else moov[cs:ce])
        return _box(kind, *parts)

    return rebuild(start, end)


def _tables(
    moov: memoryview,
    boxes: dict[str, tuple[int, int]],
    groups: list[tuple[int, int]],
    track_id: int,
    handler: str,
    timescale: int,
    file_size: int,
) -> Track:
    """The arrays, built with C-speed array and itertools operations (a 10 h source has
    2.8 million samples: a Python loop per sample or per stsc run costs a second)."""
    for need in ("stts", "stsc"):
        if need not in boxes:
            raise Unsupported(f"no {need}")
    sizes = _sizes(moov, boxes)
    n = len(sizes)
    low, high_from, high_value = _chunk_offsets(moov, boxes, file_size)
    chunks = _chunks(moov, boxes["stsc"], len(low), n)
    counts, deltas = _pairs(moov, boxes["stts"], "I")
    stts = Runs.of(counts, deltas)
    if stts.count != n:
        raise Unsupported(f"stts times {stts.count} samples, stsz has {n}")
    stts_dts = array.array("q", itertools.accumulate(map(operator.mul, counts, deltas), initial=0))
    if handler == "soun" and len(deltas) == 1 and deltas[0] == 1:
        raise Unsupported("audio timed per PCM frame")  # FFmpeg reads it chunk by chunk
    ctts = None
    ctts_version = 0
    if "ctts" in boxes:
        ctts_version = moov[boxes["ctts"][0]]
        ccounts, offsets = _pairs(moov, boxes["ctts"], "i")
        small = _be32(moov[boxes["ctts"][0] + 8 : boxes["ctts"][0] + 8 + 8 * len(offsets)], 8, 4)
        if small.typecode == "H":  # non-negative and under 65,536: 2 bytes each
            offsets = small
        elif offsets and min(offsets) < 0:
            raise Unsupported("negative composition offsets")  # FFmpeg shifts dts by them
        ctts = Runs.of(ccounts, offsets)  # kept run-length: expanding costs 0.25 s at 10 h
        if ctts.count != n:
            raise Unsupported("ctts does not cover every sample")
    sdtp = None
    if "sdtp" in boxes:
        b, e = boxes["sdtp"]
        if e - b - 4 != n:
            raise Unsupported("sdtp does not cover every sample")
        sdtp = bytes(moov[b + 4 : e])
    parsed_groups = []
    for b, e in groups:
        version = moov[b]
        head = 12 if version == 1 else 8  # version/flags, grouping_type[, parameter]
        (count,) = struct.unpack_from(">I", moov, b + head)
        gcounts, indices = _pairs(moov, (b + head - 4, e), "I", count)
        if sum(gcounts) > n:
            raise Unsupported("sbgp covers more samples than the track has")
        parsed_groups.append((bytes(moov[b : b + head]), Runs.of(gcounts, indices)))
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
        ctts_version=ctts_version,
        sync=_numbers(moov, boxes.get("stss"), n),
        partial_sync=_numbers(moov, boxes.get("stps"), n),
        sdtp=sdtp,
        groups=tuple(parsed_groups),
        edit_shift=0,
        edit_media_time=0,
    )


def _with_edit(track: Track, shift: int, media_time: int) -> Track:
    return dataclasses.replace(track, edit_shift=shift, edit_media_time=media_time)


def _sizes(moov: memoryview, boxes: dict[str, tuple[int, int]]) -> array.array[int]:
    if "stsz" in boxes:
        b, e = boxes["stsz"]
        if e - b < 12:
            raise Unsupported("a short stsz")
        constant, count = struct.unpack_from(">II", moov, b + 4)
        if constant:
            # Not expanded past what its moov could index (a count of 4 billion would cost
            # 16 GiB): every other table of the track takes bytes per sample or per run.
            if count > len(moov):
                raise Unsupported("more samples of one size than its moov can describe")
            return array.array("I", itertools.repeat(constant, count))
        if 12 + 4 * count > e - b:
            raise Unsupported("stsz entries past its end")
        return _be32(moov[b + 12 : b + 12 + 4 * count])
    if "stz2" in boxes:
        b, e = boxes["stz2"]
        field, count = moov[b + 7], struct.unpack_from(">I", moov, b + 8)[0]
        kinds = {8: "B", 16: "H"}
        if field not in kinds or 12 + count * field // 8 > e - b:
            raise Unsupported(f"stz2 with {field}-bit sizes")
        return array.array("I", _be(kinds[field], moov[b + 12 : b + 12 + count * field // 8]))
    raise Unsupported("no stsz")


def _chunk_offsets(
    moov: memoryview, boxes: dict[str, tuple[int, int]], file_size: int
) -> tuple[array.array[int], array.array[int], array.array[int]]:
    """(low 32 bits per chunk, chunks where the high bits change, the new high bits)."""
    empty = array.array("I")
    if "stco" in boxes and "co64" in boxes:
        raise Unsupported("both stco and co64: which one a reader takes is its choice")
    if "stco" in boxes:
        b, e = boxes["stco"]
        (count,) = struct.unpack_from(">I", moov, b + 4)
        if 8 + count * 4 > e - b:
            raise Unsupported("stco entries past its end")
        low = _be("I", moov[b + 8 : b + 8 + count * 4])
        if low and max(low) >= file_size:
            raise Unsupported("a chunk past the end of the file")
        return low, empty, array.array("I")
    if "co64" in boxes:
        b, e = boxes["co64"]
        (count,) = struct.unpack_from(">I", moov, b + 4)
        if 8 + count * 8 > e - b:
            raise Unsupported("co64 entries past its end")
        words = _be("I", moov[b + 8 : b + 8 + count * 8])
        high, low = words[0::2], words[1::2]
        changes = _changes(high)
        if changes and max(v for _, v in changes) << 32 >= file_size:
            raise Unsupported("a chunk past the end of the file")
        return (
            low,
            array.array("I", (c for c, _ in changes)),
            array.array("I", (v for _, v in changes)),
        )
    raise Unsupported("no chunk offsets")


def _changes(values: array.array[int]) -> list[tuple[int, int]]:
    """(index, value) where an array of stretches of one value changes value (the offsets'
    high bits, the sample descriptions), found by bisection and confirmed with one
    array comparison (memcmp speed): no Python pass over a million elements."""
    if not values:
        return []
    out: list[tuple[int, int]] = []
    at = 0
    while at < len(values) and len(out) <= 4096:
        value = values[at]
        out.append((at, value))
        # The stretch of `value` from `at`, if the array is sorted from here on.
        at = bisect.bisect_right(values, value, at)
    expected = array.array(values.typecode)
    for (start, value), (end, _) in itertools.pairwise([*out, (len(values), 0)]):
        expected.extend(array.array(values.typecode, [value]) * (end - start))
    if len(out) > 4096 or expected != values:
        raise Unsupported("a table whose values jump back and forth")
    return out


def _chunks(
    moov: memoryview, where: tuple[int, int], chunks: int, samples: int
) -> dict[str, array.array[int]]:
    """The chunk-to-sample map: stsc's runs when it has few, else each chunk's first sample."""
    b, e = where
    (count,) = struct.unpack_from(">I", moov, b + 4)
    if count == 0 or 8 + count * 12 > e - b:
        raise Unsupported("an empty or short stsc")
    flat = _be("I", moov[b + 8 : b + 8 + count * 12])
    first, per_chunk, described = flat[0::3], flat[1::3], flat[2::3]
    if first[0] != 1 or min(per_chunk) == 0 or first[-1] > chunks:
        raise Unsupported("stsc runs out of order")
    ends = itertools.chain(itertools.islice(first, 1, None), (chunks + 1,))
    lengths = array.array("q", map(operator.sub, ends, first))
    if min(lengths) <= 0:  # runs in order: they then add up to exactly `chunks` chunks
        raise Unsupported("stsc runs out of order")
    changes = _changes(described)
    out = {
        "described_from": array.array("I", (first[i] - 1 for i, _ in changes)),
        "described_as": array.array("I", (v for _, v in changes)),
    }
    if count <= chunks // 4 + 1:  # few runs: keep them
        run_samples = array.array("q", map(operator.mul, lengths, per_chunk))
        starts = array.array("q", itertools.accumulate(run_samples, initial=0))
        if starts[-1] != samples:
            raise Unsupported(f"stsc places {starts[-1]} samples, stsz has {samples}")
        return {
            **out,
            "chunk_first": array.array("I"),
            "runs_chunk": array.array("I", map(operator.sub, first, itertools.repeat(1))),
            "runs_sample": starts[:-1],
            "runs_per_chunk": per_chunk,
        }
    # Many runs: each chunk's first sample.
    each = itertools.chain.from_iterable(map(itertools.repeat, per_chunk, lengths))
    code = "I" if samples < 1 << 32 else "q"
    chunk_first = array.array(code, itertools.accumulate(each, initial=0))
    if len(chunk_first) != chunks + 1 or chunk_first[-1] != samples:
        raise Unsupported(f"stsc places {chunk_first[-1]} samples, stsz has {samples}")
    return {
        **out,
        "chunk_first": chunk_first,
        "runs_chunk": array.array("I"),
        "runs_sample": array.array("q"),
        "runs_per_chunk": array.array("I"),
    }


def _pairs(
    moov: memoryview, where: tuple[int, int], code: str, count: int | None = None
) -> tuple[array.array[int], array.array[int]]:
    b, e = where
    if count is None:
        (count,) = struct.unpack_from(">I", moov, b + 4)
    if 8 + count * 8 > e - b:
        raise Unsupported("table entries past its end")
    flat = _be("I", moov[b + 8 : b + 8 + count * 8])
    second = flat[1::2]
    return flat[0::2], array.array(code, second.tobytes()) if code != "I" else second


def _numbers(moov: memoryview, where: tuple[int, int] | None, n: int) -> array.array[int] | None:
    """A list of sample numbers (stss, stps), kept 1-based as stored."""
    if where is None:
        return None
    b, e = where
    (count,) = struct.unpack_from(">I", moov, b + 4)
    if 8 + count * 4 > e - b:
        raise Unsupported("stss entries past its end")
    table = _be("I", moov[b + 8 : b + 8 + count * 4])
    if count and (table[0] < 1 or table[-1] > n):
        raise Unsupported("sync samples outside the track")
    if not all(map(operator.lt, table, itertools.islice(table, 1, None))):
        raise Unsupported("sync samples out of order")
    return table


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


# -- synthesis --------------------------------------------------------------------------


def _track_tables(track: Track, window: tuple[int, int] | None) -> bytes:
    rows = _rows(track, window)
    sizes: list[int] = []
    offsets: list[int] = []
    deltas: list[int] = []
    cts: list[int] = []
    descriptions: list[int] = []
    sync: list[int] = []
    partial: list[int] = []
    sdtp = bytearray()
    dts: list[int] = []
    for out, (i, at, step) in enumerate(rows):
        if step:  # a placeholder, described like the sample after it, never read
            sizes.append(1)
            offsets.append(track.offset(i))
            dts.append(at)
            cts.append(track.composition(i))
            descriptions.append(track.description(i))
            sdtp.append(0)
            continue
        sizes.append(track.sizes[i])
        offsets.append(track.offset(i))
        dts.append(track.dts(i))
        cts.append(track.composition(i))
        descriptions.append(track.description(i))
        if track.sync is not None and track.is_sync(i):
            sync.append(out + 1)
        if track.partial_sync is not None and _member(track.partial_sync, i + 1):
            partial.append(out + 1)
        if track.sdtp is not None:
            sdtp.append(track.sdtp[i])
    # Each sample lasts until the next kept one (a placeholder's until the next range), so
    # every kept sample decodes at its time in the source; the last keeps its own duration.
    deltas = [b - a for a, b in itertools.pairwise(dts)]
    deltas.append(track.duration_of(rows[-1][0]))
    if any(d < 0 or d > 0xFFFFFFFF for d in deltas):
        raise Unsupported("decode times out of order")
    parts = [
        _full_box("stts", 0, 0, *_run_table(deltas)),
        _stsc_table(descriptions),
        _full_box("stsz", 0, 0, struct.pack(">II", 0, len(sizes)), _pack("I", sizes)),
        _full_box("co64", 0, 0, struct.pack(">I", len(offsets)), _pack("Q", offsets)),
    ]
    if track.ctts is not None:
        parts.append(_full_box("ctts", track.ctts_version, 0, *_run_table(cts)))
    if track.sync is not None:
        parts.append(_full_box("stss", 0, 0, struct.pack(">I", len(sync)), _pack("I", sync)))
    if track.partial_sync is not None:
        parts.append(_full_box("stps", 0, 0, struct.pack(">I", len(partial)), _pack("I", partial)))
    if track.sdtp is not None:
        parts.append(_full_box("sdtp", 0, 0, bytes(sdtp)))
    for header, runs in track.groups:
        indices = [0 if step else _group_of(runs, i) for i, _, step in rows]
        parts.append(_box("sbgp", header, *_sbgp_body(indices)))
    return b"".join(parts)


def _member(table: Ints, value: int) -> bool:
    i = bisect.bisect_left(table, value)
    return i < len(table) and table[i] == value


def _rows(track: Track, window: tuple[int, int] | None) -> list[tuple[int, int, int]]:
    """(source sample, decode time, placeholder length or 0) per output sample.

    Kept: the first and the last HEAD_SAMPLES samples, those around the edit's start (the
    demuxer applies the edit list from them), and the window; gaps become placeholders.
    """
    n = track.samples
    ranges = [(0, HEAD_SAMPLES - 1), (n - HEAD_SAMPLES, n - 1)]
    if track.edit_media_time > 0:
        # The demuxer starts the edit from a keyframe shown (not only decoded) at or before
        # its media time: keep back to one, and one more, as the source holds them.
        at = track.sample_at(track.edit_media_time)
        key = track.sync_at_or_before(at)
        for _ in range(64):
            if not key or track.dts(key) + track.composition(key) <= track.edit_media_time:
                break
            key = track.sync_at_or_before(key - 1)
        else:
            raise Unsupported("no keyframe shown before the edit within 64 keyframes")
        key = track.sync_at_or_before(key - 1) if key else 0
        ranges.append((key or 0, at + HEAD_SAMPLES))
    if window is not None:
        ranges.append(window)
    merged: list[list[int]] = []
    for a, b in sorted((max(0, a), min(n - 1, b)) for a, b in ranges):
        if a > b:
            continue
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if sum(b - a + 1 for a, b in merged) > MAX_ROWS:
        raise Unsupported("a window of more samples than a clip can hold")
    rows: list[tuple[int, int, int]] = []
    for (a, b), following in itertools.zip_longest(merged, merged[1:]):
        rows += [(i, 0, 0) for i in range(a, b + 1)]
        if following is None:
            break
        at, stop = track.dts(b + 1), track.dts(following[0])
        if stop - at > MAX_PLACEHOLDERS * MAX_GAP_TICKS:
            raise Unsupported("a gap in decode time no placeholders can span")
        while at < stop:
            step = min(stop - at, MAX_GAP_TICKS)
            rows.append((following[0], at, step))
            at += step
    return rows


def _group_of(runs: Runs, sample: int) -> int:
    if sample >= runs.count:
        return 0
    return runs.values[runs.run_of(sample)]


def _sbgp_body(indices: list[int]) -> tuple[bytes, bytes]:
    counts, values = _runs(indices)
    flat = [x for pair in zip(counts, values, strict=True) for x in pair]
    return struct.pack(">I", len(counts)), _pack("I", flat)


def _runs(values: Iterable[int]) -> tuple[list[int], list[int]]:
    counts: list[int] = []
    out: list[int] = []
    for value, group in itertools.groupby(values):
        counts.append(sum(1 for _ in group))
        out.append(value)
    return counts, out


def _run_table(values: list[int]) -> tuple[bytes, bytes]:
    counts, out = _runs(values)
    flat = [x for pair in zip(counts, out, strict=True) for x in pair]
    table = array.array("I", (x & 0xFFFFFFFF for x in flat))
    if _LITTLE:
        table.byteswap()
    return struct.pack(">I", len(counts)), table.tobytes()


def _stsc_table(descriptions: list[int]) -> bytes:
    """One sample per chunk: a run per change of sample description."""
    rows: list[int] = []
    chunk = 1
    for value, group in itertools.groupby(descriptions):
        rows += [chunk, 1, value]
        chunk += sum(1 for _ in group)
    return _full_box("stsc", 0, 0, struct.pack(">I", len(rows) // 3), _pack("I", rows))


def _pack(code: str, values: Sequence[int]) -> bytes:
    table = array.array(code, values)
    if _LITTLE:
        table.byteswap()
    return table.tobytes()


_PATH = {"moov": "trak", "trak": "mdia", "mdia": "minf", "minf": "stbl"}


def _rebuild(skeleton: bytes, tables: Sequence[bytes]) -> bytes:
    """The skeleton moov with each trak's stbl given its tables (in trak order).

    Only moov > trak > mdia > minf > stbl is followed, as the parse did; a skeleton with
    another number of stbl boxes than tables (a damaged sidecar) is refused.
    """
    pending = list(tables)
    used = 0

    def rebuild(s: int, e: int) -> bytes:
        nonlocal used
        kind, _, body, end = _children(skeleton, s, e)[0]
        parts = []
        for ckind, cs, _, ce in _children(skeleton, body, end):
            if ckind == "stbl" and kind == "minf":
                if used >= len(pending):
                    raise Unsupported("more sample tables in the skeleton than tracks")
                _, _, sbody, send = _children(skeleton, cs, ce)[0]
                parts.append(_box("stbl", skeleton[sbody:send], pending[used]))
                used += 1
            elif _PATH.get(kind) == ckind:
                parts.append(rebuild(cs, ce))
            else:
                parts.append(skeleton[cs:ce])
        return _box(kind, *parts)

    moov = rebuild(0, len(skeleton))
    if used != len(pending):
        raise Unsupported("fewer sample tables in the skeleton than tracks")
    return moov


# -- serialisation (the sidecar) ---------------------------------------------------------

_TYPECODES = frozenset("BHIiqQ")
_ARRAY = struct.Struct("<c7xQ")  # type code, count: 16 bytes, so the data that follows
_TRACK = struct.Struct("<I4sIBqqB2x")  # id, handler, timescale, ctts version, edit, flags
# Track.arrays() in order; the last four may be absent (flags bits 0-3), sdtp is bit 4.
_FIXED = 13
_ALIGN = 8  # every array's data starts on a multiple of 8 from the blob's start


class _Writer:
    def __init__(self) -> None:
        self.out: list[bytes | memoryview] = []
        self.pos = 0

    def put(self, data: bytes | memoryview) -> None:
        self.out.append(data)
        self.pos += len(data) if isinstance(data, bytes) else data.nbytes

    def align(self) -> None:
        if self.pos % _ALIGN:
            self.put(bytes(_ALIGN - self.pos % _ALIGN))

    def array(self, table: Ints) -> None:
        self.align()
        code = table.typecode if isinstance(table, array.array) else table.format
        self.put(_ARRAY.pack(code.encode(), len(table)))
        self.put(memoryview(table).cast("B"))

    def bytes(self, data: bytes) -> None:
        self.put(struct.pack("<Q", len(data)))
        self.put(data)


def dump_movie(movie: Movie) -> bytes:
    """Raw arrays in the machine's byte order (recorded), each 8-byte aligned: a loaded
    sidecar's tables are typed views into its bytes, not copies.

    The arrays are joined straight from their buffers: one copy, not two (28 MB at 10 h).
    """
    w = _Writer()
    w.put((b"<" if _LITTLE else b">") + bytes(_ALIGN - 1))
    w.bytes(movie.skeleton)
    w.put(struct.pack("<II", movie.movie_timescale, len(movie.tracks)))
    for t in movie.tracks:
        arrays = t.arrays()
        optional = arrays[_FIXED:]
        flags = sum(1 << i for i, a in enumerate(optional) if a is not None)
        flags |= 16 if t.sdtp is not None else 0
        w.put(
            _TRACK.pack(
                t.track_id, t.handler.encode("latin-1")[:4].ljust(4), t.timescale,
                t.ctts_version, t.edit_shift, t.edit_media_time, flags,
            )
        )  # fmt: skip
        for table in arrays:
            if table is not None:
                w.array(table)
        if t.sdtp is not None:
            w.bytes(t.sdtp)
        w.put(struct.pack("<I", len(t.groups)))
        for header, runs in t.groups:
            w.bytes(header)
            w.array(runs.starts)
            w.array(runs.values)
    return b"".join(w.out)


class _Reader:
    def __init__(self, blob: memoryview, swap: bool) -> None:
        self.blob, self.pos, self.swap = blob, 0, swap

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.blob):
            raise ValueError("movie tables truncated")
        chunk = self.blob[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, layout: struct.Struct | str) -> tuple[int | bytes, ...]:
        layout = struct.Struct(layout) if isinstance(layout, str) else layout
        return layout.unpack(self.take(layout.size))

    def array(self) -> Ints:
        if self.pos % _ALIGN:
            self.take(_ALIGN - self.pos % _ALIGN)
        code_raw, count = _ARRAY.unpack(self.take(_ARRAY.size))
        code = bytes(code_raw).decode("latin-1")
        if code not in _TYPECODES:
            raise ValueError(f"movie tables: array type {code!r}")
        data = self.take(int(count) * array.array(code).itemsize)
        if not self.swap:
            view: memoryview[int] = data.cast(code)  # type: ignore[call-overload]
            return view  # a view: the blob is the table
        table = array.array(code)
        table.frombytes(data)
        table.byteswap()
        return table

    def bytes(self) -> bytes:
        (n,) = struct.unpack("<Q", self.take(8))
        return bytes(self.take(n))


def load_movie(blob: bytes | memoryview) -> Movie:
    """`dump_movie` output back; ValueError on anything else or on inconsistent tables.

    Typed views into `blob` (which must start 8-byte aligned; a copy only on a machine of
    the other byte order) and checks of their lengths and ends, no pass over the elements:
    a 10 h source's tables load in well under a millisecond. The object's integrity is
    Cloud Storage's (checksummed uploads and downloads); its shape is checked here.
    """
    view = memoryview(blob)
    if len(view) < _ALIGN or bytes(view[:1]) not in (b"<", b">"):
        raise ValueError("movie tables: no byte order mark")
    reader = _Reader(view, (bytes(view[:1]) == b"<") != _LITTLE)
    reader.take(_ALIGN)
    skeleton = reader.bytes()
    movie_timescale, count = reader.unpack("<II")
    if not 0 < int(count) <= MAX_TRACKS:
        raise ValueError("movie tables: track count")
    tracks = []
    for _ in range(int(count)):
        tid, handler, timescale, cver, shift, media_time, flags = reader.unpack(_TRACK)
        a = [reader.array() for _ in range(_FIXED)]
        optional = [reader.array() if int(flags) & (1 << i) else None for i in range(4)]
        sdtp = reader.bytes() if int(flags) & 16 else None
        ctts_starts, ctts_values = optional[0], optional[1]
        if (ctts_starts is None) != (ctts_values is None):
            raise ValueError("movie tables: half a ctts")
        (ngroups,) = reader.unpack("<I")
        if int(ngroups) > 64:
            raise ValueError("movie tables: too many sample groups")
        groups = tuple(
            (reader.bytes(), Runs(reader.array(), reader.array())) for _ in range(int(ngroups))
        )
        tracks.append(
            Track(
                track_id=int(tid), handler=bytes(handler).decode("latin-1"),
                timescale=int(timescale), sizes=a[0], chunk_low=a[1], high_from=a[2],
                high_value=a[3], chunk_first=a[4], runs_chunk=a[5], runs_sample=a[6],
                runs_per_chunk=a[7], described_from=a[8], described_as=a[9],
                stts=Runs(a[10], a[11]), stts_dts=a[12],
                ctts=None if ctts_starts is None or ctts_values is None
                else Runs(ctts_starts, ctts_values),
                ctts_version=int(cver), sync=optional[2], partial_sync=optional[3], sdtp=sdtp,
                groups=groups, edit_shift=int(shift), edit_media_time=int(media_time),
            )
        )  # fmt: skip
    if reader.pos != len(reader.blob):
        raise ValueError("movie tables: trailing bytes")
    movie = Movie(skeleton, tuple(tracks), int(movie_timescale))
    check_movie(movie)
    return movie


def check_movie(movie: Movie) -> None:
    """The shape every lookup relies on: lengths that agree, ends in range (no element pass)."""
    if movie.movie_timescale <= 0:
        raise ValueError("movie tables: movie timescale")
    for t in movie.tracks:
        n = len(t.sizes)
        runs = len(t.stts.values)
        chunks = len(t.chunk_low)
        dense = not t.runs_chunk
        first = t.chunk_first
        dense_ok = len(first) == chunks + 1 and first[0] == 0 and first[-1] == n
        ok = (
            t.timescale > 0
            and n > 0
            and runs > 0
            and len(t.high_from) == len(t.high_value)
            and (not t.high_from or t.high_from[0] == 0)
            and len(t.described_from) == len(t.described_as) > 0
            and t.described_from[0] == 0
            and (
                dense_ok
                if dense
                else (
                    len(t.runs_chunk) == len(t.runs_sample) == len(t.runs_per_chunk)
                    and t.runs_chunk[0] == 0
                    and t.runs_sample[0] == 0
                    and min(t.runs_per_chunk) > 0
                    and t.runs_chunk[-1] < chunks
                    and t.runs_sample[-1] < n
                )
            )
            and len(t.stts.starts) == runs + 1
            and t.stts.starts[0] == 0
            and t.stts.starts[-1] == n
            and len(t.stts_dts) == runs + 1
            and (
                t.ctts is None
                or (
                    len(t.ctts.starts) == len(t.ctts.values) + 1 > 1
                    and t.ctts.starts[0] == 0
                    and t.ctts.starts[-1] == n
                )
            )
            and (t.sdtp is None or len(t.sdtp) == n)
            and all(not s or (s[0] >= 1 and s[-1] <= n) for s in (t.sync, t.partial_sync))
            and all(len(r.starts) == len(r.values) + 1 and r.starts[0] == 0 for _, r in t.groups)
        )  # fmt: skip
        if not ok:
            raise ValueError(f"movie tables: track {t.track_id} is inconsistent")
    try:
        top = _children(movie.skeleton, 0, len(movie.skeleton))
        if len(top) != 1 or top[0][0] != "moov":
            raise Unsupported("not one moov")
        traks = [c for c in _children(movie.skeleton, top[0][2], top[0][3]) if c[0] == "trak"]
    except Unsupported as error:
        raise ValueError(f"movie tables: skeleton: {error}") from None
    if len(traks) != len(movie.tracks):
        raise ValueError("movie tables: skeleton and tables disagree on the tracks")
