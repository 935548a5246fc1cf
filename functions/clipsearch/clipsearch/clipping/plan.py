"""One plan per cut, whatever the layout: where to seek, which bytes to fetch, where to stop.

`plan(index, streams, start, end, ...)` takes the source's index in one of three forms, each
a value built once per opened demuxer: `MoovIndex` (FFmpeg parsed the whole moov),
`TablesIndex` (our tables; the cut opens a synthetic index of the `windows` it plans) and
`FragmentIndex` (the mfra's tfra points or the sidx, parsed once per source). No I/O.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from clipsearch.clipping.closing import NEXT_SHOWN_SCAN
from clipsearch.clipping.codecs import video_composition_offsets
from clipsearch.clipping.errors import ClipReason, ClipUnavailable, TablesCannotServe
from clipsearch.clipping.movie import Movie
from clipsearch.clipping.planner import EntriesIndex, TableIndex, plan_audio, plan_video, window
from clipsearch.clipping.samples import CompositionOffsets, LastSample, last_samples
from clipsearch.clipping.streams import Streams

AUDIO_MARGIN_S = 0.5
# Indexed (moov) files seek each stream on its own: the audio restarts at its sample at or
# before the keyframe's decode time, wherever it is stored. Audio is read until it passes the
# clip's last video frame, which B-frame reordering puts a few frames past `end`.
AUDIO_TAIL_FRAMES = 4
CUT_SLACK_BYTES = 16 * 1024 * 1024  # what a cut may fetch beyond its plan
FRAGMENT_PEEK = 64 * 1024  # the next fragment's moof, to see the first packet past `end`
# What a fragmented plan may span relative to the clip's share of the file, before it is
# refused instead of read.
FRAGMENT_PLAN_MIN = 16 * 1024 * 1024
FRAGMENT_PLAN_FACTOR = 8
# A synthetic index holds the clip's samples and this much more around them: the keyframes a
# cut may step back to (from recovery points it cannot start at) and, past the plan, room for
# the closing scan; the audio, a second either side of the video.
WINDOW_TAIL = 4 * NEXT_SHOWN_SCAN + 2  # the closing scan reads up to 2 scans past the clip
SEEK_ATTEMPTS = 6  # keyframes a cut steps back through to find one a decoder can start at
WINDOW_AUDIO_S = 1.0
EPS = 1e-6

Span = tuple[int, int]
Window = tuple[int, int]


class TfraPoint(Protocol):
    """A random-access point of the mfra (`fragindex.parse_tfra`): its time and moof's offset."""

    @property
    def time(self) -> int: ...

    @property
    def moof_offset(self) -> int: ...


class SidxReference(Protocol):
    """A sidx reference (`fragindex.parse_sidx`): its start time and byte offset."""

    @property
    def time(self) -> int: ...

    @property
    def offset(self) -> int: ...


@dataclass(frozen=True)
class MoovIndex:
    """FFmpeg's own index entries (the streams'), with what the moov it parsed says of them:
    the video's ctts and each track's last sample, read off it on first use (no read: the
    moov is held); `moov` gives its bytes, None when it is not held."""

    moov: Callable[[], bytes | None]

    @functools.cached_property
    def ctts(self) -> CompositionOffsets | None:
        moov = self.moov()
        return None if moov is None else video_composition_offsets(moov)

    @functools.cached_property
    def last_samples(self) -> dict[int, LastSample]:
        moov = self.moov()
        return {} if moov is None else last_samples(moov)


@dataclass(frozen=True)
class TablesIndex:
    """Our tables of the source, and how the demuxer's times relate to them.

    `shifts` maps each track's stored decode times to the demuxer's; `first_entry` is the
    demuxer's first video entry's timestamp (an edit list may start its index late).
    """

    movie: Movie
    shifts: Mapping[int, int]
    first_entry: int | None

    @functools.cached_property
    def last_samples(self) -> dict[int, LastSample]:
        """Per track id, the source's last sample (offset, stts duration)."""
        return {
            t.track_id: LastSample(
                t.offset(t.samples - 1), t.duration_of(t.samples - 1), t.timescale
            )
            for t in self.movie.tracks
            if t.samples
        }


@dataclass(frozen=True)
class FragmentIndex:
    """A fragmented source's index: tfra points per track id, else the sidx's subsegments.

    `tfra_times` says how the demuxer should read the tfra times ("dts" | "pts"), or "" when
    it must not seek with them (no mfra, or one the demuxer cannot seek in).
    """

    tfra: Mapping[int, tuple[TfraPoint, ...]]
    mfra_offset: int | None
    sidx_timescale: int
    subsegments: tuple[SidxReference, ...]
    tfra_times: str

    def duration(self, video: Any) -> float:
        """Seconds the fragment index spans (0 when unknown)."""
        if self.mfra_offset is not None and video.time_base is not None:
            points = self.tfra.get(int(video.id)) or ()
            if points:
                return float(max(p.time for p in points) * video.time_base)
        if self.subsegments and self.sidx_timescale:
            return self.subsegments[-1].time / self.sidx_timescale
        return 0.0


