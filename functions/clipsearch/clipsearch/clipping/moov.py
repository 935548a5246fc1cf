"""The small `moov` a cut hands FFmpeg: only the samples near the clip, from a `Movie`.

The tables are cut the way nginx's mp4 module and MP4Box `-splitx` cut them, but every kept
sample keeps its decode time and its byte offset in the source, so the demuxer sees the
source's own timeline.

Pure: tables in, bytes out.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from clipsearch.clipping.boxiter import box, full_box
from clipsearch.clipping.samples import Runs, Unsupported, children, member, pack

if TYPE_CHECKING:
    from clipsearch.clipping.movie import Track

HEAD_SAMPLES = 16  # a track's first and last samples are kept: the demuxer's view of its ends
MAX_GAP_TICKS = (1 << 31) - 1  # one stts delta; longer gaps are split into several samples
MAX_ROWS = 400_000  # samples in one synthetic track (a clip's, with its margins, is far fewer)
MAX_PLACEHOLDERS = 4096  # per gap: 10 h at a 1 GHz timescale needs 17; more is a hostile stts


def track_tables(track: Track, window: tuple[int, int] | None) -> bytes:
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
        if track.partial_sync is not None and member(track.partial_sync, i + 1):
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
        full_box("stts", 0, 0, *_run_table(deltas)),
        _stsc_table(descriptions),
        full_box("stsz", 0, 0, struct.pack(">II", 0, len(sizes)), pack("I", sizes)),
        full_box("co64", 0, 0, struct.pack(">I", len(offsets)), pack("Q", offsets)),
    ]
    if track.ctts is not None:
        parts.append(full_box("ctts", track.ctts_version, 0, *_run_table(cts)))
    if track.sync is not None:
        parts.append(full_box("stss", 0, 0, struct.pack(">I", len(sync)), pack("I", sync)))
    if track.partial_sync is not None:
        parts.append(full_box("stps", 0, 0, struct.pack(">I", len(partial)), pack("I", partial)))
    if track.sdtp is not None:
        parts.append(full_box("sdtp", 0, 0, bytes(sdtp)))
    for header, runs in track.groups:
        indices = [0 if step else _group_of(runs, i) for i, _, step in rows]
        parts.append(box("sbgp", header, *_sbgp_body(indices)))
    return b"".join(parts)


def _rows(track: Track, window: tuple[int, int] | None) -> list[tuple[int, int, int]]:
    """(source sample, decode time, placeholder length or 0) per output sample.

    Kept: the first and the last HEAD_SAMPLES samples, those around the edit's start (the
    demuxer applies the edit list from them), and the window; gaps become placeholders.
    """
    n = track.samples
    ranges = [(0, HEAD_SAMPLES - 1), (n - HEAD_SAMPLES, n - 1)]
    if track.edit_media_time > 0:
        ranges.append(_edit_range(track))
    if window is not None:
        ranges.append(window)
    merged = _merged(ranges, n)
    if sum(b - a + 1 for a, b in merged) > MAX_ROWS:
        raise Unsupported("a window of more samples than a clip can hold")
    rows: list[tuple[int, int, int]] = []
    for (a, b), following in itertools.zip_longest(merged, merged[1:]):
        rows += [(i, 0, 0) for i in range(a, b + 1)]
        if following is None:
            break
        rows += _placeholders(track.dts(b + 1), track.dts(following[0]), following[0])
    return rows


def _edit_range(track: Track) -> tuple[int, int]:
    """The samples the demuxer reads to start the edit: it starts from a keyframe shown (not
    only decoded) at or before the edit's media time, so back to one, and one more, as the
    source holds them."""
    at = track.sample_at(track.edit_media_time)
    key = track.sync_at_or_before(at)
    for _ in range(64):
        if not key or track.dts(key) + track.composition(key) <= track.edit_media_time:
            break
        key = track.sync_at_or_before(key - 1)
    else:
        raise Unsupported("no keyframe shown before the edit within 64 keyframes")
    key = track.sync_at_or_before(key - 1) if key else 0
    return key or 0, at + HEAD_SAMPLES


def _merged(ranges: list[tuple[int, int]], n: int) -> list[list[int]]:
    """The ranges clipped to the track's n samples, sorted, those that touch joined."""
    merged: list[list[int]] = []
    for a, b in sorted((max(0, a), min(n - 1, b)) for a, b in ranges):
        if a > b:
            continue
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def _placeholders(at: int, stop: int, sample: int) -> list[tuple[int, int, int]]:
    """Rows spanning decode times [at, stop), each at most one stts delta long, described
    like `sample` (the next kept one)."""
    if stop - at > MAX_PLACEHOLDERS * MAX_GAP_TICKS:
        raise Unsupported("a gap in decode time no placeholders can span")
    rows = []
    while at < stop:
        step = min(stop - at, MAX_GAP_TICKS)
        rows.append((sample, at, step))
        at += step
    return rows


def _group_of(runs: Runs, sample: int) -> int:
    if sample >= runs.count:
        return 0
    return runs.values[runs.run_of(sample)]


def _sbgp_body(indices: list[int]) -> tuple[bytes, bytes]:
    counts, values = _runs(indices)
    flat = [x for pair in zip(counts, values, strict=True) for x in pair]
    return struct.pack(">I", len(counts)), pack("I", flat)


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
    return struct.pack(">I", len(counts)), pack("I", [x & 0xFFFFFFFF for x in flat])


def _stsc_table(descriptions: list[int]) -> bytes:
    """One sample per chunk: a run per change of sample description."""
    rows: list[int] = []
    chunk = 1
    for value, group in itertools.groupby(descriptions):
        rows += [chunk, 1, value]
        chunk += sum(1 for _ in group)
    return full_box("stsc", 0, 0, struct.pack(">I", len(rows) // 3), pack("I", rows))


_PATH = {"moov": "trak", "trak": "mdia", "mdia": "minf", "minf": "stbl"}


def rebuild(skeleton: bytes, tables: Sequence[bytes]) -> bytes:
    """The skeleton moov with each trak's stbl given its tables (in trak order).

    Only moov > trak > mdia > minf > stbl is followed, as the parse did; a skeleton with
    another number of stbl boxes than tables (a damaged sidecar) is refused.
    """
    pending = list(tables)
    used = 0

    def walk(s: int, e: int) -> bytes:
        nonlocal used
        kind, _, body, end = children(skeleton, s, e)[0]
        parts = []
        for ckind, cs, _, ce in children(skeleton, body, end):
            if ckind == "stbl" and kind == "minf":
                if used >= len(pending):
                    raise Unsupported("more sample tables in the skeleton than tracks")
                _, _, sbody, send = children(skeleton, cs, ce)[0]
                parts.append(box("stbl", skeleton[sbody:send], pending[used]))
                used += 1
            elif _PATH.get(kind) == ckind:
                parts.append(walk(cs, ce))
            else:
                parts.append(skeleton[cs:ce])
        return box(kind, *parts)

    moov = walk(0, len(skeleton))
    if used != len(pending):
        raise Unsupported("fewer sample tables in the skeleton than tracks")
    return moov
