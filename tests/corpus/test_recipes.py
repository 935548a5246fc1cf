"""Each corpus file has the property its kind names (else the corpus tests nothing), and the
re-layout tool moves bytes without changing what a decoder shows."""

from __future__ import annotations

import itertools
import shutil
import struct
import subprocess
from pathlib import Path

import av
import pytest

from tests.corpus.oracle import scan
from tests.corpus.recipes import KINDS, RECIPES, build
from tests.corpus.relayout import _Box, _parse, _top_level, relayout


def _top(path: Path) -> list[str]:
    return [kind.decode("latin-1") for kind, *_ in _top_level(path)]


def _moov(path: Path) -> _Box:
    _kind, offset, head, size = next(b for b in _top_level(path) if b[0] == b"moov")
    with path.open("rb") as f:
        f.seek(offset + head)
        return _Box(b"moov", children=_parse(f.read(size - head), recurse=True))


def _tracks(path: Path) -> list[_Box]:
    return [c for c in _moov(path).children or [] if c.kind == b"trak"]


def _video_trak(path: Path) -> _Box:
    for trak in _tracks(path):
        mdia = trak.child(b"mdia")
        hdlr = mdia.child(b"hdlr") if mdia else None
        if hdlr is not None and hdlr.payload[8:12] == b"vide":
            return trak
    raise AssertionError("no video track")


def _stbl(trak: _Box, kind: bytes) -> _Box | None:
    mdia = trak.child(b"mdia")
    minf = mdia.child(b"minf") if mdia else None
    stbl = minf.child(b"stbl") if minf else None
    return stbl.child(kind) if stbl else None


def _elst(trak: _Box) -> list[tuple[int, int]]:
    """(segment duration, media time) of each edit."""
    edts = next((c for c in _parse(trak.serialize()[8:], recurse=False) if c.kind == b"edts"), None)
    if edts is None:
        return []
    elst = _parse(edts.payload, recurse=False)[0]
    version = elst.payload[0]
    (count,) = struct.unpack_from(">I", elst.payload, 4)
    fmt, step = (">Qq", 16) if version == 1 else (">Ii", 8)
    return [struct.unpack_from(fmt, elst.payload, 8 + i * (step + 4))[:2] for i in range(count)]


def _mdhd_timescale(trak: _Box) -> int:
    mdia = trak.child(b"mdia")
    assert mdia is not None
    mdhd = mdia.child(b"mdhd")
    assert mdhd is not None
    return int(struct.unpack_from(">I", mdhd.payload, 20 if mdhd.payload[0] == 1 else 12)[0])


def _codecs(path: Path) -> list[str]:
    with av.open(str(path)) as c:
        return [s.codec_context.name for s in c.streams if s.type in ("video", "audio")]


