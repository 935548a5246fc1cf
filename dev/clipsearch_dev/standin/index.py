"""The stand-in's search core: tiny deterministic image features and clip ranking, no I/O.

No model is downloaded: a frame's feature is the picture shrunk to 16x12 RGB, scaled to
[0, 1]. That is enough to find a moment of the synthetic sample videos again, and it keeps
the stand-in's answers reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

FEATURE_SIZE = (16, 12)
SAMPLE_EVERY_S = 0.5
# score = exp(-SCORE_SHARPNESS * rms distance); rms is in [0, 1], so score is in (0, 1].
SCORE_SHARPNESS = 4.0

Features = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Clip:
    """One search hit: a time window of the video and how well it matched."""

    start_time: float
    end_time: float
    score: float


@dataclass(frozen=True)
class VideoIndex:
    """Sampled frame features of one video; `times[i]` is the time of `features[i]`."""

    duration: float
    times: npt.NDArray[np.float64]
    features: Features


def image_features(image: Image.Image) -> Features:
    """The same feature for a query image and a video frame, whatever their mode or size."""
    small = image.convert("RGB").resize(FEATURE_SIZE, Image.Resampling.BOX)
    return (np.asarray(small, dtype=np.float32) / 255.0).reshape(-1)


def index_video(path: str | Path, *, sample_every_s: float = SAMPLE_EVERY_S) -> VideoIndex:
    """Decode the whole video once and keep the first frame at or after each sample time."""
    times: list[float] = []
    feats: list[Features] = []
    next_sample = 0.0
    last_end = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate
        frame_s = 1.0 / float(rate) if rate else 0.0
        for frame in container.decode(stream):
            ft = frame.time
            if ft is None:
                continue
            last_end = max(last_end, ft + frame_s)
            if ft + 1e-6 >= next_sample:
                times.append(ft)
                feats.append(image_features(Image.fromarray(frame.to_ndarray(format="rgb24"))))
                next_sample = (math.floor(ft / sample_every_s + 1e-6) + 1) * sample_every_s
        if container.duration is not None:
            last_end = max(last_end, container.duration / 1_000_000)
    if not feats:
        raise ValueError("no decodable video frames")
    return VideoIndex(
        duration=last_end,
        times=np.array(times, dtype=np.float64),
        features=np.stack(feats),
    )


def search(
    index: VideoIndex,
    query: Features,
    *,
    top_k: int = 5,
    clip_seconds: float = 4.0,
    max_clip_seconds: float | None = None,
) -> list[Clip]:
    """Rank sample times by similarity and turn the best into non-overlapping clips.

    A clip is a window of `clip_seconds` centred on a matching sample; a later (worse) match
    whose window overlaps a clip and sits next to one of its samples extends that clip, any
    other overlapping match is suppressed. Only the best few matches may grow clips, so clips
    stay a few seconds long; weaker matches only fill up to `top_k`. Best first.
    """
    if top_k < 1:
        return []
    rms = np.sqrt(np.mean((index.features - query[None, :]) ** 2, axis=1))
    order = np.argsort(rms, kind="stable")
    cap = max_clip_seconds if max_clip_seconds is not None else 3 * clip_seconds
    half = clip_seconds / 2
    step = float(np.median(np.diff(index.times))) if len(index.times) > 1 else clip_seconds
    clips: list[_Building] = []
    grow_limit = max(8, top_k * 4)
    for rank, i in enumerate(order):
        if rank >= grow_limit and len(clips) >= top_k:
            break
        t = float(index.times[i])
        score = math.exp(-SCORE_SHARPNESS * float(rms[i]))
        lo, hi = max(0.0, t - half), min(index.duration, t + half)
        overlapping = [c for c in clips if lo < c.hi and hi > c.lo]
        if not overlapping:
            clips.append(_Building(lo, hi, score, [t]))
            continue
        if len(overlapping) == 1 and rank < grow_limit:
            c = overlapping[0]
            adjacent = any(abs(t - s) <= step * 1.5 for s in c.samples)
            if adjacent and max(hi, c.hi) - min(lo, c.lo) <= cap:
                c.lo, c.hi = min(lo, c.lo), max(hi, c.hi)
                c.samples.append(t)
    clips.sort(key=lambda c: -c.score)
    return [
        Clip(
            start_time=math.floor(c.lo * 10 + 1e-6) / 10,
            end_time=min(math.ceil(c.hi * 10 - 1e-6) / 10, round(index.duration, 3)),
            score=round(c.score, 4),
        )
        for c in clips[:top_k]
    ]


class _Building:
    """A clip while it is being grown from adjacent matches."""

    def __init__(self, lo: float, hi: float, score: float, samples: list[float]) -> None:
        self.lo = lo
        self.hi = hi
        self.score = score
        self.samples = samples
