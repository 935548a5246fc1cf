"""Where a clip closes: one rule, used by the plan (on an index) and by the demux (live).

A frame's stored duration is its decode-time step (stts), not its time on screen: with
B-frames and a variable rate, a clip cut after the last frame shown before `end` can hold a
frame whose stored end lies past the source's next frame (stored later, so missing from the
clip). The clip stops at the first frame decoded at or past `end` that shows after every
frame it holds (`stops_here`), then runs on in decode order until it is closed (`closure`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clipsearch.clipping.samples import CompositionOffsets

REORDER_MARGIN = 8  # extra video samples planned past `end` (B-frame reordering)
# Decode-order samples looked at past the clip for the next frame shown (B-frame reordering
# and an open GOP's leading pictures stay well within this).
NEXT_SHOWN_SCAN = 2 * REORDER_MARGIN + 1


def stops_here(dts: int, pts: int, end_ts: int, max_pts: int | None) -> bool:
    """Whether a frame decoded at `dts` and shown at `pts` is past the clip: decoded at or
    after `end_ts`, and shown after every frame the clip holds (whose latest is `max_pts`)."""
    return dts >= end_ts and max_pts is not None and pts > max_pts


def closure(
    dts: Callable[[int], int],
    pts: Callable[[int], int | None],
    count: int,
    last: int,
    shown_until: int,
) -> tuple[int, int] | None:
    """(e, its end): the first sample e >= `last` (decode order) that closes a clip.

    A clip of the samples up to `last`, whose frames are on screen until `shown_until`, is
    closed when every later sample shows at or after that; each sample taken in extends it
    by its stored duration (the next decode time). None when the index cannot tell within
    NEXT_SHOWN_SCAN samples.
    """
    for e in range(last, min(count, last + 1 + NEXT_SHOWN_SCAN)):
        if e > last:
            t = pts(e)
            if t is None or e + 1 >= count:
                return None
            shown_until = max(shown_until, t + dts(e + 1) - dts(e))
        later = [pts(i) for i in range(e + 1, min(count, e + 1 + NEXT_SHOWN_SCAN))]
        if any(t is None for t in later):
            return None
        if all(t is not None and t >= shown_until for t in later):
            return e, shown_until
    return None


def closing_dts(entries: Any, ctts: CompositionOffsets | None, video: list[Any]) -> int | None:
    """The decode time of the last sample a demuxed clip must include to be closed.

    `entries` are the demuxer's index entries of the video and `ctts` its composition
    offsets, indexed alike (no read). None: the clip is closed as it stands, or the index
    cannot tell, and the clip ends where it stopped.
    """
    if ctts is None or not len(entries) or not video:
        return None

    def dts(i: int) -> int:
        return int(entries[i].timestamp)

    def pts(i: int) -> int | None:
        offset = ctts.at(i)
        return None if offset is None else int(entries[i].timestamp) + offset

    shift: int | None = None
    last = -1
    for p in video:
        i = entries.search_timestamp(p.dts, backward=True, any_frame=True)
        rel = pts(i) if i >= 0 and dts(i) == p.dts else None
        if rel is None or (shift is not None and p.pts - rel != shift):
            return None  # entries do not map to samples one to one here
        shift = p.pts - rel
        last = max(last, i)
    if shift is None:
        return None
    shown_until = max(p.pts + (p.duration or 0) for p in video) - shift
    closed = closure(dts, pts, len(entries), last, shown_until)
    return None if closed is None or closed[0] == last else dts(closed[0])
