"""The demuxer's streams a clip carries, taken once per opened demuxer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clipsearch.clipping.codecs import video_sample_entry, vpcc_pixel_format
from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.verify import codec_name

MAX_AUDIO_TRACKS = 8  # carried into a clip; more are named in `dropped`


@dataclass(frozen=True)
class Streams:
    """The video, the audio tracks carried (at most MAX_AUDIO_TRACKS), and the rest named.

    `dropped` names the source tracks the clip does not carry (e.g. "audio#2 (opus, eng)");
    `pix_fmt` is what the muxer needs that a one-packet probe does not give (VP9's).
    """

    video: Any
    audios: tuple[Any, ...]
    dropped: tuple[str, ...]
    pix_fmt: str | None

    @property
    def all(self) -> tuple[Any, ...]:
        return (self.video, *self.audios)


def take_streams(container: Any, sample_entries: Callable[[], bytes | None]) -> Streams:
    """The streams of an opened demuxer; `sample_entries` gives a moov (or the tables'
    skeleton) holding the video's sample description, None when there is none."""
    streams = container.streams
    if not streams.video:
        raise ClipUnavailable(ClipReason.NO_VIDEO_STREAM, "the source has no video")
    video = streams.video[0]
    if video.codec_context is None:
        raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, "the video has no codec here")
    usable = [a for a in streams.audio if a.codec_context is not None and a.time_base]
    audios = tuple(usable[:MAX_AUDIO_TRACKS])
    dropped = tuple(
        f"{st.type}#{st.index + 1} ({codec_name(st)}"
        + (f", {st.language}" if getattr(st, "language", None) else "")
        + ")"
        for st in streams
        if st is not video and st not in audios and st.type in ("video", "audio")
    )
    if video.time_base is None or video.time_base <= 0:
        raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, "video has no time base")
    return Streams(video, audios, dropped, _pixel_format(video, sample_entries))


def _pixel_format(video: Any, sample_entries: Callable[[], bytes | None]) -> str | None:
    """VP9's pixel format from its vpcC; AV1 must have its av1C. None for other codecs."""
    name = codec_name(video)
    if name not in ("vp9", "av1"):
        return None
    moov = sample_entries()
    if moov is None:
        raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, f"{name} without a moov")
    kind, children = video_sample_entry(moov)
    config = {"vp9": "vpcC", "av1": "av1C"}[name]
    if config not in children:
        raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, f"{name} ({kind}) without {config}")
    if name != "vp9":
        return None
    pix_fmt = vpcc_pixel_format(children[config])
    if pix_fmt is None:
        raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, "vp9 with an unknown vpcC")
    return pix_fmt
