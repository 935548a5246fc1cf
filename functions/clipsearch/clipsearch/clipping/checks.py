"""Checks on a clip's packets before it is written: each declines a source no clip of which
can be the source's (a bad seek, audio that does not join up, samples sharing bytes)."""

from __future__ import annotations

import itertools
import statistics
from fractions import Fraction
from typing import Any

from clipsearch.clipping.errors import ClipReason, ClipUnavailable

MAX_VIDEO_GAP_S = 2.0  # a jump in decode time this large inside a clip means a bad seek


def check_continuous(video: list[Any], tb: Fraction, fragmented: bool) -> None:
    """Consecutive video packets are spaced like frames, not seconds apart (a bad seek).

    FFmpeg cannot seek into some fragment layouts (a moof per track, fragments not starting
    on keyframes): it lands on a keyframe of a fragment it has read and then jumps to the
    target, a clip that decodes cleanly and is wrong. Fragments are checked tighter: a
    missing one is a gap of its duration.
    """
    if len(video) < 3:
        return
    steps = [float((q.dts - p.dts) * tb) for p, q in itertools.pairwise(video)]
    typical = statistics.median(steps)
    worst = max(steps)
    limit = max(0.25, 4 * typical) if fragmented else max(MAX_VIDEO_GAP_S, 10 * typical)
    if min(steps) < 0:
        raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, "video decode times go backwards")
    if worst > limit:
        raise ClipUnavailable(
            ClipReason.UNSUPPORTED_CONTAINER if fragmented else ClipReason.MALFORMED_SOURCE,
            f"the demuxer could not seek here: the video jumps {worst:.2f}s inside the clip "
            f"(frames {typical:.3f}s apart)",
        )


def check_audio_run(packets: list[Any]) -> None:
    """Each audio packet starts where the one before it ends (decode times from the trun).

    A clip is one flat run of samples: where the source's fragments overlap (a tfdt set a
    few ms before the previous fragment's end) or leave a gap, the muxer would shorten or
    stretch the packet before the join, and the clip would play the audio other than the
    source does. Such a source is declined, not cut wrong.
    """
    ordered = sorted(packets, key=lambda p: p.dts)
    for p, q in itertools.pairwise(ordered):
        step = q.dts - (p.dts + (p.duration or 0))
        if step:
            ms = float(abs(step) * p.time_base) * 1000
            raise ClipUnavailable(
                ClipReason.UNSUPPORTED_CONTAINER,
                f"the audio's fragments {'overlap' if step < 0 else 'leave a gap'} by "
                f"{ms:.1f} ms at {float(q.dts * q.time_base):.3f}s: a clip cannot play them "
                "as the source does",
            )


INDEX_BOXES = frozenset({"ftyp", "styp", "moov", "moof", "mfra", "sidx"})


def check_no_shared_bytes(packets: list[Any], index: list[tuple[int, int]] | None = None) -> None:
    """No two of the clip's samples, nor a sample and an index box (`index`: offset and
    size of the moov, moofs, ...), lie on the same bytes of the source.

    No muxer writes that; a sample table or trun that says so (a size or chunk offset that
    runs one sample into the next, or into the moov) is read one way from the file's start
    and another after a seek or from our synthetic index (which renames the moov), so no
    clip of it can be the source's.
    """
    spans = sorted(
        [(int(p.pos), int(p.size)) for p in packets if p.pos is not None and p.pos >= 0]
        + list(index or ())
    )
    for (a, n), (b, _) in itertools.pairwise(spans):
        if b < a + n:
            raise ClipUnavailable(
                ClipReason.MALFORMED_SOURCE,
                f"two samples share bytes at {b} of the source (one of {n} bytes from {a})",
            )
