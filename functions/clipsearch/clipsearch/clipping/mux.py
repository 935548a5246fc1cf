"""Writing a clip: demuxed packets, stream-copied into a faststart MP4, kept only if checked."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av


def write_clip(
    out_path: Path,
    video_stream: Any,
    video: list[Any],
    audio_streams: list[Any],
    audio: list[Any],
    origin: float,
    *,
    pix_fmt: str | None,
    check: Callable[[Path], None],
) -> None:
    """Mux `video` and `audio` (shifted so `origin` is 0) through a temp file beside
    `out_path`; `check` reads it back, and only then is it renamed into place."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".clip-", suffix=".mp4", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as output:
            ov = output.add_stream_from_template(video_stream, opaque=True)
            if pix_fmt is not None:
                ov.codec_context.pix_fmt = pix_fmt
            with contextlib.suppress(Exception):
                ov.codec_tag = video_stream.codec_tag  # hvc1 stays hvc1 (the default is hev1)
            outs = {a.index: output.add_stream_from_template(a, opaque=True) for a in audio_streams}
            for out in (ov, *outs.values()):
                # btrt/esds then state the clip's own bitrates, not the source's average
                # (which FFmpeg derives from whatever index it was given).
                with contextlib.suppress(Exception):
                    out.codec_context.bit_rate = 0
            for p in [*video, *audio]:
                shift = round(origin / p.time_base)
                p.pts -= shift
                p.dts -= shift
                p.stream = ov if p.stream is video_stream else outs[p.stream.index]
            output.mux(interleave(video, audio))
        check(tmp)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def interleave(video: list[Any], audio: list[Any]) -> list[Any]:
    """Packets in decode-time order across streams, as the muxer likes them."""
    both = list(video) + list(audio)
    both.sort(key=lambda p: Fraction(p.dts) * p.time_base)
    return both
