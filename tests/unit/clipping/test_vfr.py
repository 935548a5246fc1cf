"""A variable frame rate with B-frames: a clip ending just before a keyframe keeps its last frame.

The source is made by the ffmpeg command line (frames dropped irregularly, `-fps_mode vfr`,
x264 with B-frames). A frame's stored duration is its decode-time step, not how long it is on
screen: a clip cut after the last frame shown before `end` held a frame whose stored end lay
40 ms past the source's next frame, and that frame (stored later) was missing from the clip.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import av
import pytest

from clipsearch.clipping import (
    ClipInfo,
    ClipSource,
    FileRangeSource,
    IndexCache,
    boxes,
    closing,
    codecs,
)
from clipsearch.clipping.reader import SparseFile

# Hits ending 0.35 s before a keyframe (2 s GOPs), where the last frame was lost, and others.
HITS = [(5.37, 7.37), (1.75, 3.75), (5.65, 7.65), (0.45, 2.45), (3.0, 6.0)]


@pytest.fixture(scope="module")
def vfr_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = shutil.which("ffmpeg")
    assert exe, "the ffmpeg command line is required (Debian package ffmpeg)"
    out = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    subprocess.run(
        [exe, "-y", "-hide_banner", "-loglevel", "error",
         "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=25:duration=10",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10",
         "-vf", "select='not(eq(mod(n\\,7)\\,3))*not(eq(mod(n\\,11)\\,5))'", "-fps_mode", "vfr",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-x264-params", "keyint=50:min-keyint=50:scenecut=0",
         "-c:a", "aac", "-b:a", "64k", str(out)],
        check=True,
    )  # fmt: skip
    return out


def _frames(path: Path) -> list[tuple[float, str]]:
    """(shown at, digest) of every decoded frame, in display order."""
    with av.open(str(path)) as container:
        return [
            (round(float(f.time), 4), hashlib.md5(f.to_ndarray().tobytes()).hexdigest())
            for f in container.decode(container.streams.video[0])
        ]


def _stored_end(path: Path) -> float:
    """Where the clip says its video ends: the largest pts + stored duration."""
    with av.open(str(path)) as container:
        v = container.streams.video[0]
        tb = v.time_base
        assert tb is not None
        return max(
            float((p.pts + (p.duration or 0)) * tb)
            for p in container.demux(v)
            if p.size and p.pts is not None
        )


def _check(info: ClipInfo, source: list[tuple[float, str]]) -> None:
    """The clip shows exactly the source's frames in [start, end) and ends where it says."""
    expected = [d for t, d in source if info.start - 1e-3 <= t < info.end - 1e-3]
    assert [d for _, d in _frames(info.path)] == expected
    assert abs(info.start + _stored_end(info.path) - info.end) < 1e-3
    assert info.start <= info.requested_start + 1e-6
    assert info.end >= info.requested_end - 1e-6


def test_the_source_has_b_frames_and_a_variable_rate(vfr_source: Path) -> None:
    with av.open(str(vfr_source)) as container:
        v = container.streams.video[0]
        packets = [p for p in container.demux(v) if p.size]
    assert any(p.pts != p.dts for p in packets)
    assert len({p.duration for p in packets}) > 1


def test_composition_offsets_come_from_the_moov(vfr_source: Path) -> None:
    """The ctts read from the index gives each sample the demuxer's pts - dts."""
    data = vfr_source.read_bytes()
    moov = next(
        data[b.offset : b.end]
        for b in boxes.walk(SparseFile(FileRangeSource(vfr_source)), max_index_bytes=1 << 24).boxes
        if b.kind == "moov"
    )
    table = codecs.video_composition_offsets(moov)
    assert table is not None
    with av.open(str(vfr_source)) as container:
        v = container.streams.video[0]
        offsets = [
            p.pts - p.dts for p in container.demux(v) if p.pts is not None and p.dts is not None
        ]
    shift = offsets[0] - (table.at(0) or 0)
    assert offsets == [(table.at(i) or 0) + shift for i in range(len(offsets))]
    assert table.at(len(offsets)) is None


@pytest.mark.parametrize(("start", "end"), HITS)
def test_a_vfr_clip_holds_every_frame_up_to_its_end(
    vfr_source: Path, start: float, end: float, tmp_path: Path
) -> None:
    source = _frames(vfr_source)
    cache = IndexCache(1 << 26)
    cold = FileRangeSource(vfr_source, cache_key="vfr")
    with ClipSource(cold, index_cache=cache) as clips:
        info = clips.cut(start, end, tmp_path / "cold.mp4")
    _check(info, source)
    cached = FileRangeSource(vfr_source, cache_key="vfr")
    with ClipSource(cached, index_cache=cache) as clips:
        assert clips.index_cached
        again = clips.cut(start, end, tmp_path / "cached.mp4")
    _check(again, source)
    assert (again.start, again.end) == (info.start, info.end)


def test_closure_runs_on_until_no_later_frame_shows_before_the_clip_ends() -> None:
    """The vfr source's samples around 7.5 s (1/12800 s): the frame shown at 7.48 s is stored
    first and lasts 1024 ticks by its decode step, past the 7.52 s frame stored later."""
    dts = [92160, 93184, 93696, 94208, 95232, 95744, 96256, 96768, 97280]
    pts = [95744, 94208, 93696, 95232, 97792, 96768, 96256, 97280, 98816]
    shown = max(pts[i] + dts[i + 1] - dts[i] for i in range(4))
    closed = closing.closure(dts.__getitem__, pts.__getitem__, len(dts), 3, shown)
    assert closed == (7, 97792 + 512)  # up to the sample before the keyframe at 98816
    # Already closed: nothing later shows before the clip's end.
    assert closing.closure(dts.__getitem__, pts.__getitem__, len(dts), 7, 98304) == (7, 98304)
    # The index cannot tell (no ctts for a sample): the clip ends as before.
    unknown = [*pts[:6], None, *pts[7:]]
    assert closing.closure(dts.__getitem__, unknown.__getitem__, len(dts), 3, shown) is None
