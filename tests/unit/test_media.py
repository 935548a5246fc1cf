"""Sample media: frame codes survive lossy compression, and moments look different."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from clipsearch_dev.media import (
    VideoInfo,
    frame_image,
    make_video,
    query_image_bytes,
    read_frame_code,
    render_frame,
)


def _jpeg_round_trip(pixels: np.ndarray, quality: int) -> Image.Image:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("size", [(160, 120), (320, 240), (640, 360)])
@pytest.mark.parametrize("index", [0, 1, 2, 3, 255, 256, 1023, 4097, 36000, 65535])
def test_frame_code_survives_jpeg(size: tuple[int, int], index: int) -> None:
    w, h = size
    pixels = render_frame(index, width=w, height=h)
    assert read_frame_code(pixels) == index
    assert read_frame_code(_jpeg_round_trip(pixels, quality=30)) == index


def test_frame_code_is_read_from_a_decoded_video(tmp_path: Path) -> None:
    info = make_video(tmp_path / "v.mp4", seconds=3, fps=10, width=160, height=120)
    for t in (0.0, 0.05, 0.1, 1.37, 2.0, 2.95):
        assert read_frame_code(frame_image(info.path, t)) == math.floor(t * 10 + 1e-9)
    jpeg = query_image_bytes(info.path, 1.5, fmt="JPEG", quality=40)
    png = query_image_bytes(info.path, 1.5, fmt="PNG")
    assert jpeg[:2] == b"\xff\xd8"
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_frame_code(Image.open(io.BytesIO(jpeg))) == 15
    assert read_frame_code(Image.open(io.BytesIO(png))) == 15
    # Past the end, the last frame stays on screen.
    assert read_frame_code(frame_image(info.path, 10.0)) == 29


def _features(pixels: np.ndarray) -> np.ndarray:
    small = Image.fromarray(pixels).resize((16, 12), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).reshape(-1) / 255.0


def test_moments_a_second_apart_stay_distinct_over_ten_minutes() -> None:
    """Every pair of moments >= 1 s apart differs clearly at 16x12, the stand-in's feature."""
    fps = 5
    times = np.arange(0, 600, 1.0)
    feats = np.stack(
        [_features(render_frame(int(t * fps), fps=fps, width=160, height=120)) for t in times]
    )
    sq = (feats**2).sum(axis=1)
    dist2 = sq[:, None] + sq[None, :] - 2 * feats @ feats.T
    rms = np.sqrt(np.maximum(dist2, 0) / feats.shape[1])
    np.fill_diagonal(rms, np.inf)
    assert float(rms.min()) > 0.05


def test_consecutive_frames_differ() -> None:
    a, b = (render_frame(i, width=160, height=120).astype(int) for i in (100, 101))
    background = (slice(0, 100), slice(None))  # above the frame code
    assert np.abs(a[background] - b[background]).mean() > 0.5


def test_make_video_reports_what_it_wrote(tmp_path: Path) -> None:
    info = make_video(tmp_path / "v.mp4", seconds=2.5, fps=8, width=160, height=120)
    assert info == VideoInfo(
        path=tmp_path / "v.mp4",
        seconds=2.5,
        fps=8,
        width=160,
        height=120,
        codec="h264",
        frames=20,
    )
    with av.open(str(info.path)) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
        assert sum(1 for _ in c.decode(stream)) == 20


def _top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        boxes.append(data[pos + 4 : pos + 8].decode("ascii"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return boxes


@pytest.mark.parametrize("faststart", [True, False])
def test_faststart_puts_the_index_first(tmp_path: Path, faststart: bool) -> None:
    info = make_video(tmp_path / "v.mp4", seconds=1, width=160, height=120, faststart=faststart)
    boxes = _top_level_boxes(info.path)
    assert (boxes.index("moov") < boxes.index("mdat")) is faststart


def test_gop_sets_keyframe_spacing_and_audio_adds_a_stream(tmp_path: Path) -> None:
    info = make_video(
        tmp_path / "v.mp4", seconds=4, fps=10, width=160, height=120, gop=10, audio=True
    )
    with av.open(str(info.path)) as c:
        assert len(c.streams.audio) == 1
        video = c.streams.video[0]
        keyframes = [
            float(p.pts * p.time_base)
            for p in c.demux(video)
            if p.is_keyframe and p.pts is not None and p.time_base is not None
        ]
    assert sorted(keyframes) == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_hevc_is_supported(tmp_path: Path) -> None:
    info = make_video(tmp_path / "v.mp4", seconds=1, width=160, height=120, codec="hevc")
    with av.open(str(info.path)) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
    assert read_frame_code(frame_image(info.path, 0.55)) == 5


def test_a_minute_of_video_is_quick_to_make(tmp_path: Path) -> None:
    started = time.monotonic()
    make_video(tmp_path / "v.mp4", seconds=60, fps=10, width=320, height=240)
    assert time.monotonic() - started < 5.0


def test_too_small_or_odd_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_video(tmp_path / "a.mp4", seconds=1, width=100, height=120)
    with pytest.raises(ValueError):
        make_video(tmp_path / "b.mp4", seconds=1, width=161, height=120)
