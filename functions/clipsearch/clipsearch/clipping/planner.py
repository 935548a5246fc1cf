"""Which samples a clip needs, and where their bytes are: pure functions over a sample index.

The index is either FFmpeg's (the demuxer's entries, when it parsed the whole moov) or ours
(`movie.Track` and the demuxer's time shift for that track): both answer the same
questions, so a clip is planned the same way whichever one holds the source.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from clipsearch.clipping.closing import REORDER_MARGIN, closure, stops_here
from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.movie import Track

MAX_CLIP_SAMPLES = 200_000  # per track and clip: 600 s of 120 fps video plus audio, with room
_EPS = 1e-6


class SampleIndex(Protocol):
    """A track's samples in decode order, timed on the demuxer's timeline."""

    def __len__(self) -> int: ...

    def timestamp(self, i: int) -> int:
        """Decode time of sample i, as the demuxer reports it."""

    def keyframe(self, i: int) -> bool: ...

    def span(self, i: int) -> tuple[int, int]:
        """(byte offset, size) of sample i in the source."""

    def composition(self, i: int) -> int | None:
        """Sample i's composition offset (None: unknown here)."""

    def search(self, ts: int, *, backward: bool, any_frame: bool) -> int:
        """FFmpeg's av_index_search_timestamp: -1 when there is no such sample."""


class EntriesIndex:
    """FFmpeg's index entries of a stream, with the video's ctts (indexed by entry)."""

    def __init__(self, entries: Any, ctts: Callable[[int], int | None] | None) -> None:
        self._entries = entries
        self._ctts = ctts

    def __len__(self) -> int:
        return len(self._entries)

    def timestamp(self, i: int) -> int:
        return int(self._entries[i].timestamp)

    def keyframe(self, i: int) -> bool:
        return bool(self._entries[i].is_keyframe)

    def span(self, i: int) -> tuple[int, int]:
        entry = self._entries[i]
        return int(entry.pos), int(entry.size)

    def composition(self, i: int) -> int | None:
        return None if self._ctts is None else self._ctts(i)

    def search(self, ts: int, *, backward: bool, any_frame: bool) -> int:
        return int(self._entries.search_timestamp(ts, backward=backward, any_frame=any_frame))


class TableIndex:
    """Our own tables of one track; `shift` maps stored decode times to the demuxer's."""

    def __init__(self, track: Track, shift: int) -> None:
        self.track = track
        self.shift = shift

    def __len__(self) -> int:
        return self.track.samples

    def timestamp(self, i: int) -> int:
        return self.track.dts(i) + self.shift

    def keyframe(self, i: int) -> bool:
        return self.track.is_sync(i)

    def span(self, i: int) -> tuple[int, int]:
        return self.track.offset(i), self.track.sizes[i]

    def composition(self, i: int) -> int | None:
        return self.track.composition(i)

    def search(self, ts: int, *, backward: bool, any_frame: bool) -> int:
        t = self.track
        raw = ts - self.shift
        i = t.sample_at(raw)
        at_or_before = i if t.dts(i) <= raw else -1
        if backward:
            if at_or_before < 0 or any_frame:
                return at_or_before
            found = t.sync_at_or_before(at_or_before)
            return -1 if found is None else found
        exact = at_or_before >= 0 and t.dts(at_or_before) == raw
        j = at_or_before if exact else at_or_before + 1
        if j >= t.samples:
            return -1
        if any_frame or t.is_sync(j):
            return j
        after = t.sync_after(j)
        return -1 if after is None else after


@dataclass(frozen=True)
class VideoPlan:
    """The video of a clip: samples [first, last], where to seek, where the video may end."""

    first: int
    last: int
    keyframe_pts: int  # seek here: the keyframe's presentation time
    last_dts: int | None  # the demux stops here: the next GOP starts within the margin
    video_end: float  # seconds: `end`, or later when the clip must run on to be closed
    spans: tuple[tuple[int, int], ...]


