"""Reading a written clip back before it is kept: a wrong clip must not reach a subscriber."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from clipsearch.clipping.errors import ClipReason, ClipUnavailable

SELF_CHECK_PACKETS = 400  # decoded at most, to reach the clip's first shown frame


class _Failed(Exception):
    """A written clip failed its read-back."""


def codec_name(stream: Any) -> str:
    """The codec's id name (`av1`, not the decoder `libdav1d`)."""
    with contextlib.suppress(Exception):
        return str(stream.codec_context.codec.canonical_name)
    return "unknown"


def self_check(
    path: Path,
    *,
    codec: str,
    shown_s: float,
    audio_tracks: int,
    check_deadline: Callable[[], None],
) -> None:
    """The clip's streams, codec and duration are as planned and its first keyframe decodes.

    A clip that fails is never kept: the caller falls back with SELF_CHECK_FAILED.
    """
    check_deadline()
    try:
        with av.open(str(path)) as clip:
            videos, audios = clip.streams.video, clip.streams.audio
            if len(videos) != 1 or len(audios) != audio_tracks:
                raise _Failed(f"{len(videos)} video and {len(audios)} audio streams")
            cv = videos[0]
            if codec_name(cv) != codec:
                raise _Failed(f"video codec {codec_name(cv)}, source {codec}")
            if cv.time_base is None or not cv.frames:
                raise _Failed("no video frames")
            length = float((cv.duration or 0) * cv.time_base)
            tolerance = max(0.25, 3 * float(cv.duration or 0) * cv.time_base / cv.frames)
            if abs(length - shown_s) > tolerance:
                raise _Failed(f"video lasts {length:.3f}s, planned {shown_s:.3f}s")
            frame_s = float(cv.duration * cv.time_base) / cv.frames if cv.duration else 0
            _decode_first(clip, cv, frame_s)
    except ClipUnavailable:
        raise
    except _Failed as error:
        raise ClipUnavailable(ClipReason.SELF_CHECK_FAILED, str(error)) from None
    except Exception as error:
        raise ClipUnavailable(
            ClipReason.SELF_CHECK_FAILED, f"the clip does not read back: {error}"
        ) from None


def _decode_first(clip: Any, stream: Any, frame_s: float) -> None:
    """The first packet is a keyframe and the first frame a decoder shows is at 0 s.

    A start a decoder cannot begin at (a recovery point marked as sync) shows later.
    """
    decoder = stream.codec_context
    packets = 0
    for packet in clip.demux(stream):
        if not packet.size:
            continue
        if packets == 0 and not packet.is_keyframe:
            raise _Failed("the first video packet is not a keyframe")
        packets += 1
        if decoder is None:  # no decoder for the codec in this build: the demux checks stand
            return
        frames = list(decoder.decode(packet))
        if frames or packets >= SELF_CHECK_PACKETS:
            break
    else:
        frames = list(decoder.decode(None)) if decoder is not None and packets else []
    if not frames:
        raise _Failed("the clip's first frames do not decode")
    shown = frames[0].time
    if shown is None or abs(shown) > max(frame_s / 2, 0.002):
        raise _Failed(f"the first decoded frame shows at {shown}s, not 0")
