"""Synthetic sample videos whose every moment can be found again by looking at it.

Each frame has a background colour that drifts along a smooth, non-repeating path, a few large
shapes that move with unrelated periods, a slowly sweeping band (so moments minutes apart
differ too), and a row of 16 blocks carrying the frame index as a reflected Gray code (so a
test can decode any frame, even after lossy compression, and know exactly which one it is;
Gray code keeps neighbouring frames one block apart, so the code barely disturbs similarity
search).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

CODE_BITS = 16
MIN_BLOCK_PX = 8
_DARK = 40
_LIGHT = 215
_AUDIO_RATE = 16000
_AUDIO_FRAME = 1024

U8Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class VideoInfo:
    """What was written, so tests can reason about times and frame numbers."""

    path: Path
    seconds: float
    fps: int
    width: int
    height: int
    codec: str
    frames: int


@dataclass(frozen=True)
class _CodeGeometry:
    """Where the frame-code blocks sit; a pure function of the frame size."""

    x0: int
    block_w: int
    y0: int
    block_h: int


def _code_geometry(width: int, height: int) -> _CodeGeometry:
    block_w = max(MIN_BLOCK_PX, width // 20)
    block_h = max(MIN_BLOCK_PX, height // 16)
    x0 = (width - CODE_BITS * block_w) // 2
    if x0 < 0 or height < 4 * block_h:
        raise ValueError(f"frame {width}x{height} too small for a {CODE_BITS}-block code")
    return _CodeGeometry(x0=x0, block_w=block_w, y0=height - block_h, block_h=block_h)


def _to_gray(n: int) -> int:
    return n ^ (n >> 1)


def _from_gray(g: int) -> int:
    n = 0
    while g:
        n ^= g
        g >>= 1
    return n


def _wave(t: float, period: float, phase: float) -> float:
    """A value in [-1, 1]; periods are chosen mutually incommensurate."""
    return math.sin(2.0 * math.pi * t / period + phase)


class _Painter:
    """Draws frame `i` of a video; precomputes the pixel grids once per size."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        self.width = width
        self.height = height
        self.fps = fps
        self.geom = _code_geometry(width, height)
        yy, xx = np.mgrid[0:height, 0:width]
        self.yy = yy.astype(np.float32)
        self.xx = xx.astype(np.float32)

    def paint(self, index: int) -> U8Image:
        t = index / self.fps
        w, h = self.width, self.height
        img = np.empty((h, w, 3), dtype=np.uint8)
        bg = (
            128 + 90 * _wave(t, 17.3, 0.0),
            128 + 90 * _wave(t, 23.9, 1.3),
            128 + 90 * _wave(t, 29.7, 2.9),
        )
        img[:, :] = np.array(bg, dtype=np.float32).astype(np.uint8)

        # Slow sweeping band: its position differs for moments minutes apart (period 37 min).
        band_x = (t / 2221.0) % 1.0 * w
        band = np.abs(self.xx[0] - band_x) < w / 10
        img[:, band] = (255 - np.array(bg)).astype(np.uint8)

        # Circle and rectangle moving on unrelated periods.
        cx = w * (0.5 + 0.35 * _wave(t, 11.1, 0.4))
        cy = h * (0.45 + 0.25 * _wave(t, 13.7, 2.1))
        r = min(w, h) * 0.22
        disc = (self.xx - cx) ** 2 + (self.yy - cy) ** 2 < r * r
        img[disc] = (
            int(128 + 120 * _wave(t, 7.3, 0.7)),
            int(128 + 120 * _wave(t, 9.1, 1.9)),
            int(128 + 120 * _wave(t, 5.9, 0.2)),
        )
        rw, rh = w // 4, h // 3
        rx = int((w - rw) * (0.5 + 0.5 * _wave(t, 19.3, 1.1)))
        ry = int((h - rh) * (0.5 + 0.45 * _wave(t, 7.9, 0.3)))
        img[ry : ry + rh, rx : rx + rw] = (
            int(128 - 110 * _wave(t, 31.1, 0.5)),
            int(128 + 110 * _wave(t, 43.7, 2.3)),
            int(128 - 110 * _wave(t, 13.1, 1.7)),
        )

        # Frame code along the bottom edge.
        g = self.geom
        code = _to_gray(index)
        for bit in range(CODE_BITS):
            on = (code >> (CODE_BITS - 1 - bit)) & 1
            x = g.x0 + bit * g.block_w
            img[g.y0 : g.y0 + g.block_h, x : x + g.block_w] = _LIGHT if on else _DARK
        return img


def render_frame(index: int, *, fps: int = 10, width: int = 320, height: int = 240) -> U8Image:
    """Frame `index` as RGB pixels, exactly as `make_video` feeds it to the encoder."""
    return _Painter(width, height, fps).paint(index)