def test_every_file_decodes_cleanly_unless_known_broken() -> None:
    """The ffmpeg CLI decodes each file without an error, so a fallback on it is the engine's
    doing; a file ffmpeg itself writes broken says why in its recipe."""
    exe = shutil.which("ffmpeg")
    assert exe
    for kind in KINDS:
        errors = subprocess.run(
            # the first 3 s: a file broken as written is broken from its first fragment
            [exe, "-nostdin", "-v", "error", "-i", str(build(kind)), "-t", "3", "-f", "null", "-"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        ).stderr
        assert bool(errors.strip()) == bool(RECIPES[kind].malformed), (kind, errors[:300])


FRAGMENTED = {
    "frag_mfra": (True, 0),
    "frag_no_index": (False, 0),
    "frag_global_sidx": (True, 2),  # one per track
    "frag_global_sidx_broken": (True, 2),
    "frag_separate_moof_1s": (True, 0),
    "frag_separate_moof_1s_large": (True, 0),
    "dash_skip_trailer_large": (False, None),
    "frag_no_empty_moov": (True, 0),
    "cmaf": (True, 0),  # ffmpeg 5.1: keyframe fragments, mfra, no sidx
    "dash_mfra": (True, None),
    "dash_skip_trailer": (False, None),
    "frag_every_frame": (True, 0),
    "frag_keyframe_1s": (True, 0),
    "frag_audio_tfdt_back": (True, 0),
    "gst_mp4mux_fragmented": (True, 0),
    "browser_mp4_muxer_fragmented": (True, 0),
}


@pytest.mark.parametrize("kind", KINDS)
def test_the_file_is_what_its_kind_says(kind: str) -> None:
    path = build(kind)
    top = _top(path)
    codecs = _codecs(path)
    if kind in FRAGMENTED:
        has_mfra, sidx = FRAGMENTED[kind]
        assert "moof" in top, top
        assert ("mfra" in top) == has_mfra, top
        if sidx is None:  # dash: one sidx per fragment
            assert top.count("sidx") == top.count("moof") or top.count("sidx") > 1, top
        else:
            assert top.count("sidx") == sidx, top
    else:
        assert "moof" not in top
    if kind == "frag_no_empty_moov":
        assert _stbl(_video_trak(path), b"stsz") is not None
        stsz = _stbl(_video_trak(path), b"stsz")
        assert stsz is not None
        assert struct.unpack_from(">I", stsz.payload, 8)[0] > 0
    if kind.endswith("_large"):
        assert path.stat().st_size > 9 * 1024 * 1024
    if kind.startswith("frag_separate_moof_1s"):
        media = scan(path)
        assert top.count("moof") > 2 * len({round(t) for t in media.sync_times})
    if kind == "frag_every_frame":
        assert top.count("moof") >= len(scan(path).frames)
    if kind == "frag_keyframe_1s":
        media = scan(path)
        assert top.count("moof") > len({round(t) for t in media.sync_times})
    if kind == "frag_audio_tfdt_back":
        overlaps = _audio_overlaps(path)
        assert len(overlaps) > 5
        assert all(0.004 < o < 0.006 for o in overlaps), overlaps
    if kind == "gst_mp4mux_fragmented":
        order = _moof_tracks(path)
        assert order[:2] == [2, 1], order  # the audio's moof first, one track per moof
        assert all(len(set(pair)) == 2 for pair in zip(order[::2], order[1::2], strict=False))
    if kind == "gst_qtmux_robust":
        assert top[: top.index("moov")] == ["ftyp", "free", "free"], top
        assert "free" in top[top.index("moov") : top.index("mdat")], top
    if kind == "h264_aac_no_bframes":
        assert _reorder_depth(path) == 0
    if kind == "browser_mp4_muxer":
        assert top == ["ftyp", "moov", "mdat"], top
    if kind.startswith("browser_mp4_muxer"):
        assert _reorder_depth(path) == 0
    if kind == "gst_mp4mux":
        assert top.index("moov") > top.index("mdat")
    expected_codecs = {
        "hevc_hvc1": ["hevc", "aac"],
        "hevc_hev1": ["hevc", "aac"],
        "av1_svt": ["libdav1d", "aac"],
        "vp9_opus": ["vp9", "opus"],
        "h264_opus": ["h264", "opus"],
        "h264_mp3": ["h264", "mp3float"],
        "h264_no_audio": ["h264"],
        "audio_only": ["aac"],
        "two_audio": ["h264", "aac", "aac"],
    }
    want = expected_codecs.get(kind, ["h264", "aac"])
    if kind == "av1_svt":
        assert codecs[1:] == want[1:]
        assert codecs[0] in ("libdav1d", "av1", "libaom-av1")
    else:
        assert sorted(codecs) == sorted(want), codecs
    if kind == "audio_only":
        return
    video = _video_trak(path)
    if kind == "edit_list_ss":
        assert any(media_time > 0 for _, media_time in _elst(video))
    if kind == "empty_edit_video_delay":
        assert _elst(video)[0][1] == -1  # an empty edit first
    if kind in ("timescale_1000", "timescale_90000"):
        assert _mdhd_timescale(video) == int(kind.rsplit("_", 1)[1])
    if kind == "rotation_90":
        assert abs(scan(path).rotation) == 90
    if kind == "vfr":
        frames = scan(path).frames
        gaps = {round(b.time - a.time, 3) for a, b in itertools.pairwise(frames)}
        assert len(gaps) > 1, gaps
    if kind == "mov_timecode":
        with av.open(str(path)) as c:
            assert [s.type for s in c.streams].count("data") == 1  # tmcd
    if kind == "audio_first_track":
        assert _video_trak(path) == _tracks(path)[1]
    if kind == "no_editlist_bframes":
        assert _elst(video) == []
        assert scan(path).frames[0].time > 0
    if kind == "negative_cts":
        ctts = _stbl(video, b"ctts")
        assert ctts is not None
        assert ctts.payload[0] == 1  # version 1: signed offsets
    if kind in ("hevc_hvc1", "hevc_hev1"):
        assert scan(path).codec_tag == kind[-4:]
    if kind == "h264_bframes_16":
        assert _reorder_depth(path) > 8  # past the engine's REORDER_MARGIN
    if kind == "ntsc_29_97":
        assert scan(path).frames[1].time == pytest.approx(1001 / 30000, abs=1e-4)
    if kind == "h264_long_gop":
        assert sorted(scan(path).sync_times) == [0.0, 10.0]
    if kind == "h264_open_gop":
        assert _leading_pictures(path) > 0
    if kind.startswith("audio_l"):
        v_chunks, a_chunks = (_chunk_offsets(t) for t in _tracks(path))
        # 0.5 s chunks (video's start at 0, 0.52, 1.04 s): audio of time t is stored with
        # the video of t + 1 s (lags) or t - 1 s (leads)
        if kind == "audio_lags_1s":
            assert a_chunks[0] > v_chunks[1]
        else:
            assert a_chunks[2] < v_chunks[1]
    if kind == "intra_refresh":
        media = scan(path)
        intra = [f.time for f in media.frames if f.intra]
        assert len(media.sync_times) > 3, media.sync_times
        assert len(intra) == 1, intra
    if kind in ("interleave_1s_co64", "co64_moov_at_end"):
        assert _stbl(video, b"co64") is not None
        assert _stbl(video, b"stco") is None
    if kind.startswith("non_interleaved") or kind.startswith("interleave"):
        assert _stbl(video, b"stco") is not None or _stbl(video, b"co64") is not None
    if kind.endswith("moov_at_end"):
        assert top.index("moov") > top.index("mdat")
    if kind.endswith("faststart") or kind in ("interleave_500ms_stco", "interleave_1s_co64"):
        assert top.index("moov") < top.index("mdat")


def _audio_overlaps(path: Path) -> list[float]:
    """Seconds by which an audio packet starts before the previous one ends (decode times)."""
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        packets = [
            (int(p.dts), int(p.duration or 0)) for p in c.demux(a) if p.size and p.dts is not None
        ]
        assert a.time_base is not None
        tb = float(a.time_base)
    return [
        round((d0 + n0 - d1) * tb, 6)
        for (d0, n0), (d1, _) in itertools.pairwise(packets)
        if d1 < d0 + n0
    ]


def _moof_tracks(path: Path) -> list[int]:
    """The track id of each moof's (first) traf, in file order."""
    out = []
    with path.open("rb") as f:
        for kind, offset, head, size in _top_level(path):
            if kind != b"moof":
                continue
            f.seek(offset + head)
            moof = _parse(f.read(size - head), recurse=False)
            traf = next(b for b in moof if b.kind == b"traf")
            tfhd = next(b for b in _parse(traf.payload, recurse=False) if b.kind == b"tfhd")
            out.append(struct.unpack_from(">I", tfhd.payload, 4)[0])
    return out


def _leading_pictures(path: Path) -> int:
    """Pictures decoded after a non-first keyframe but shown before it (open GOP)."""
    with av.open(str(path)) as c:
        packets = [
            (int(p.pts), bool(p.is_keyframe))
            for p in c.demux(c.streams.video[0])
            if p.size and p.pts is not None
        ]
    count = 0
    for i, (pts, key) in enumerate(packets):
        if key and i:
            count += sum(1 for q, _ in packets[i + 1 : i + 6] if q < pts)
    return count


def _reorder_depth(path: Path) -> int:
    """How many places a frame moves between decode and presentation order, at most."""
    with av.open(str(path)) as c:
        pts = [int(p.pts) for p in c.demux(c.streams.video[0]) if p.size and p.pts is not None]
    shown = {t: i for i, t in enumerate(sorted(pts))}
    return max(shown[t] - i for i, t in enumerate(pts))


def _chunk_offsets(trak: _Box) -> list[int]:
    box = _stbl(trak, b"stco") or _stbl(trak, b"co64")
    assert box is not None
    (count,) = struct.unpack_from(">I", box.payload, 4)
    fmt = "Q" if box.kind == b"co64" else "I"
    return list(struct.unpack_from(f">{count}{fmt}", box.payload, 8))


@pytest.mark.parametrize(
    ("chunk_s", "co64", "moov_first"), [(0.5, False, True), (1.0, True, False), (None, True, True)]
)
def test_relayout_keeps_every_frame_and_packet(
    tmp_path: Path, chunk_s: float | None, co64: bool, moov_first: bool
) -> None:
    src = build("h264_aac_moov_at_end")
    dst = relayout(src, tmp_path / "out.mp4", chunk_s=chunk_s, co64=co64, moov_first=moov_first)
    before, after = scan(src), scan(dst)
    assert after.frames == before.frames
    assert after.audio == before.audio
    top = _top(dst)
    assert (top.index("moov") < top.index("mdat")) == moov_first
    tracks = _tracks(dst)
    assert all((_stbl(t, b"co64") is not None) == co64 for t in tracks)
    counts = [len(_chunk_offsets(t)) for t in tracks]
    if chunk_s is None:
        assert counts == [1, 1]  # one chunk per track: not interleaved
        video, audio = (_chunk_offsets(t)[0] for t in tracks)
        assert video < audio
    else:
        assert all(abs(n - 12 / chunk_s) <= 1 for n in counts), counts
        # interleaved: the tracks' chunks alternate in the file
        merged = sorted((off, n) for n, t in enumerate(tracks) for off in _chunk_offsets(t))
        switches = sum(1 for a, b in itertools.pairwise(merged) if a[1] != b[1])
        assert switches >= len(merged) - 2
