"""The oracle itself: it passes a clip that is right and catches each way a clip can be wrong.

Clips here are made by the ffmpeg CLI (stream copy from a keyframe), never by our engine, and
described by hand-built ClipInfo values, so each test isolates one kind of wrongness.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from clipsearch.clipping import ClipInfo, ClipReason, ClipUnavailable
from tests.corpus import runner
from tests.corpus.oracle import (
    Media,
    Verdict,
    _audio_run_defect,
    audio_packets,
    cheap_defects,
    declared,
    declared_duration_defects,
    judge,
    scan,
)
from tests.corpus.recipes import build

KEY = 4.0  # a keyframe of the corpus files (2 s GOPs)


def _ffmpeg(*args: str) -> None:
    exe = shutil.which("ffmpeg")
    assert exe, "the corpus needs the ffmpeg CLI"
    subprocess.run([exe, "-nostdin", "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def source() -> Path:
    return build("h264_aac_faststart")


@pytest.fixture(scope="module")
def media(source: Path) -> Media:
    return scan(source)


def _info(path: Path, start: float, requested: tuple[float, float], **kw: object) -> ClipInfo:
    """What an honest engine would report for a clip starting at `start` (source time)."""
    clip = scan(path)
    fields: dict[str, object] = {
        "path": path,
        "requested_start": requested[0],
        "requested_end": requested[1],
        "start": start,
        "end": start + clip.stored_end,
        "size": path.stat().st_size,
        "requests": 1,
        "bytes_read": path.stat().st_size,
        "keyframe_snapped": start < requested[0] - 1e-6,
        "exact": False,
        "index_cached": False,
        "video_codec": "h264",
        "codec_tag": "avc1",
        "has_audio": bool(clip.audio),
    }
    fields.update(kw)
    return ClipInfo(**fields)  # type: ignore[arg-type]


def _copy(source: Path, out: Path, at: float, *extra: str) -> Path:
    """Stream copy from the keyframe at `at` to the end (a `-t` cut drops trailing B-frames)."""
    _ffmpeg("-ss", str(at), "-i", str(source), "-map", "0", *extra, str(out))
    return out


@pytest.fixture(scope="module")
def right_clip(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy(source, tmp_path_factory.mktemp("oracle") / "right.mp4", KEY, "-c", "copy")


def _why(verdict: Verdict) -> str:
    assert not verdict.right, "the oracle passed a wrong clip"
    return " | ".join(verdict.why)


def test_a_stream_copy_from_the_keyframe_is_right(media: Media, right_clip: Path) -> None:
    clip = scan(right_clip)
    info = _info(right_clip, KEY, (KEY + 0.3, KEY + 2.0))
    verdict = judge(media, right_clip, info, requested=(KEY + 0.3, KEY + 2.0))
    assert verdict.right, verdict
    assert clip.frames[0].time == 0.0


def test_a_clip_from_the_wrong_offset_is_wrong(source: Path, media: Media, tmp_path: Path) -> None:
    # cut at 2 s, reported as the hit's keyframe at 4 s: decodes cleanly, wrong moment
    clip = _copy(source, tmp_path / "early.mp4", KEY - 2, "-c", "copy")
    why = _why(judge(media, clip, _info(clip, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)))
    assert "frames wrong" in why
    assert "source shows it at 2.000s" in why


def test_reported_start_off_by_frames_is_wrong(media: Media, right_clip: Path) -> None:
    info = _info(right_clip, KEY + 0.08, (KEY + 0.3, KEY + 2))
    assert "frames wrong" in _why(judge(media, right_clip, info, requested=(KEY + 0.3, KEY + 2)))


def test_reported_end_that_is_not_the_last_frame_is_wrong(media: Media, right_clip: Path) -> None:
    base = _info(right_clip, KEY, (KEY, KEY + 1))
    info = dataclasses.replace(base, end=base.end + 0.5)
    assert "reported end" in _why(judge(media, right_clip, info, requested=(KEY, KEY + 1)))


def test_a_clip_that_does_not_cover_the_hit_is_wrong(
    source: Path, media: Media, tmp_path: Path
) -> None:
    short = _copy(source, tmp_path / "short.mp4", KEY, "-t", "1", "-c", "copy")
    info = _info(short, KEY, (KEY, KEY + 3))
    assert "clip ends at" in _why(judge(media, short, info, requested=(KEY, KEY + 3)))


def test_starting_after_the_hit_is_wrong(media: Media, right_clip: Path) -> None:
    info = _info(right_clip, KEY, (KEY - 0.5, KEY + 1), keyframe_snapped=False)
    assert "after the hit's start" in _why(
        judge(media, right_clip, info, requested=(KEY - 0.5, KEY + 1))
    )


def test_snapping_further_back_than_the_latest_keyframe_is_wrong(
    source: Path, media: Media, tmp_path: Path
) -> None:
    clip = _copy(source, tmp_path / "gop-early.mp4", KEY - 2, "-c", "copy")
    info = _info(clip, KEY - 2, (KEY + 0.5, KEY + 1.5))
    assert "latest keyframe" in _why(judge(media, clip, info, requested=(KEY + 0.5, KEY + 1.5)))


def test_a_keyframe_snapped_flag_that_lies_is_wrong(media: Media, right_clip: Path) -> None:
    info = _info(right_clip, KEY, (KEY + 0.3, KEY + 2), keyframe_snapped=False)
    assert "keyframe_snapped" in _why(
        judge(media, right_clip, info, requested=(KEY + 0.3, KEY + 2))
    )


def test_audio_out_of_sync_is_wrong(source: Path, media: Media, tmp_path: Path) -> None:
    clip = tmp_path / "late-audio.mp4"
    _ffmpeg(
        "-ss", str(KEY), "-i", str(source), "-ss", str(KEY), "-itsoffset", "0.2", "-i",
        str(source), "-map", "0:v", "-map", "1:a", "-c", "copy", str(clip),
    )  # fmt: skip
    why = _why(judge(media, clip, _info(clip, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)))
    assert "audio track 0" in why


def test_audio_from_another_time_is_wrong(source: Path, media: Media, tmp_path: Path) -> None:
    clip = tmp_path / "other-audio.mp4"
    _ffmpeg(
        "-ss", str(KEY), "-i", str(source), "-ss", str(KEY + 3), "-i", str(source),
        "-map", "0:v", "-map", "1:a", "-c", "copy", str(clip),
    )  # fmt: skip
    why = _why(judge(media, clip, _info(clip, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)))
    assert "off by" in why


def test_a_re_encoded_clip_is_not_the_source_frames(
    source: Path, media: Media, tmp_path: Path
) -> None:
    clip = _copy(source, tmp_path / "reencoded.mp4", KEY, "-c:v", "libx264", "-c:a", "copy")
    why = _why(judge(media, clip, _info(clip, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)))
    assert "frames wrong" in why


def test_an_unreadable_clip_is_wrong(media: Media, right_clip: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(right_clip.read_bytes()[:2000])
    info = dataclasses.replace(_info(right_clip, KEY, (KEY, KEY + 2)), path=broken)
    assert "unreadable" in _why(judge(media, broken, info, requested=(KEY, KEY + 2)))


def test_a_clip_for_a_hit_past_the_end_is_wrong(media: Media, right_clip: Path) -> None:
    info = _info(right_clip, KEY, (30.0, 33.0))
    assert "after the video ends" in _why(judge(media, right_clip, info, requested=(30.0, 33.0)))


def test_a_dropped_audio_track_must_be_said(tmp_path: Path) -> None:
    source = build("two_audio")
    media = scan(source)
    clip = _copy(source, tmp_path / "one-track.mp4", KEY, "-map", "-0:a:1", "-c", "copy")
    info = _info(clip, KEY, (KEY, KEY + 2))
    assert "1 of the source's 2 audio tracks" in _why(
        judge(media, clip, info, requested=(KEY, KEY + 2))
    )
    said = dataclasses.replace(info, dropped_tracks=("audio#3 (aac)",))
    assert judge(media, clip, said, requested=(KEY, KEY + 2)).right
    both = _copy(source, tmp_path / "two-tracks.mp4", KEY, "-c", "copy")
    assert judge(media, both, _info(both, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)).right


def test_a_lost_rotation_is_wrong(tmp_path: Path) -> None:
    source = build("rotation_90")
    media = scan(source)
    assert media.rotation != 0
    clip = _copy(source, tmp_path / "upright.mp4", KEY, "-c", "copy", "-metadata:s:v:0", "rotate=0")
    why = _why(judge(media, clip, _info(clip, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)))
    assert "rotation" in why


def test_dropped_audio_packets_are_wrong(
    source: Path, media: Media, right_clip: Path, tmp_path: Path
) -> None:
    """One AAC packet in three dropped; the muxer stretches the packet before each gap over it
    (stts from decode-time steps), so every packet is in sync and the clip still decodes."""
    clip = _copy(source, tmp_path / "holes.mp4", KEY, "-c", "copy", "-bsf:a", _DROP_EVERY_THIRD)
    assert len(scan(clip).audio[0]) < 0.7 * len(scan(right_clip).audio[0])
    why = _why(judge(media, clip, _info(clip, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)))
    assert "not the source's contiguous run" in why or "lasts" in why


_DROP_EVERY_THIRD = "noise=drop=eq(mod(n\\,3)\\,1)"


def test_a_stretched_audio_packet_is_wrong(source: Path, media: Media, tmp_path: Path) -> None:
    """The same packets, one of them lasting twice as long: every later one a packet late,
    within the sync tolerance of one audio frame, so only the durations tell."""
    clip = _copy(
        source, tmp_path / "stretched.mp4", KEY, "-c", "copy",
        "-bsf:a", "setts=ts=if(gt(N\\,20)\\,TS+DURATION\\,TS)",
    )  # fmt: skip
    why = _why(judge(media, clip, _info(clip, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)))
    assert "lasts" in why


def _patch_movie_duration(path: Path, seconds: float) -> None:
    """Rewrite mvhd's duration (version 0) in place: what a player shows as the length."""
    data = bytearray(path.read_bytes())
    at = data.index(b"mvhd") - 4
    timescale = int.from_bytes(data[at + 20 : at + 24], "big")
    data[at + 24 : at + 28] = round(seconds * timescale).to_bytes(4, "big")
    path.write_bytes(bytes(data))


