"""Sources in every layout the cutter supports, and a check that a clip shows the right frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from clipsearch.clipping import ClipInfo
from clipsearch_dev.media import make_video, read_frame_code


def remux(src: Path, dst: Path, *, layout: str, codec_tag: str | None = None) -> Path:
    """Rewrite `src` as faststart / moov_at_end / fragmented, with audio interleaved.

    make_video writes all audio after all video; real footage interleaves, so we sort the
    packets by decode time before muxing.
    """
    options = {
        "faststart": {"movflags": "+faststart"},
        "moov_at_end": {},
        "fragmented": {"movflags": "frag_keyframe+empty_moov"},
    }[layout]
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options=options) as out:
        mapping = {}
        for stream in inp.streams:
            if stream.type in ("video", "audio"):
                copy = out.add_stream_from_template(stream)
                if codec_tag and stream.type == "video":
                    copy.codec_tag = codec_tag
                mapping[stream.index] = copy
        packets = [p for p in inp.demux() if p.dts is not None and p.size]
        packets.sort(key=lambda p: float(p.dts * p.time_base))
        for packet in packets:
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return dst


def make_source(
    directory: Path,
    name: str,
    *,
    layout: str,
    seconds: float = 60,
    codec: str = "h264",
    audio: bool = True,
    codec_tag: str | None = None,
    fps: int = 10,
    gop: int = 20,
) -> Path:
    raw = directory / f"{name}.raw.mp4"
    make_video(
        raw, seconds=seconds, fps=fps, width=160, height=120, codec=codec, gop=gop, audio=audio
    )
    return remux(raw, directory / f"{name}.mp4", layout=layout, codec_tag=codec_tag)


@dataclass(frozen=True)
class Frame:
    time: float
    code: int
    keyframe: bool


def decode_all(path: Path) -> list[Frame]:
    """Every frame as shown (edit lists honoured), in display order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            Frame(
                round(float(f.time), 4), read_frame_code(f.to_ndarray(format="rgb24")), f.key_frame
            )
            for f in container.decode(stream)
        ]


def audio_packets(path: Path) -> int:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0
        return sum(1 for p in container.demux(container.streams.audio[0]) if p.size)


def check_clip(info: ClipInfo, source_frames: list[Frame], *, fps: int = 10) -> list[Frame]:
    """The clip decodes fully and shows exactly the source's frames over [start, end)."""
    clip = decode_all(info.path)
    assert clip, "clip has no frames"
    frame_s = 1 / fps
    expected = [f for f in source_frames if info.start - 1e-3 <= f.time < info.end - 1e-3]
    assert [f.code for f in clip] == [f.code for f in expected]
    assert clip[0].time == 0.0 or info.exact
    # The real start is a source frame; snapped to a keyframe unless exact.
    first = expected[0]
    assert abs(first.time - info.start) < 1e-3
    if not info.exact:
        assert first.keyframe
    assert info.start <= info.requested_start + 1e-6 or first == source_frames[0]
    # Covers the request (up to the source's end).
    last = source_frames[-1].time + frame_s
    assert info.end + 1e-6 >= min(info.requested_end, last)
    return clip


def audio_end(path: Path) -> float:
    """Where the clip's audio stops, in seconds of the clip's timeline."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        ends = [
            float((p.pts + p.duration) * stream.time_base)
            for p in container.demux(stream)
            if p.size and p.pts is not None
        ]
    return max(ends)
