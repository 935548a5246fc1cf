"""What makes every cut terminal and honest: deadlines, read budgets, bounds checks, the
self-check, codec configuration kept, dropped tracks named. Sources made by the ffmpeg CLI."""

from __future__ import annotations

import struct
import subprocess
import time
from pathlib import Path

import av
import pytest

from clipsearch.clipping import (
    ClipReason,
    ClipSource,
    ClipUnavailable,
    FileRangeSource,
    boxes,
    cut_clip,
    poster_frame,
)
from tests.fuzz.mutate import parse
from tests.fuzz.seeds import ffmpeg

LAVFI = [
    "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=25:duration={d}",
    "-f", "lavfi", "-i", "sine=frequency=440:duration={d}:sample_rate=48000",
]  # fmt: skip
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-b:a", "48k"]


def make(directory: Path, name: str, args: list[str], seconds: int = 8) -> Path:
    out = directory / name
    if not out.exists():
        inputs = [a.format(d=seconds) for a in LAVFI]
        subprocess.run(
            [ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", *inputs, *args, str(out)],
            check=True,
            timeout=300,
        )
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("robust")


def reason(path: Path, start: float, end: float, out: Path, **kwargs) -> ClipUnavailable:
    with pytest.raises(ClipUnavailable) as info:
        cut_clip(FileRangeSource(path), start, end, out, **kwargs)
    return info.value


# -- deadlines ---------------------------------------------------------------------------


def test_a_passed_deadline_ends_the_open_and_the_cut(media, tmp_path):
    path = make(media, "plain.mp4", [*H264, "-movflags", "+faststart"])
    late = reason(path, 1.0, 2.0, tmp_path / "a.mp4", deadline=time.monotonic() - 1)
    assert late.reason is ClipReason.DEADLINE_EXCEEDED
    with ClipSource(FileRangeSource(path), deadline=time.monotonic() + 60) as clips:
        with pytest.raises(ClipUnavailable) as info:
            clips.cut(1.0, 2.0, tmp_path / "b.mp4", deadline=time.monotonic() - 1)
        assert info.value.reason is ClipReason.DEADLINE_EXCEEDED
        assert not (tmp_path / "b.mp4").exists()
        # The source's own deadline still holds for the next cut.
        assert clips.cut(1.0, 2.0, tmp_path / "c.mp4").path.exists()


def test_the_deadline_is_checked_while_reading(media, tmp_path, monkeypatch):
    """A deadline that passes mid-cut (each read takes time) stops it at the next read."""
    path = make(media, "plain.mp4", [*H264, "-movflags", "+faststart"])
    source = FileRangeSource(path)
    real_read = source.read

    def slow(offset: int, length: int) -> bytes:
        time.sleep(0.2)
        return real_read(offset, length)

    monkeypatch.setattr(source, "read", slow)
    with ClipSource(source) as clips, pytest.raises(ClipUnavailable) as info:
        clips.cut(5.0, 7.0, tmp_path / "d.mp4", deadline=time.monotonic() + 0.1)
    assert info.value.reason is ClipReason.DEADLINE_EXCEEDED


# -- bounds: counts against sizes, spans capped before they are read ----------------------


def _patch_first(data: bytes, kind: str, at: int, value: int) -> bytes:
    box = next(b for b in parse(data) if b.kind == kind)
    out = bytearray(data)
    struct.pack_into(">I", out, box.body + at, value)
    return bytes(out)


@pytest.mark.parametrize(
    ("kind", "at", "value"),
    [("trun", 4, 89_000_000), ("stsz", 8, 89_000_000), ("stts", 4, 2**31), ("stco", 4, 2**30)],
)
def test_a_count_larger_than_its_box_is_refused_before_ffmpeg_reads_it(
    media, tmp_path, kind, at, value
):
    flags = "frag_keyframe+empty_moov" if kind == "trun" else "+faststart"
    path = make(media, f"count-{flags}.mp4", [*H264, "-movflags", flags])
    patched = tmp_path / "patched.mp4"
    patched.write_bytes(_patch_first(path.read_bytes(), kind, at, value))
    error = reason(patched, 1.0, 2.0, tmp_path / "o.mp4")
    assert error.reason is ClipReason.MALFORMED_SOURCE
    assert kind in error.message


def _chunk_past_the_end(data: bytes, chunk: int) -> bytes:
    """The video's chunk `chunk` (0-based) moved past the file's end (the first stco)."""
    box = next(b for b in parse(data) if b.kind == "stco")
    out = bytearray(data)
    struct.pack_into(">I", out, box.body + 8 + 4 * chunk, len(data) + 1_000_000)
    return bytes(out)


def test_a_file_cut_short_still_cuts_before_where_it_ends(media, tmp_path):
    """Chunks past the end only at a track's end: a truncated upload, whose index is whole."""
    path = make(media, "chunks-faststart.mp4", [*H264, "-movflags", "+faststart"])
    data = path.read_bytes()
    box = next(b for b in parse(data) if b.kind == "stco")
    (count,) = struct.unpack_from(">I", data, box.body + 4)
    patched = tmp_path / "patched.mp4"
    patched.write_bytes(_chunk_past_the_end(data, count - 1))
    info = cut_clip(FileRangeSource(patched), 1.0, 2.0, tmp_path / "o.mp4")
    assert info.start <= 1.0 < 2.0 <= info.end + 0.05


def test_a_sidx_per_fragment_file_is_refused_before_it_is_read(media, tmp_path, monkeypatch):
    """DASH-style files (a sidx per fragment, no mfra): FFmpeg reads every fragment to open
    them. Small ones are read in one request; past SMALL_FILE_BYTES they are refused unread."""
    path = make(media, "dash.mp4", [*H264, "-movflags", "dash+skip_trailer"], seconds=30)
    size = path.stat().st_size
    info = cut_clip(FileRangeSource(path), 10.0, 12.0, tmp_path / "small.mp4")
    assert info.start <= 10.0 < info.end
    monkeypatch.setattr(boxes, "SMALL_FILE_BYTES", size // 4)
    source = FileRangeSource(path)
    with pytest.raises(ClipUnavailable) as error:
        ClipSource(source)
    assert error.value.reason is ClipReason.UNSUPPORTED_CONTAINER
    assert source.bytes_read <= 2 * 64 * 1024 + 4096  # the head and the tail, not the file
    assert source.bytes_read < size / 2


def test_an_unsound_mfra_is_never_handed_to_ffmpeg(media, tmp_path):
    """A zero-size tfra made `av.open(..., use_mfra_for=...)` spin for minutes."""
    path = make(media, "frag.mp4", [*H264, "-movflags", "frag_keyframe+empty_moov"])
    data = bytearray(path.read_bytes())
    tfra = next(b for b in parse(bytes(data)) if b.kind == "tfra")
    struct.pack_into(">I", data, tfra.offset, 0)
    patched = tmp_path / "tfra0.mp4"
    patched.write_bytes(bytes(data))
    started = time.monotonic()
    assert reason(patched, 1.0, 2.0, tmp_path / "o.mp4").reason is ClipReason.MALFORMED_SOURCE
    assert time.monotonic() - started < 5


# -- honest clips ------------------------------------------------------------------------


def test_exact_hit_before_the_first_video_frame(media, tmp_path):
    """Video starting 2 s after the audio: an exact hit at 0 starts at the first frame."""
    plain = make(media, "plain.mp4", [*H264, "-movflags", "+faststart"])
    path = media / "late-video.mp4"
    subprocess.run(
        [ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(plain), "-itsoffset",
         "2", "-i", str(plain), "-map", "1:v", "-map", "0:a", "-c", "copy", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    with av.open(str(path)) as container:
        first = float(container.streams.video[0].start_time * container.streams.video[0].time_base)
    assert first > 1.5
    info = cut_clip(FileRangeSource(path), 0.0, 3.0, tmp_path / "x.mp4", exact=True)
    assert info.start == pytest.approx(first, abs=0.05)  # the real start, not the request
    assert not info.keyframe_snapped
    poster_frame(info.path)


def test_every_audio_track_is_carried(media, tmp_path):
    path = make(
        media, "two-audio.mp4", ["-map", "0:v", "-map", "1:a", "-map", "1:a", *H264,
                                 "-metadata:s:a:1", "language=fra"],
    )  # fmt: skip
    info = cut_clip(FileRangeSource(path), 2.0, 4.0, tmp_path / "t.mp4")
    assert info.has_audio
    assert info.dropped_tracks == ()
    with av.open(str(info.path)) as clip:
        audios = clip.streams.audio
        assert len(audios) == 2
        times: dict[int, list[float]] = {a.index: [] for a in audios}
        for packet in clip.demux(*audios):
            if packet.size:
                times[packet.stream.index].append(float(packet.pts * packet.time_base))
    for track in times.values():
        assert min(track) < 0.05  # each track starts with the video
        assert max(track) > info.end - info.start - 0.1  # and runs to its end


@pytest.mark.parametrize(
    ("name", "args", "config"),
    [
        ("vp9.mp4", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "25",
                     "-c:a", "libopus"], "vpcC"),
        ("av1.mp4", ["-c:v", "libsvtav1", "-preset", "12", "-g", "25", "-c:a", "aac"], "av1C"),
    ],
)  # fmt: skip
def test_vp9_and_av1_keep_their_codec_configuration(media, tmp_path, name, args, config):
    path = make(media, name, args)
    info = cut_clip(FileRangeSource(path), 3.0, 5.0, tmp_path / name)
    source_boxes = {b.kind: b for b in parse(path.read_bytes())}
    clip_bytes = info.path.read_bytes()
    clip_boxes = {b.kind: b for b in parse(clip_bytes)}
    assert config in clip_boxes
    src, out = source_boxes[config], clip_boxes[config]
    source_body = path.read_bytes()[src.body : src.offset + src.size]
    clip_body = clip_bytes[out.body : out.offset + out.size]
    assert clip_body[:8] == source_body[:8]  # version, profile, level, depth, chroma
    with av.open(str(info.path)) as clip:
        frame = next(clip.decode(video=0))
        assert (frame.width, frame.height) == (160, 96)
    assert poster_frame(info.path)[:2] == b"\xff\xd8"
