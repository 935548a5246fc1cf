"""Reading a written clip back before it is kept: a wrong clip must not reach a subscriber."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from clipsearch.clipping.boxiter import leading_boxes
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
        disagreement = declared_duration_disagreement(path.read_bytes())
        if disagreement:
            raise _Failed(disagreement)
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


def _child(data: bytes, start: int, end: int, kind: str) -> tuple[int, int] | None:
    return next(((b, e) for k, _, b, e in leading_boxes(data, start, end) if k == kind), None)


def _scale_and_duration(data: bytes, body: int) -> tuple[int, int]:
    """(timescale, duration) of an mvhd or mdhd body (version 0 or 1)."""
    if data[body] == 1:
        return struct.unpack_from(">IQ", data, body + 20)
    return struct.unpack_from(">II", data, body + 12)


def declared_duration_disagreement(clip: bytes) -> str:
    """Why the durations the clip's moov declares disagree with its samples ("" if not).

    A player shows mvhd's duration as the clip's length and plays each track for its tkhd
    (its edit list's) duration; FFmpeg's muxer derives them from the packets' times, and
    packets from a source with damaged tables can make them disagree with the samples'
    own durations (stts). Within one sample's duration (plus the delay an edit skips).
    """
    moov = _child(clip, 0, len(clip), "moov")
    mvhd = _child(clip, *moov, "mvhd") if moov else None
    if moov is None or mvhd is None:
        return "no moov"
    movie_scale, movie = _scale_and_duration(clip, mvhd[0])
    longest = 0.0
    slack = 0.0
    for kind, _, trak, trak_end in leading_boxes(clip, *moov):
        if kind != "trak":
            continue
        why, track, frame = _track_disagreement(clip, trak, trak_end)
        if why:
            return why
        longest = max(longest, track / movie_scale)
        slack = max(slack, frame)
    if abs(movie / movie_scale - longest) > slack + 0.001:
        return f"mvhd says {movie / movie_scale:.3f}s, the longest track {longest:.3f}s"
    return ""


def _track_disagreement(clip: bytes, trak: int, trak_end: int) -> tuple[str, int, float]:
    """(why the track's mdhd disagrees with its samples or "", its tkhd duration, the
    duration most of its samples have, in seconds)."""
    tkhd = _child(clip, trak, trak_end, "tkhd")
    mdia = _child(clip, trak, trak_end, "mdia")
    mdhd = _child(clip, *mdia, "mdhd") if mdia else None
    minf = _child(clip, *mdia, "minf") if mdia else None
    stbl = _child(clip, *minf, "stbl") if minf else None
    stts = _child(clip, *stbl, "stts") if stbl else None
    if tkhd is None or mdhd is None or stts is None:
        return "a track without tkhd, mdhd or stts", 0, 0.0
    v1 = clip[tkhd[0]] == 1
    (track,) = struct.unpack_from(">Q" if v1 else ">I", clip, tkhd[0] + (28 if v1 else 20))
    media_scale, media = _scale_and_duration(clip, mdhd[0])
    (count,) = struct.unpack_from(">I", clip, stts[0] + 4)
    runs = [struct.unpack_from(">II", clip, stts[0] + 8 + 8 * n) for n in range(count)]
    samples = sum(n * delta for n, delta in runs)
    frame = max(runs, default=(0, 0))[1] / media_scale  # the delta most samples have
    skipped = _edit_skip(clip, trak, trak_end, media_scale)
    gap = (media - samples) / media_scale
    if not -frame - 0.001 <= gap <= skipped + frame + 0.001:
        why = (
            f"a track's mdhd says {media / media_scale:.3f}s, its samples last "
            f"{samples / media_scale:.3f}s"
        )
        return why, track, frame
    return "", track, frame


def _edit_skip(clip: bytes, trak: int, trak_end: int, media_scale: int) -> float:
    """The longest media time a version-0 edit list starts at, in seconds (0 without one)."""
    skipped = 0.0
    edts = _child(clip, trak, trak_end, "edts")
    elst = _child(clip, *edts, "elst") if edts else None
    if elst is not None and clip[elst[0]] == 0:
        (edits,) = struct.unpack_from(">I", clip, elst[0] + 4)
        for n in range(edits):
            _, media_time = struct.unpack_from(">Ii", clip, elst[0] + 8 + 12 * n)
            skipped = max(skipped, media_time / media_scale)
    return skipped
