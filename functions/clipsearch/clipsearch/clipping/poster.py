"""A JPEG of a clip's first shown frame, for previews."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from clipsearch.clipping.errors import ClipReason, ClipUnavailable


def poster_frame(clip_path: str | Path, *, max_width: int = 640, quality: int = 5) -> bytes:
    """The first decoded frame (edit lists honoured) as JPEG, at most `max_width` wide.

    `quality` is the MJPEG qscale (2 best .. 31 worst). Decoding the clip, not the source,
    means the poster always matches what the clip shows. Raises only ClipUnavailable.
    """
    try:
        return _poster(clip_path, max_width, quality)
    except ClipUnavailable:
        raise
    except Exception as error:  # a clip that passed its self-check should never get here
        raise ClipUnavailable(
            ClipReason.SELF_CHECK_FAILED, f"poster: {type(error).__name__}"
        ) from None


def _poster(clip_path: str | Path, max_width: int, quality: int) -> bytes:
    with av.open(str(clip_path)) as container:
        if not container.streams.video:
            raise ClipUnavailable(ClipReason.NO_VIDEO_STREAM, "clip has no video")
        stream = container.streams.video[0]
        frame = next(container.decode(stream), None)
    if frame is None:
        raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, "no decodable frame in the clip")
    width, height = frame.width, frame.height
    if width > max_width:
        height = max(2, round(height * max_width / width / 2) * 2)
        width = max_width
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    # What `-q:v` does: a fixed quantiser (FF_QP2LAMBDA = 118 per step).
    encoder.options = {"flags": "+qscale", "global_quality": str(quality * 118)}
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    image.pts = 0
    packets = encoder.encode(image) + encoder.encode(None)
    return b"".join(bytes(p) for p in packets)