@dataclass(frozen=True)
class CutPlan:
    """Where the demuxer seeks (`seek_ts`, video time base), the byte spans to fetch first,
    and the video decode time the demux stops at (`last_dts`, None: run to `end`).

    Tables: `windows[t]` = the samples track t's synthetic index holds (None: unused).
    Fragments: `seek_points`, the tfra points a keyframe's fragment may start at, latest
    first (`fragmented.keyframe_seek` reads them; `seek_ts` when none fits).
    """

    seek_ts: int
    spans: tuple[Span, ...]
    last_dts: int | None = None
    windows: tuple[Window | None, ...] | None = None
    seek_points: tuple[TfraPoint, ...] = ()

    @property
    def budget(self) -> int:
        """Bytes the cut may fetch: its plan and some slack for reads it did not foresee."""
        return sum(b - a for a, b in self.spans) + CUT_SLACK_BYTES


def plan(
    index: MoovIndex | TablesIndex | FragmentIndex,
    streams: Streams,
    start: float,
    end: float,
    *,
    file_size: int,
    max_preroll_s: float,
) -> CutPlan:
    """The plan of a clip [start, end] (seconds), from whichever index the source has."""
    if isinstance(index, FragmentIndex):
        return _plan_fragments(index, streams, start, end, file_size, max_preroll_s)
    if isinstance(index, TablesIndex):
        return _plan_tables(index, streams, start, end, file_size, max_preroll_s)
    return _plan_moov(index, streams, start, end, file_size)


def track_of(movie: Movie, stream: Any) -> int | None:
    """The movie track behind a demuxer stream (FFmpeg numbers them in trak order)."""
    tracks = movie.tracks
    index = int(stream.index)
    if index < len(tracks) and tracks[index].track_id == int(stream.id):
        return index
    return next((i for i, t in enumerate(tracks) if t.track_id == int(stream.id)), None)


def _plan_moov(
    index: MoovIndex, streams: Streams, start: float, end: float, file_size: int
) -> CutPlan:
    v = streams.video
    entries = EntriesIndex(v.index_entries, None if index.ctts is None else index.ctts.at)
    video = plan_video(
        entries,
        start,
        end,
        time_base=v.time_base,
        start_time=v.start_time or 0,
        file_size=file_size,
    )
    spans = list(video.spans)
    since = float(entries.timestamp(video.first) * v.time_base)
    rate = v.average_rate
    until = video.video_end + (AUDIO_TAIL_FRAMES / float(rate) if rate else AUDIO_MARGIN_S)
    for a in streams.audios:
        audio = EntriesIndex(a.index_entries, None)
        spans += plan_audio(audio, a.time_base, since, until, file_size)[2]
    return CutPlan(video.keyframe_pts, tuple(spans), video.last_dts)


def _plan_tables(
    index: TablesIndex,
    streams: Streams,
    start: float,
    end: float,
    file_size: int,
    max_preroll_s: float,
) -> CutPlan:
    """The plan from our tables, and the window of samples each track's synthetic index
    holds: as far back as the demux may step, but no further than a keyframe could start
    the clip (max_preroll_s), so a source with keyframes minutes apart keeps it small."""
    movie, v = index.movie, streams.video
    vt = track_of(movie, v)
    if vt is None:
        raise TablesCannotServe("the video stream has no track")
    video = TableIndex(movie.tracks[vt], index.shifts.get(vt, 0))
    tb = v.time_base
    plan = plan_video(
        video,
        start,
        end,
        time_base=tb,
        start_time=v.start_time or 0,
        file_size=file_size,
        first_timestamp=index.first_entry,
    )
    w0, w1 = _video_window(video, plan.first, plan.last, start - max_preroll_s - 1, tb)
    windows: list[Window | None] = [None] * len(movie.tracks)
    windows[vt] = (w0, w1)
    spans = list(plan.spans)
    since = float(video.timestamp(plan.first) * tb)
    until = plan.video_end + _average_frames(video, AUDIO_TAIL_FRAMES)
    audio_since = float(video.timestamp(w0) * tb) - WINDOW_AUDIO_S
    audio_until = float(video.timestamp(w1) * tb) + WINDOW_AUDIO_S
    for a in streams.audios:
        at = track_of(movie, a)
        if at is None:
            raise TablesCannotServe("an audio stream has no track")
        audio = TableIndex(movie.tracks[at], index.shifts.get(at, 0))
        spans += plan_audio(audio, a.time_base, since, until, file_size)[2]
        windows[at] = window(audio, audio_since, audio_until, a.time_base)
    return CutPlan(plan.keyframe_pts, tuple(spans), plan.last_dts, tuple(windows))