def test_a_clip_that_declares_the_wrong_duration_is_wrong(
    media: Media, right_clip: Path, tmp_path: Path
) -> None:
    """Streams of 8 s in a container that says 15.9 s: decodes cleanly, a player shows a
    timeline twice as long (the defect of later cuts on one open fragmented source)."""
    clip = tmp_path / "long.mp4"
    clip.write_bytes(right_clip.read_bytes())
    _patch_movie_duration(clip, 15.87)
    assert declared(clip).movie == pytest.approx(15.87, abs=1e-3)
    info = _info(clip, KEY, (KEY, KEY + 2))
    why = _why(judge(media, clip, info, requested=(KEY, KEY + 2)))
    assert "the container declares 15.870s (mvhd)" in why
    assert declared_duration_defects(right_clip, scan(right_clip)) == []


def test_a_track_that_declares_the_wrong_duration_is_wrong(
    media: Media, right_clip: Path, tmp_path: Path
) -> None:
    """The audio trak's tkhd (and mdhd) claiming seconds more than its packets hold."""
    clip = tmp_path / "long-audio.mp4"
    data = bytearray(right_clip.read_bytes())
    traks = [i - 4 for i in range(len(data)) if data[i : i + 4] == b"tkhd"]
    at = traks[-1]  # the second trak: the audio
    timescale = int.from_bytes(data[data.index(b"mvhd") + 16 : data.index(b"mvhd") + 20], "big")
    data[at + 28 : at + 32] = (15 * timescale).to_bytes(4, "big")
    clip.write_bytes(bytes(data))
    why = _why(judge(media, clip, _info(clip, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)))
    assert "track 2 (audio): tkhd declares 15.000s" in why


