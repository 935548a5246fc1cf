"""Reading one track's sample tables (stsz, stco, stsc, stts, ctts, stss, sdtp, sbgp) into
compact arrays: the readers every moov parse here shares.

They run with C-speed array and itertools operations (a 10 h source has 2.8 million samples:
a Python loop per sample or per stsc run costs a second). Pure: bytes in, arrays out.
"""

from __future__ import annotations

import array
import bisect
import itertools
import operator
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from clipsearch.clipping.boxiter import BadBox, BoxSpan, Bytes, boxes_in, find_path

_LITTLE = sys.byteorder == "little"
# A table: an array we built, or a typed view straight into a loaded sidecar (no copy).
Ints: TypeAlias = "array.array[int] | memoryview[int]"
# Where a table's box lies in the moov: (body start, end).
Where: TypeAlias = tuple[int, int]


class Unsupported(Exception):
    """This movie's tables are outside what the synthetic index reproduces exactly.

    Not an error of the source: the caller cuts it the full way (FFmpeg parses the moov).
    """


def children(data: Bytes, start: int, end: int) -> list[BoxSpan]:
    """Every box in data[start:end], all of them whole; Unsupported when one is not."""
    try:
        return boxes_in(data, start, end)
    except BadBox as error:
        raise Unsupported(str(error)) from None


def big_endian(kind: str, data: Bytes) -> array.array[int]:
    """An array of big-endian entries of type code `kind`, in the machine's order."""
    table = array.array(kind)
    table.frombytes(data)
    if _LITTLE:
        table.byteswap()
    return table


def pack(code: str, values: Sequence[int]) -> bytes:
    """`values` as big-endian entries of type code `code` (the inverse of `big_endian`)."""
    table = array.array(code, values)
    if _LITTLE:
        table.byteswap()
    return table.tobytes()


def be32(data: bytes | memoryview, stride: int = 4, at: int = 0) -> array.array[int]:
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
        return big_endian("I", raw)
    column = bytearray(4 * n)
    for i in range(4):
        column[i::4] = raw[at + i : at + n * stride : stride]
    return big_endian("I", column)


@dataclass(frozen=True, eq=False)
class Runs:
    """A run-length table (stts, ctts, sbgp): run r covers samples [starts[r], starts[r+1])."""

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


def member(table: Ints, value: int) -> bool:
    """Whether a sorted table holds `value`."""
    i = bisect.bisect_left(table, value)
    return i < len(table) and table[i] == value