def plan_video(
    index: SampleIndex,
    start: float,
    end: float,
    *,
    time_base: Fraction,
    start_time: int,
    file_size: int,
    first_timestamp: int | None = None,
) -> VideoPlan:
    """The keyframe at or before `start`, the samples to just past `end`, their bytes.

    `last_dts` is set when the next GOP starts within the reorder margin: that keyframe
    shows after everything the clip holds, so the clip ends before it and its bytes (the
    largest frame of a GOP) are not planned.
    """
    count = len(index)
    if count == 0:
        raise ClipUnavailable(ClipReason.UNSUPPORTED_CONTAINER, "video index is empty")
    # Index timestamps are decode times; a keyframe shows `delay` later. `first_timestamp`:
    # the demuxer's first entry, when its index may start after our first sample (an edit).
    first = index.timestamp(0) if first_timestamp is None else first_timestamp
    delay = start_time - first
    start_ts = math.floor(start / time_base) - delay
    k = index.search(start_ts, backward=True, any_frame=False)
    if k < 0:
        k = max(index.search(start_ts, backward=False, any_frame=False), 0)
    j = max(index.search(math.ceil(end / time_base), backward=True, any_frame=True), k)
    last = min(count - 1, j + REORDER_MARGIN)
    last_dts: int | None = None
    for i in range(j + 1, last + 1):
        if index.keyframe(i):
            last, last_dts = i - 1, index.timestamp(i - 1)
            break
    last, video_end = plan_closure(index, k, last, end, time_base=time_base, start_time=start_time)
    _bounded(last - k)
    spans = []
    for i in range(k, last + 1):
        pos, size = index.span(i)
        if pos < 0 or pos + size > file_size:
            raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, "video samples lie past the end")
        spans.append((pos, pos + size))
    # Seek by the keyframe's presentation time: lands on it whether the demuxer compares
    # decode or presentation times.
    keyframe_pts = index.timestamp(k) + delay
    return VideoPlan(k, last, keyframe_pts, last_dts, video_end, tuple(spans))


def plan_audio(
    index: SampleIndex, time_base: Fraction, since: float, until: float, file_size: int
) -> tuple[int, int, tuple[tuple[int, int], ...]]:
    """(first, last, byte spans) of an audio track from the sample before `since` to `until`.

    Indexed files seek each stream on its own: the audio restarts at its sample at or before
    the keyframe's decode time (`since`), wherever it is stored.
    """
    if not len(index):
        return 0, -1, ()
    a0 = index.search(math.floor(since / time_base), backward=True, any_frame=True)
    a1 = index.search(math.ceil(until / time_base), backward=True, any_frame=True)
    first = max(a0 - 1, 0)
    _bounded(a1 - first)
    spans = []
    for i in range(first, a1 + 1):
        pos, size = index.span(i)
        if 0 <= pos < file_size:
            spans.append((pos, min(pos + size, file_size)))
    return first, a1, tuple(spans)


def _bounded(samples: int) -> None:
    """A clip's samples are bounded: an index timing millions of samples per second (a
    hostile or broken stts) is refused before a loop over them, as the demux would be."""
    if samples > MAX_CLIP_SAMPLES:
        raise ClipUnavailable(
            ClipReason.MALFORMED_SOURCE, f"{samples} samples in one clip's span of the index"
        )


def plan_closure(
    index: SampleIndex,
    k: int,
    last: int,
    end: float,
    *,
    time_base: Fraction,
    start_time: int,
) -> tuple[int, float]:
    """(last sample to plan, where the video may end: `end` unless the clip is closed later).

    The demux's stop (`closing.stops_here`) replayed on the index, then `closing.closure`:
    the plan covers the closed clip's video and audio, so closing it costs no extra read.
    """
    count = len(index)
    first = index.composition(0)
    if first is None:
        return last, end
    _bounded(last - k)

    def pts(i: int) -> int | None:
        offset = index.composition(i)
        return None if offset is None else index.timestamp(i) + offset

    end_ts = math.ceil((end - _EPS) / time_base)
    max_pts: int | None = None
    shown_until = 0
    for i in range(k, min(count - 1, last + 1)):
        t = pts(i)
        if t is None:
            return last, end
        if stops_here(index.timestamp(i), t, end_ts, max_pts):
            closed = closure(index.timestamp, pts, count, i - 1, shown_until)
            if closed is None or closed[0] == i - 1:
                return last, end
            # The index's pts less the ctts shift: the first sample shows at start_time.
            shift = start_time - (index.timestamp(0) + first)
            closed_end = float((closed[1] + shift) * time_base)
            return max(last, closed[0]), max(end, closed_end)
        max_pts = t if max_pts is None else max(max_pts, t)
        shown_until = max(shown_until, t + index.timestamp(i + 1) - index.timestamp(i))
    return last, end


def merge_spans(
    spans: list[tuple[int, int]], gap_min: int, gap_share: float
) -> list[tuple[int, int]]:
    """Spans merged where the gap between them is cheaper to read than another request."""
    if not spans:
        return []
    spans = sorted(spans)
    total = sum(b - a for a, b in spans)
    gap_ok = max(gap_min, int(total * gap_share))
    merged = [list(spans[0])]
    for a, b in spans[1:]:
        if a - merged[-1][1] <= gap_ok:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def window(index: TableIndex, since: float, until: float, time_base: Fraction) -> tuple[int, int]:
    """The samples of a track decoded between two times (seconds, the demuxer's timeline)."""
    lo = index.search(math.floor(since / time_base), backward=True, any_frame=True)
    hi = index.search(math.ceil(until / time_base), backward=True, any_frame=True)
    return max(lo, 0), max(hi, 0)


__all__ = [
    "EntriesIndex",
    "SampleIndex",
    "TableIndex",
    "VideoPlan",
    "merge_spans",
    "plan_audio",
    "plan_closure",
    "plan_video",
    "window",
]