def _late_audio_edit(source: Path, out: Path, *, last_delta: int | None = None) -> Path:
    """The source with its audio edit starting 1 s later (media time 1024 + 48000, to the
    media's end): the source's audio from 1.0 s, as a clip of a one-IDR source holds it.
    `last_delta`: also rewrite the audio stts's last delta (the 512-tick last sample)."""
    data = bytearray(source.read_bytes())
    elst = [i - 4 for i in range(len(data)) if data[i : i + 4] == b"elst"][-1]  # the audio's
    assert data[elst + 8] == 0
    assert int.from_bytes(data[elst + 20 : elst + 24]) == 1024
    data[elst + 16 : elst + 24] = (11000).to_bytes(4, "big") + (49024).to_bytes(4, "big")
    if last_delta is not None:
        stts = [i - 4 for i in range(len(data)) if data[i : i + 4] == b"stts"][-1]
        count = int.from_bytes(data[stts + 12 : stts + 16])
        at = stts + 16 + 8 * (count - 1) + 4
        assert int.from_bytes(data[at : at + 4]) == 512
        data[at : at + 4] = last_delta.to_bytes(4, "big")
    out.write_bytes(bytes(data))
    return out


def test_the_last_audio_packet_lasts_what_its_stts_says(source: Path, tmp_path: Path) -> None:
    """An audio edit starting over 1 s into the media (a clip of a one-IDR source): FFmpeg 8's
    mov demuxer reports the last AAC packet as 1024 ticks where the stts says 512 (FFmpeg 5.1
    and the source read 512; both decode the same samples). The oracle reads the last
    sample's duration from the stts, so the right run passes and a stretched one is caught."""
    want = audio_packets(source)[0]
    assert round((want[-1].end - want[-1].time) * 48000) == 512
    right = audio_packets(_late_audio_edit(source, tmp_path / "late-edit.mp4"))[0]
    assert round((right[-1].end - right[-1].time) * 48000) == 512
    assert _audio_run_defect(right, want, 1.0) == ""
    stretched = _late_audio_edit(source, tmp_path / "late-edit-1024.mp4", last_delta=1024)
    assert "lasts 21.3 ms, the source's 10.7 ms" in _audio_run_defect(
        audio_packets(stretched)[0], want, 1.0
    )


