"""Sources shaped like real footage, for the clipping benchmark.

`clipsearch_dev.media` draws flat shapes that x264 squeezes to ~0.2 Mbps, so a clip's bytes
are tiny next to the index and ratios come out pessimistic in a way real videos never see.
Here every frame is media.py's frame (shapes, sweeping band, frame code) on top of a textured
scene under a slow camera pan, plus per-frame grain: I-frames cost what textured footage
costs, P/B-frames still predict the pan, and the grain keeps every frame paying something.

Encoded as 1280x720 H.264 (libx264, preset veryfast, 1-pass ABR at a target bitrate with a
VBV cap, keyint 2 s / min-keyint 1 s, scenecut on, B-frames as the preset sets them) with a
stereo 48 kHz AAC track at 128 kbit/s, interleaved in time, moov at the end (what cameras and
phones write). Longer sources are copies of one encoded piece concatenated by stream copy
with shifted timestamps (no re-encode), so their sample tables are real and full length.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from clipsearch_dev.media import _Painter

WIDTH, HEIGHT, FPS = 1280, 720, 30
KEYINT_S = 2
VIDEO_KBPS = 2000
AUDIO_RATE, AUDIO_KBPS, AUDIO_FRAME = 48000, 128, 1024
PAN = (240, 400)  # the scene is this much larger than the frame (y, x)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth multi-octave texture in about [-48, 48], as int16 luma offsets."""
    out = np.zeros((h, w), np.float32)
    for scale, amp in ((32, 26.0), (8, 14.0), (2, 8.0)):
        small = rng.standard_normal((h // scale + 2, w // scale + 2)).astype(np.float32)
        img = Image.fromarray(small, mode="F").resize(
            ((w // scale + 2) * scale, (h // scale + 2) * scale), Image.Resampling.BICUBIC
        )
        out += amp * np.asarray(img)[:h, :w]
    return np.clip(out, -48, 48).astype(np.int16)


class _Scene:
    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.painter = _Painter(WIDTH, HEIGHT, FPS)
        self.scene = _texture(rng, HEIGHT + PAN[0], WIDTH + PAN[1])
        # Grain: one field, cropped at a fresh random offset each frame.
        self.grain = rng.integers(-5, 6, (HEIGHT + 64, WIDTH + 64), dtype=np.int16)
        self.rng = rng

    def frame(self, i: int) -> np.ndarray:
        t = i / FPS
        img = self.painter.paint(i).astype(np.int16)
        py = int(PAN[0] * (0.5 + 0.5 * math.sin(2 * math.pi * t / 41.0)))
        px = int(PAN[1] * (0.5 + 0.5 * math.sin(2 * math.pi * t / 67.0 + 1.0)))
        gy, gx = self.rng.integers(0, 64, 2)
        offset = (
            self.scene[py : py + HEIGHT, px : px + WIDTH]
            + self.grain[gy : gy + HEIGHT, gx : gx + WIDTH]
        )
        # Keep the frame-code row clean so clips stay checkable by eye and by read_frame_code.
        g = self.painter.geom
        offset[g.y0 :, :] = 0
        img += offset[:, :, None]
        return np.clip(img, 0, 255).astype(np.uint8)


def make_piece(path: Path, seconds: float, *, seed: int = 7, video_kbps: int = VIDEO_KBPS) -> None:
    """Encode `seconds` of 720p30 H.264 + AAC stereo into a moov-at-end MP4.

    `video_kbps` lower than the default keeps long concatenated sources small on disk: the
    index (sample tables) depends on the sample count, not on the bitrate.
    """
    scene = _Scene(seed)
    frames = round(seconds * FPS)
    with av.open(str(path), "w", format="mp4") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        v.bit_rate = video_kbps * 1000
        keyint = KEYINT_S * FPS
        v.codec_context.gop_size = keyint
        v.options = {
            "preset": "veryfast",
            "x264-params": (
                f"keyint={keyint}:min-keyint={FPS}:bitrate={video_kbps}"
                f":vbv-maxrate={video_kbps * 3 // 2}:vbv-bufsize={video_kbps * 2}"
            ),
        }
        a = out.add_stream("aac", rate=AUDIO_RATE)
        a.layout = "stereo"
        a.bit_rate = AUDIO_KBPS * 1000
        arng = np.random.default_rng(seed + 1)
        apos = 0
        tb = Fraction(1, FPS)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(scene.frame(i), format="rgb24")
            frame.pts = i
            frame.time_base = tb
            out.mux(v.encode(frame))
            # Audio up to this video frame's time: tone + noise, so AAC spends its bitrate.
            while apos < (i + 1) * AUDIO_RATE // FPS:
                n = np.arange(apos, apos + AUDIO_FRAME)
                tone = 0.2 * np.sin(2 * np.pi * 440.0 * n / AUDIO_RATE)
                pcm = (tone + 0.05 * arng.standard_normal((2, AUDIO_FRAME))).astype(np.float32)
                af = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="stereo")
                af.sample_rate = AUDIO_RATE
                af.pts = apos
                af.time_base = Fraction(1, AUDIO_RATE)
                out.mux(a.encode(af))
                apos += AUDIO_FRAME
        out.mux(v.encode(None))
        out.mux(a.encode(None))