def _video_window(
    video: TableIndex, first: int, last: int, earliest_s: float, tb: Fraction
) -> Window:
    """The video samples a synthetic index holds: back through SEEK_ATTEMPTS keyframes (not
    before `earliest_s`), and WINDOW_TAIL past the plan."""
    earliest = video.search(math.floor(earliest_s / tb), backward=True, any_frame=True)
    w0 = first
    for _ in range(SEEK_ATTEMPTS):
        before = video.track.sync_at_or_before(w0 - 1) if w0 else None
        if before is None or before < earliest:
            break
        w0 = before
    return w0, min(len(video) - 1, last + WINDOW_TAIL)


def _average_frames(video: TableIndex, frames: int) -> float:
    """`frames` frames of the source's average rate, in seconds (a synthetic index's
    placeholders would skew the demuxer's own average)."""
    t = video.track
    last = t.samples - 1
    span = t.dts(last) + t.duration_of(last)
    return frames * span / t.samples / t.timescale if span else AUDIO_MARGIN_S


def _plan_fragments(
    index: FragmentIndex,
    streams: Streams,
    start: float,
    end: float,
    file_size: int,
    max_preroll_s: float,
) -> CutPlan:
    """Byte spans from the fragment index (the mfra's tfra, else the sidx), refused when far
    larger than the clip's share of the file; the seek starts at a keyframe's fragment."""
    spans = _tfra_spans(index, streams, start, end, file_size) or _sidx_spans(
        index, start, end, file_size
    )
    planned = sum(max(0, b - a) for a, b in spans)
    duration = index.duration(streams.video)
    share = file_size * (end - start) / duration if duration > 0 else 0
    cap = max(FRAGMENT_PLAN_MIN, FRAGMENT_PLAN_FACTOR * share)
    if planned > cap:
        raise ClipUnavailable(
            ClipReason.INDEX_TOO_LARGE,
            f"the fragment index leaves {planned} bytes to read for a "
            f"{end - start:.1f}s clip (cap {int(cap)})",
        )
    v = streams.video
    s_ts = math.floor((start + EPS) / v.time_base)
    points: tuple[TfraPoint, ...] = ()
    if index.mfra_offset is not None and index.tfra_times:
        video_points = index.tfra.get(int(v.id)) or ()
        points = tuple(reversed(sorted((p for p in video_points if p.time <= s_ts), key=_time)))
    earliest = s_ts - max_preroll_s / v.time_base
    points = tuple(p for p in _until_earlier(points, earliest))
    return CutPlan(int(s_ts), tuple(spans), seek_points=points)


def _time(point: TfraPoint) -> int:
    return point.time


def _until_earlier(points: tuple[TfraPoint, ...], earliest: float) -> list[TfraPoint]:
    """The points (latest first) down to the first one before `earliest`, exclusive."""
    out = []
    for point in points:
        if point.time < earliest:
            break
        out.append(point)
    return out


def _tfra_spans(
    index: FragmentIndex, streams: Streams, start: float, end: float, file_size: int
) -> list[Span]:
    if index.mfra_offset is None:
        return []
    spans = []
    for stream in streams.all:
        points = index.tfra.get(int(stream.id))
        if not points or stream.time_base is None:
            continue
        s_ts, e_ts = start / stream.time_base, end / stream.time_base
        before = [p.moof_offset for p in points if p.time <= s_ts] or [points[0].moof_offset]
        after = [p.moof_offset for p in points if p.time > e_ts]
        hi = min(after) + FRAGMENT_PEEK if after else index.mfra_offset
        spans.append((before[-1], min(hi, file_size)))
    return spans


def _sidx_spans(index: FragmentIndex, start: float, end: float, file_size: int) -> list[Span]:
    subsegments, timescale = index.subsegments, index.sidx_timescale
    if not subsegments or not timescale:
        return []
    s, e = start * timescale, end * timescale
    first_seg = [x for x in subsegments if x.time <= s] or list(subsegments[:1])
    later = [x for x in subsegments if x.time > e]
    hi = later[0].offset + FRAGMENT_PEEK if later else file_size
    return [(first_seg[-1].offset, min(hi, file_size))]