def test_audio_that_starts_late_is_wrong(source: Path, media: Media, tmp_path: Path) -> None:
    """The audio fragment before the video's missing: audio from 0.9 s, in sync from there."""
    clip = _copy(
        source, tmp_path / "audio-late.mp4", KEY, "-c", "copy",
        "-bsf:a", "noise=drop=lt(pts*tb\\,0.9)",
    )  # fmt: skip
    assert scan(clip).audio[0][0].time > 0.9
    why = _why(judge(media, clip, _info(clip, KEY, (KEY, KEY + 2)), requested=(KEY, KEY + 2)))
    assert "audio track 0 starts at 0.9" in why


def test_the_fuzzers_cheap_checks_pass_a_right_clip_and_catch_these_defects(
    source: Path, right_clip: Path, tmp_path: Path
) -> None:
    """What the fuzz worker runs on a sample of its clips (no decode of the source)."""
    assert cheap_defects(source, right_clip, KEY) == []
    holes = _copy(source, tmp_path / "holes.mp4", KEY, "-c", "copy", "-bsf:a", _DROP_EVERY_THIRD)
    assert "clip audio track 0: " in " ".join(cheap_defects(source, holes, KEY))
    long = tmp_path / "long.mp4"
    long.write_bytes(right_clip.read_bytes())
    _patch_movie_duration(long, 15.87)
    assert "(mvhd)" in " ".join(cheap_defects(source, long, KEY))


def test_sequential_mode_cuts_out_of_time_order_after_a_fallback_and_repeats() -> None:
    order = runner.sequence(runner.hit_names())
    assert order[: len(runner.SEQUENCE_FIRST)] == runner.SEQUENCE_FIRST  # end before start
    assert order.index("past_end") + 1 < len(order)  # cuts follow a fallback
    assert order.count(runner.REPEATED) == 2
    assert sorted(set(order)) == sorted(runner.hit_names())


def test_the_runner_tells_crash_fallback_and_hang_apart(
    monkeypatch: pytest.MonkeyPatch, media: Media, tmp_path: Path
) -> None:
    """A cut that raises anything but ClipUnavailable is a crash, one that stalls is a hang:
    both fail their corpus test (only right clips and allowlisted fallbacks pass)."""
    hit = runner.Hit("middle", 6.0, 8.0)
    out = tmp_path / "none.mp4"

    def crash() -> object:
        raise KeyError("boom")

    def fallback() -> object:
        raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, "no")

    def stall() -> object:
        while True:
            time.sleep(0.01)

    monkeypatch.setattr(runner, "CUT_DEADLINE_S", 0.2)
    got = {f.__name__: runner._judge("k", "cold", hit, media, out, f) for f in (crash, fallback)}
    got["stall"] = runner._judge("k", "cold", hit, media, out, stall)
    assert got["crash"].status == "crash"
    assert "KeyError" in got["crash"].detail
    assert (got["fallback"].status, got["fallback"].reason) == ("fallback", "unsupported_codec")
    assert got["stall"].status == "hang"
