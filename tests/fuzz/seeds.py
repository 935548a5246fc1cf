"""Small seed files for the fuzzer, made by the ffmpeg command line (cached per session).

One per layout the box walker reads: faststart with an edit list, moov at the end, fragmented
with an mfra, separate moofs, DASH-style with sidx, CMAF, HEVC.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

_SRC = [
    "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=4",
    "-f", "lavfi", "-i", "aevalsrc=exprs=0.4*sin(2*PI*(300+30*t)*t):sample_rate=16000:duration=4",
]  # fmt: skip
_H264 = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-g",
    "10",
    "-bf",
    "2",
    "-c:a",
    "aac",
    "-b:a",
    "24k",
]

SEEDS: dict[str, list[str]] = {
    "faststart": [*_SRC, *_H264, "-movflags", "+faststart"],
    "moov-at-end": [*_SRC, *_H264],
    "frag-mfra": [*_SRC, *_H264, "-movflags", "frag_keyframe+empty_moov"],
    "frag-separate": [
        *_SRC,
        *_H264,
        "-movflags",
        "frag_keyframe+empty_moov+separate_moof",
        "-frag_duration",
        "700000",
    ],
    "dash-sidx": [*_SRC, *_H264, "-movflags", "dash+skip_trailer"],
    "global-sidx": [*_SRC, *_H264, "-movflags", "frag_keyframe+empty_moov+global_sidx"],
    "cmaf": [*_SRC, *_H264, "-movflags", "cmaf"],
    "hevc": [
        *_SRC,
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "keyint=10:log-level=0",
        "-tag:v",
        "hvc1",
        "-c:a",
        "aac",
        "-b:a",
        "24k",
    ],
}


def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    assert path, "the ffmpeg command line is required (Debian package ffmpeg)"
    return path


def make_seeds(directory: Path) -> dict[str, Path]:
    """Every seed, made once into `directory`."""
    out = {}
    for name, args in SEEDS.items():
        path = directory / f"{name}.mp4"
        if not path.exists():
            tmp = directory / f".{name}.tmp.mp4"
            subprocess.run(
                [
                    ffmpeg(),
                    "-y",
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    *args,
                    "-f",
                    "mp4",
                    str(tmp),
                ],
                check=True,
                timeout=120,
            )
            tmp.replace(path)
        out[name] = path
    # An edit list: what a `-ss` stream copy leaves behind.
    edited = directory / "edit-list.mp4"
    if not edited.exists():
        tmp = directory / ".edit-list.tmp.mp4"
        subprocess.run(
            [ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", "-ss", "1.3", "-i",
             str(out["faststart"]), "-c", "copy", str(tmp)],
            check=True, timeout=60,
        )  # fmt: skip
        tmp.replace(edited)
    out["edit-list"] = edited
    return out
