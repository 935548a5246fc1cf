"""Writing a clip: demuxed packets, checked, stream-copied into a faststart MP4 through a temp
file, and kept only once it reads back as planned (`verify.self_check`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from clipsearch.clipping.checks import check_audio_run, check_no_shared_bytes
from clipsearch.clipping.demux import Packets, decodable
from clipsearch.clipping.plan import EPS
from clipsearch.clipping.samples import LastSample
from clipsearch.clipping.streams import Streams
from clipsearch.clipping.verify import codec_name, self_check


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


@dataclass(frozen=True)
class Written:
    """A clip written and read back: where, its real times (source seconds), its size."""

    path: Path
    start: float
    end: float
    size: int
    has_audio: bool


@dataclass(frozen=True)
class Clip:
    """What a cut writes: the packets read, the streams they come from, how to shift them."""

    got: Packets
    streams: Streams
    start: float
    exact: bool
    fragmented: bool
    index_boxes: tuple[tuple[int, int], ...]  # (offset, size) of the source's index boxes


def write(
    clip: Clip,
    out_path: Path,
    last_samples: Callable[[], Mapping[int, LastSample]],
    check_deadline: Callable[[], None],
) -> Written:
    """Check the clip's packets, write them (`write_clip`) and read the clip back.

    `last_samples` gives the source's last sample per track id (an indexed source's).
    """
    got, v = clip.got, clip.streams.video
    tb = v.time_base
    kf_time = float(got.video[0].pts * tb)
    real_start = _origin(clip, kf_time)
    real_end = max(float((p.pts + (p.duration or 0)) * tb) for p in got.video)
    audio = [p for p in got.audio if kf_time - EPS <= float(p.pts * p.time_base) < real_end]
    tracks = [a for a in clip.streams.audios if any(p.stream is a for p in audio)]
    if clip.fragmented:
        for track in tracks:
            check_audio_run([p for p in audio if p.stream is track])
    check_no_shared_bytes([*got.video, *audio], list(clip.index_boxes))
    if not clip.fragmented and audio:
        _last_sample_durations(audio, last_samples())
    for p in got.video[1:]:
        if p.is_keyframe and decodable(v, p) is False:
            # A recovery point (x264 intra refresh) marked sync: the clip's stss must not
            # list it, or a reader honouring the clip's edit list starts decoding there.
            p.is_keyframe = False
    write_clip(
        out_path,
        v,
        got.video,
        tracks,
        audio,
        real_start,
        pix_fmt=clip.streams.pix_fmt,
        check=lambda path: self_check(
            path,
            codec=codec_name(v),
            shown_s=real_end - real_start,
            audio_tracks=len(tracks),
            check_deadline=check_deadline,
        ),
    )
    return Written(out_path, real_start, real_end, out_path.stat().st_size, bool(tracks))


def _origin(clip: Clip, kf_time: float) -> float:
    """Where the clip's time 0 is in the source: its keyframe, or the frame on screen at
    `start` (exact). Leading pictures shown before the keyframe (RASL) stay hidden, and so
    do frames the source's own edit list hides (shown before the stream's start time)."""
    v = clip.streams.video
    tb = v.time_base
    floor = kf_time
    if v.start_time is not None and float(v.start_time * tb) > kf_time + EPS:
        floor = float(v.start_time * tb)
    if not clip.exact:
        return floor
    shown = [float(p.pts * tb) for p in clip.got.video if floor - EPS <= float(p.pts * tb)]
    before = [t for t in shown if t <= clip.start + EPS]
    return max(before) if before else floor  # a start before the first frame


def _last_sample_durations(audio: list[Any], last: Mapping[int, LastSample]) -> None:
    """A track's last sample lasts what the source's stts says, not what the demuxer
    reports: FFmpeg 8 gives an MP3 track's last frame its full 1152 ticks where the stts
    (and the edit list) end it at 1105, and the clip would then play the encoder's
    padding. Neither the stream's duration (mdhd, which some muxers write short of the
    stts) nor the edit list says it; the stts does. From the tables, or the moov already
    held: no read, a few table entries per track."""
    for p in audio:
        found = last.get(int(p.stream.id))
        if (
            found is not None
            and p.pos == found.offset
            and found.delta > 0
            and p.time_base == Fraction(1, found.timescale)
        ):
            p.duration = found.delta