def read_sizes(moov: memoryview, boxes: dict[str, Where]) -> array.array[int]:
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
        return be32(moov[b + 12 : b + 12 + 4 * count])
    if "stz2" in boxes:
        b, e = boxes["stz2"]
        field, count = moov[b + 7], struct.unpack_from(">I", moov, b + 8)[0]
        kinds = {8: "B", 16: "H"}
        if field not in kinds or 12 + count * field // 8 > e - b:
            raise Unsupported(f"stz2 with {field}-bit sizes")
        return array.array(
            "I", big_endian(kinds[field], moov[b + 12 : b + 12 + count * field // 8])
        )
    raise Unsupported("no stsz")


def chunk_offsets(
    moov: memoryview, boxes: dict[str, Where], file_size: int
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
        low = big_endian("I", moov[b + 8 : b + 8 + count * 4])
        if low and max(low) >= file_size:
            raise Unsupported("a chunk past the end of the file")
        return low, empty, array.array("I")
    if "co64" in boxes:
        b, e = boxes["co64"]
        (count,) = struct.unpack_from(">I", moov, b + 4)
        if 8 + count * 8 > e - b:
            raise Unsupported("co64 entries past its end")
        words = big_endian("I", moov[b + 8 : b + 8 + count * 8])
        high, low = words[0::2], words[1::2]
        changes = value_changes(high)
        if changes and max(v for _, v in changes) << 32 >= file_size:
            raise Unsupported("a chunk past the end of the file")
        return (
            low,
            array.array("I", (c for c, _ in changes)),
            array.array("I", (v for _, v in changes)),
        )
    raise Unsupported("no chunk offsets")


def value_changes(values: array.array[int]) -> list[tuple[int, int]]:
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


def chunk_map(
    moov: memoryview, where: Where, chunks: int, samples: int
) -> dict[str, array.array[int]]:
    """The chunk-to-sample map: stsc's runs when it has few, else each chunk's first sample."""
    b, e = where
    (count,) = struct.unpack_from(">I", moov, b + 4)
    if count == 0 or 8 + count * 12 > e - b:
        raise Unsupported("an empty or short stsc")
    flat = big_endian("I", moov[b + 8 : b + 8 + count * 12])
    first, per_chunk, described = flat[0::3], flat[1::3], flat[2::3]
    if first[0] != 1 or min(per_chunk) == 0 or first[-1] > chunks:
        raise Unsupported("stsc runs out of order")
    ends = itertools.chain(itertools.islice(first, 1, None), (chunks + 1,))
    lengths = array.array("q", map(operator.sub, ends, first))
    if min(lengths) <= 0:  # runs in order: they then add up to exactly `chunks` chunks
        raise Unsupported("stsc runs out of order")
    try:
        return _chunk_map(first, per_chunk, described, lengths, chunks, samples)
    except OverflowError:  # runs whose sample counts no array here can hold: not a real file
        raise Unsupported(f"stsc places more samples than stsz's {samples}") from None


def _chunk_map(
    first: array.array[int],
    per_chunk: array.array[int],
    described: array.array[int],
    lengths: array.array[int],
    chunks: int,
    samples: int,
) -> dict[str, array.array[int]]:
    count = len(first)
    changes = value_changes(described)
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


def pairs(
    moov: Bytes, where: Where, code: str, count: int | None = None
) -> tuple[array.array[int], array.array[int]]:
    b, e = where
    if count is None:
        (count,) = struct.unpack_from(">I", moov, b + 4)
    if 8 + count * 8 > e - b:
        raise Unsupported("table entries past its end")
    flat = big_endian("I", moov[b + 8 : b + 8 + count * 8])
    second = flat[1::2]
    return flat[0::2], array.array(code, second.tobytes()) if code != "I" else second


def sample_numbers(moov: memoryview, where: Where | None, n: int) -> array.array[int] | None:
    """A list of sample numbers (stss, stps), kept 1-based as stored."""
    if where is None:
        return None
    b, e = where
    (count,) = struct.unpack_from(">I", moov, b + 4)
    if 8 + count * 4 > e - b:
        raise Unsupported("stss entries past its end")
    table = big_endian("I", moov[b + 8 : b + 8 + count * 4])
    if count and (table[0] < 1 or table[-1] > n):
        raise Unsupported("sync samples outside the track")
    if not all(map(operator.lt, table, itertools.islice(table, 1, None))):
        raise Unsupported("sync samples out of order")
    return table


def composition_runs(moov: Bytes, where: Where) -> Runs:
    """A ctts as stored, run-length, its offsets read signed (as FFmpeg reads both versions)."""
    counts, offsets = pairs(moov, where, "i")
    return Runs.of(counts, offsets)


@dataclass(frozen=True, eq=False)
class CompositionOffsets:
    """A track's per-sample composition offsets (its ctts), looked up by sample number."""

    runs: Runs

    def at(self, sample: int) -> int | None:
        """The offset of sample `sample` (0-based), None past the table."""
        if sample < 0 or sample >= self.runs.count:
            return None
        return self.runs.values[self.runs.run_of(sample)]


def read_stts(moov: memoryview, where: Where, samples: int) -> tuple[Runs, array.array[int]]:
    """(stts runs, decode time of each run's first sample, then the track's end)."""
    counts, deltas = pairs(moov, where, "I")
    stts = Runs.of(counts, deltas)
    if stts.count != samples:
        raise Unsupported(f"stts times {stts.count} samples, stsz has {samples}")
    dts = array.array("q", itertools.accumulate(map(operator.mul, counts, deltas), initial=0))
    return stts, dts


def read_ctts(moov: memoryview, where: Where, samples: int) -> Runs:
    """The ctts, kept run-length (expanding costs 0.25 s at 10 h), 2 bytes an offset when
    every one is non-negative and under 65,536."""
    runs = composition_runs(moov, where)
    b = where[0]
    small = be32(moov[b + 8 : b + 8 + 8 * len(runs.values)], 8, 4)
    if small.typecode == "H":
        runs = Runs(runs.starts, small)
    elif runs.values and min(runs.values) < 0:
        raise Unsupported("negative composition offsets")  # FFmpeg shifts dts by them
    if runs.count != samples:
        raise Unsupported("ctts does not cover every sample")
    return runs


def read_sdtp(moov: memoryview, where: Where, samples: int) -> bytes:
    b, e = where
    if e - b - 4 != samples:
        raise Unsupported("sdtp does not cover every sample")
    return bytes(moov[b + 4 : e])


def read_groups(
    moov: memoryview, groups: list[Where], samples: int
) -> tuple[tuple[bytes, Runs], ...]:
    """Each sbgp: (its header after the box type, its runs of group indices)."""
    parsed = []
    for b, e in groups:
        version = moov[b]
        head = 12 if version == 1 else 8  # version/flags, grouping_type[, parameter]
        (count,) = struct.unpack_from(">I", moov, b + head)
        gcounts, indices = pairs(moov, (b + head - 4, e), "I", count)
        if sum(gcounts) > samples:
            raise Unsupported("sbgp covers more samples than the track has")
        parsed.append((bytes(moov[b : b + head]), Runs.of(gcounts, indices)))
    return tuple(parsed)


@dataclass(frozen=True)
class LastSample:
    """A track's last sample: where it lies in the file, and its stts duration (`delta`, in
    the track's `timescale`)."""

    offset: int
    delta: int
    timescale: int


_STBL = ("mdia", "minf", "stbl")
_LAST_PATHS = {
    "tkhd": ("tkhd",),
    "mdhd": ("mdia", "mdhd"),
    **{kind: (*_STBL, kind) for kind in ("stts", "stsz", "stsc", "stco", "co64")},
}


def last_samples(moov: bytes) -> dict[int, LastSample]:
    """Per track_ID, its last sample (from stts, stsz, stsc, stco/co64 of a whole moov box's
    bytes): a handful of table entries read, whatever the track's length. A track whose
    tables are missing or do not add up is left out."""
    out: dict[int, LastSample] = {}
    for trak, trak_end in find_path(moov, 8, len(moov), ("trak",)):
        try:
            found = _last_sample(moov, trak, trak_end)
        except (struct.error, IndexError, ValueError):
            found = None
        if found is not None:
            out[found[0]] = found[1]
    return out


def _last_sample(moov: bytes, trak: int, trak_end: int) -> tuple[int, LastSample] | None:
    boxes: dict[str, Where] = {}
    for kind, path in _LAST_PATHS.items():
        found = find_path(moov, trak, trak_end, path)
        if len(found) == 1:
            boxes[kind] = found[0]
    if not {"tkhd", "mdhd", "stts", "stsz", "stsc"} <= boxes.keys():
        return None
    if ("stco" in boxes) == ("co64" in boxes):
        return None
    track_id = _after_times(moov, boxes["tkhd"][0])
    timescale = _after_times(moov, boxes["mdhd"][0])
    stts = _last_entry(moov, boxes["stts"], ">II")
    stsc = _last_entry(moov, boxes["stsc"], ">III")
    chunks = _last_entry(
        moov, *((boxes["stco"], ">I") if "stco" in boxes else (boxes["co64"], ">Q"))
    )
    stsz_body, stsz_end = boxes["stsz"]
    size, count = struct.unpack_from(">II", moov, stsz_body + 4)
    if not timescale or not count or stts is None or stsc is None or chunks is None:
        return None
    first_chunk, per_chunk, _ = stsc[1]
    if not 0 < per_chunk <= count or first_chunk > chunks[0]:
        return None
    # the last chunk holds the last run's `per_chunk` samples, the track's last ones
    if not size and stsz_body + 12 + 4 * count > stsz_end:
        return None
    before = [
        size or struct.unpack_from(">I", moov, stsz_body + 12 + 4 * i)[0]
        for i in range(count - per_chunk, count - 1)
    ]
    return track_id, LastSample(chunks[1][0] + sum(before), stts[1][1], timescale)


def _after_times(moov: bytes, body: int) -> int:
    """The word after a tkhd's or mdhd's times: the track_ID, or the timescale."""
    return int(struct.unpack_from(">I", moov, body + (20 if moov[body] == 1 else 12))[0])


def _last_entry(moov: bytes, where: Where, fmt: str) -> tuple[int, tuple[int, ...]] | None:
    """(entry count, last entry) of a table box, None when it is empty or its entries do not
    fit the box."""
    body, end = where
    step = struct.calcsize(fmt)
    (count,) = struct.unpack_from(">I", moov, body + 4)
    if not count or body + 8 + step * count > end:
        return None
    return count, struct.unpack_from(fmt, moov, body + 8 + step * (count - 1))
