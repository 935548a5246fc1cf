"""The tables way: the demuxer reads a synthetic moov of the clip's samples, not the source's.

The source's moov is renamed `free` and a moov holding the windows' samples (which keep their
offsets) is served after the source's end (`movie.Movie.synthesize`). `calibrate` reads
each track's shift from stored to demuxer decode times off the samples both share.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from clipsearch.clipping.codecs import video_composition_offsets
from clipsearch.clipping.demux import Bounds
from clipsearch.clipping.errors import TablesCannotServe
from clipsearch.clipping.index import Box
from clipsearch.clipping.moov import HEAD_SAMPLES
from clipsearch.clipping.movie import Movie
from clipsearch.clipping.plan import TablesIndex, Window, track_of
from clipsearch.clipping.reader import SparseFile
from clipsearch.clipping.samples import CompositionOffsets, Unsupported
from clipsearch.clipping.sources import RangeSource
from clipsearch.clipping.streams import Streams

Regions = tuple[tuple[int, bytes], ...]


def outside_moov(regions: Regions, moov: Box) -> Regions:
    """What the walk holds, less the moov (the tables replace it)."""
    out = []
    for offset, data in regions:
        end = offset + len(data)
        if end <= moov.offset or offset >= moov.end:
            out.append((offset, data))
            continue
        if offset < moov.offset:
            out.append((offset, data[: moov.offset - offset]))
        if end > moov.end:
            out.append((moov.end, data[moov.end - offset :]))
    return tuple(out)


def synthetic_file(
    source: RangeSource,
    movie: Movie,
    moov: Box,
    spans: Regions,
    windows: Sequence[Window | None],
    size: int,
) -> tuple[SparseFile, CompositionOffsets | None]:
    """The source as the demuxer should see it: its moov renamed `free`, and after its end a
    synthetic moov of the windows' samples; with the video's ctts in that moov.

    Tables the synthetic moov cannot be written from (`Unsupported`) cannot serve a cut.
    """
    try:
        synthetic = movie.synthesize(windows)
    except Unsupported as error:
        raise TablesCannotServe(f"no synthetic moov: {error}") from error
    header = struct.pack(">I4s", moov.size, b"free")
    regions = tuple(sorted([*spans, (moov.offset, header)]))
    f = SparseFile(source, size=size, regions=regions, tail=synthetic)
    return f, video_composition_offsets(synthetic)


def calibrate(container: Any, movie: Movie, video: Any) -> TablesIndex:
    """Each track's shift from stored to demuxer decode times, read off the entries of the
    samples the synthetic index shares with the source (its first ones)."""
    shifts: dict[int, int] = {}
    first_entry: int | None = None
    for stream in container.streams:
        track = track_of(movie, stream)
        if track is None:
            continue
        t = movie.tracks[track]
        if stream is video and len(stream.index_entries):
            first_entry = int(stream.index_entries[0].timestamp)
        offsets = {t.offset(i): i for i in range(min(HEAD_SAMPLES, t.samples))}
        for entry in stream.index_entries:
            i = offsets.get(int(entry.pos))
            if i is not None:
                shifts[track] = int(entry.timestamp) - t.dts(i)
                break
        else:
            shifts[track] = t.edit_shift
    return TablesIndex(movie, shifts, first_entry)


def window_bounds(
    index: TablesIndex, streams: Streams, windows: Sequence[Window | None]
) -> dict[int, Bounds]:
    """Per stream index, the decode times its synthetic index holds and whether the track
    goes on past them (a window joined to the first or last samples is kept whole)."""
    movie = index.movie
    out: dict[int, Bounds] = {}
    for stream in streams.all:
        track = track_of(movie, stream)
        bounds = windows[track] if track is not None else None
        if bounds is None or track is None:
            continue
        t = movie.tracks[track]
        shift = index.shifts.get(track, 0)
        first, last = bounds
        if first <= HEAD_SAMPLES:  # joined to the first samples, kept whole
            first = 0
        if last >= t.samples - HEAD_SAMPLES - 1:
            last = t.samples - 1
        short = last < t.samples - 1
        out[stream.index] = (t.dts(first) + shift, t.dts(last) + shift, short)
    return out