def _configure_video(stream: av.VideoStream, width: int, height: int, gop: int | None) -> None:
    """Fast encoder settings; a fixed GOP when asked, so keyframe spacing is predictable."""
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    opts: dict[str, object] = {}
    name = stream.codec_context.name
    if name == "libx264":
        opts["preset"] = "veryfast"
        opts["crf"] = "23"
        if gop is not None:
            opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    elif name == "libx265":
        opts["preset"] = "ultrafast"
        params = "log-level=error"
        if gop is not None:
            params += f":keyint={gop}:min-keyint={gop}:scenecut=0"
        opts["x265-params"] = params
    if gop is not None:
        stream.codec_context.gop_size = gop
    stream.options = opts


def _add_audio(container: av.container.OutputContainer) -> av.AudioStream:
    """A mono AAC stream; its layout must be set before the first packet opens the codec."""
    stream = container.add_stream("aac", rate=_AUDIO_RATE)
    stream.layout = "mono"
    return stream


def _write_tone(
    container: av.container.OutputContainer, stream: av.AudioStream, seconds: float
) -> None:
    """A quiet 440 Hz tone, so tools see a second (audio) stream like in real footage."""
    total = int(seconds * _AUDIO_RATE)
    tone = np.sin(2 * np.pi * 440.0 * np.arange(total) / _AUDIO_RATE) * 0.2
    for start in range(0, total, _AUDIO_FRAME):
        chunk = np.zeros((1, _AUDIO_FRAME), dtype=np.float32)
        piece = tone[start : start + _AUDIO_FRAME]
        chunk[0, : len(piece)] = piece
        aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        aframe.sample_rate = _AUDIO_RATE
        aframe.pts = start
        aframe.time_base = Fraction(1, _AUDIO_RATE)
        container.mux(stream.encode(aframe))
    container.mux(stream.encode(None))


def make_video(
    path: str | Path,
    *,
    seconds: float,
    fps: int = 10,
    width: int = 320,
    height: int = 240,
    codec: str = "h264",
    gop: int | None = None,
    faststart: bool = True,
    audio: bool = False,
) -> VideoInfo:
    """Write a synthetic MP4 whose frames are all distinguishable (see module docstring)."""
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for yuv420p")
    path = Path(path)
    frames = round(seconds * fps)
    if frames < 1:
        raise ValueError("video must have at least one frame")
    painter = _Painter(width, height, fps)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        if not isinstance(stream, av.VideoStream):
            raise ValueError(f"{codec} is not a video codec")
        _configure_video(stream, width, height, gop)
        time_base = Fraction(1, fps)
        audio_stream = _add_audio(container) if audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(painter.paint(i), format="rgb24")
            frame.pts = i
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            _write_tone(container, audio_stream, frames / fps)
    return VideoInfo(
        path=path,
        seconds=frames / fps,
        fps=fps,
        width=width,
        height=height,
        codec=codec,
        frames=frames,
    )


def read_frame_code(image: Image.Image | npt.NDArray[np.generic]) -> int:
    """Decode the frame index drawn by `make_video`; tolerant of JPEG/H.264 artefacts.

    Samples the inner part of each block (edges ring after compression) and thresholds its
    mean luma halfway between the dark and light levels.
    """
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.ndim == 3:
        luma = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    else:
        luma = arr.astype(np.float32)
    height, width = luma.shape
    g = _code_geometry(width, height)
    mx = max(1, g.block_w // 4)
    my = max(1, g.block_h // 4)
    threshold = (_DARK + _LIGHT) / 2
    code = 0
    for bit in range(CODE_BITS):
        x = g.x0 + bit * g.block_w
        cell = luma[g.y0 + my : g.y0 + g.block_h - my, x + mx : x + g.block_w - mx]
        code = (code << 1) | int(float(cell.mean()) > threshold)
    return _from_gray(code)


def frame_image(path: str | Path, t: float) -> Image.Image:
    """The frame on screen at time `t` seconds (the last frame starting at or before t)."""
    if t < 0:
        raise ValueError("t must be >= 0")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        if tb is None:
            raise ValueError("video stream has no time base")
        container.seek(int(t / tb), stream=stream, backward=True, any_frame=False)
        shown: av.VideoFrame | None = None
        for frame in container.decode(stream):
            ft = frame.time
            if ft is not None and ft > t + 1e-6 and shown is not None:
                break
            shown = frame
        if shown is None:
            raise ValueError(f"no frame decodable at t={t}")
        return Image.fromarray(shown.to_ndarray(format="rgb24"))


def query_image_bytes(path: str | Path, t: float, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """A query image as a user would upload it: the frame at `t`, re-encoded as `fmt`."""
    image = frame_image(path, t)
    buf = io.BytesIO()
    if fmt.upper() in {"JPEG", "JPG", "WEBP"}:
        image.save(buf, format="JPEG" if fmt.upper() == "JPG" else fmt.upper(), quality=quality)
    else:
        image.save(buf, format=fmt.upper())
    return buf.getvalue()


def duration_of(path: str | Path) -> float:
    """Duration in seconds as the container reports it (used by the stand-in and tests)."""
    with av.open(str(path)) as container:
        if container.duration is not None:
            return float(container.duration) / 1_000_000
        stream = container.streams.video[0]
        if stream.duration is None or stream.time_base is None:
            raise ValueError("unknown duration")
        return float(stream.duration * stream.time_base)
