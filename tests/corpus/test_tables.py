"""The synthetic index (clipping/movie.py, moov.py) against FFmpeg's own parse of the whole moov.

Every corpus kind with a moov is classified: cut from our tables, or (a short, named list) by
FFmpeg parsing the moov whole. For the first kind, a clip cut from the synthetic index must be
byte for byte the clip cut the old way (the same packets reach the same muxer), without
falling back to the whole moov. The oracle (test_corpus.py) judges the clips themselves.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import av
import pytest

from clipsearch.clipping import FileRangeSource, IndexCache, cut_clip
from clipsearch.clipping.movie import parse_movie
from clipsearch.clipping.samples import Unsupported
from tests.corpus.oracle import last_samples
from tests.corpus.recipes import KINDS, build
from tests.corpus.runner import hits_for, source_media

# Kinds FFmpeg still parses whole, and why (anything else with a moov must use the tables).
WHOLE_MOOV = {
    "negative_cts": "negative composition offsets",  # FFmpeg shifts every dts by the least
}
# Fragmented kinds have no sample tables to cut: their fragments are their index.
DIFF_HITS = ("start", "middle", "gop_boundary", "exact_middle", "before_keyframe", "end")


def _top_level(path: Path) -> list[tuple[str, int, int]]:
    out = []
    size = path.stat().st_size
    with path.open("rb") as f:
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            length, kind = struct.unpack(">I4s", head[:8])
            if length == 1:
                (length,) = struct.unpack(">Q", head[8:16])
            elif length == 0:
                length = size - pos
            out.append((kind.decode("latin-1"), pos, length))
            pos += length
    return out


def _moov_kinds() -> list[str]:
    return [k for k in KINDS if not any(b == "moof" for b, _, _ in _top_level(build(k)))]


def test_every_kind_with_a_moov_is_cut_from_tables_or_named() -> None:
    seen: dict[str, str] = {}
    for kind in _moov_kinds():
        path = build(kind)
        moov = next((b for b in _top_level(path) if b[0] == "moov"), None)
        assert moov is not None, kind
        data = path.read_bytes()
        try:
            parse_movie(data[moov[1] : moov[1] + moov[2]], len(data))
        except Unsupported as why:
            seen[kind] = str(why)
    assert seen == WHOLE_MOOV


def _diff_kinds() -> list[str]:
    # fragmented kinds by name (their files are not built to collect the tests)
    fragmented = [k for k in KINDS if "frag" in k or k.startswith(("cmaf", "dash"))]
    return [k for k in KINDS if k not in (*WHOLE_MOOV, *fragmented, "audio_only")]


@pytest.mark.parametrize("kind", _diff_kinds())
def test_a_clip_from_the_tables_is_the_clip_from_the_whole_moov(kind: str, tmp_path: Path) -> None:
    path = build(kind)
    hits = hits_for(source_media(path))
    compared = 0
    for name in DIFF_HITS:
        hit = hits.get(name)
        if hit is None:
            continue
        outs = []
        for use_tables in (True, False):
            out = tmp_path / f"{name}-{use_tables}.mp4"
            info = cut_clip(
                FileRangeSource(path, cache_key=f"{kind}#{use_tables}"),
                hit.start,
                hit.end,
                out,
                exact=hit.exact,
                index_cache=IndexCache(64 * 1024 * 1024),
                use_tables=use_tables,
            )
            outs.append((info, out.read_bytes()))
        (tables, clip), (whole, reference) = outs
        assert tables.index_path == "tables", (kind, name)
        assert whole.index_path == "moov", (kind, name)
        assert (tables.start, tables.end, tables.keyframe_snapped) == (
            whole.start,
            whole.end,
            whole.keyframe_snapped,
        ), (kind, name)
        assert clip == reference, f"{kind}/{name}: the clips differ"
        assert tables.bytes_read <= whole.bytes_read + 64 * 1024, (kind, name)
        compared += 1
    assert compared >= 4


def _patch_video_edit(data: bytes, media_time: int) -> bytes:
    """The first video trak's (single, normal) edit moved to start at `media_time`."""
    out = bytearray(data)
    pos = 0
    while pos < len(out):
        trak = out.find(b"trak", pos)
        assert trak > 0, "no video trak with an edit list"
        hdlr = out.find(b"hdlr", trak)
        elst = out.find(b"elst", trak)
        next_trak = out.find(b"trak", trak + 4)
        within = next_trak < 0 or elst < next_trak
        if out[hdlr + 12 : hdlr + 16] == b"vide" and within:
            version = out[elst + 4]
            (count,) = struct.unpack_from(">I", out, elst + 8)
            assert count == 1
            assert version == 0
            struct.pack_into(">i", out, elst + 12 + 4, media_time)
            return bytes(out)
        pos = trak + 4
    raise AssertionError("unreachable")


def test_an_edit_starting_between_a_keyframes_decode_and_display_times(tmp_path: Path) -> None:
    """Review finding: a trimmed export whose edit starts after a keyframe's decode time but
    before it shows. The demuxer then starts the edit from the keyframe before it: the
    synthetic index must hold that one too, or its timeline is a frame off the source's
    (clips started 40 ms late with a wrong reported start, or a GOP early)."""
    source = tmp_path / "source.mp4"
    subprocess.run(
        [
            "ffmpeg", "-y", "-hide_banner", "-loglevel", "error",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=30",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=30:sample_rate=44100",
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "50",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart",
            str(source),
        ],
        check=True,
    )  # fmt: skip
    data = source.read_bytes()
    moov = next(b for b in _top_level(source) if b[0] == "moov")
    movie = parse_movie(data[moov[1] : moov[1] + moov[2]], len(data))
    video = next(t for t in movie.tracks if t.handler == "vide")
    key = 0
    for _ in range(3):  # the fourth keyframe (6 s)
        key = video.sync_after(key) or 0
    assert video.composition(key) > 1, "no B-frames: the keyframe shows when it decodes"
    path = tmp_path / "edit-mid-gop.mp4"
    path.write_bytes(_patch_video_edit(data, video.dts(key) + video.composition(key) // 5))
    for start, end in ((20.0, 22.0), (18.5, 19.0), (10.0, 12.0), (3.0, 5.0)):
        clips = []
        for use_tables in (True, False):
            out = tmp_path / f"{start}-{use_tables}.mp4"
            info = cut_clip(FileRangeSource(path), start, end, out, use_tables=use_tables)
            clips.append((info.index_path, info.start, out.read_bytes()))
        (path_t, start_t, clip_t), (path_m, start_m, clip_m) = clips
        assert (path_t, path_m) == ("tables", "moov")
        assert start_t == start_m, f"at {start}s the tables start the clip at {start_t}s"
        assert clip_t == clip_m, f"the clips at {start}s differ"


def _last_audio_durations(path: Path) -> list[float]:
    """Each audio track's last sample's stts duration (seconds), in stream order."""
    last = last_samples(path)
    with av.open(str(path)) as container:
        return [last[int(s.id)][1] for s in container.streams.audio]


@pytest.mark.parametrize("kind", ["h264_mp3", "browser_mp4_muxer", "intra_refresh"])
def test_a_clip_to_the_end_keeps_the_last_audio_samples_stts_duration(
    kind: str, tmp_path: Path
) -> None:
    """A clip holding a track's last sample gives it the source's stts duration, on both
    paths. FFmpeg 8 reports h264_mp3's last MP3 frame as 1152 ticks where its stts (and edit
    list) end it at 1105: written as reported, the clip played the encoder's padding. Not the
    stream's duration either: browser_mp4_muxer's mdhd is 512 ticks short of its stts."""
    path = build(kind)
    hit = hits_for(source_media(path))["end"]
    expected = _last_audio_durations(path)
    assert expected
    for use_tables in (True, False):
        out = tmp_path / f"{use_tables}.mp4"
        info = cut_clip(
            FileRangeSource(path), hit.start, hit.end, out, exact=hit.exact, use_tables=use_tables
        )
        assert info.index_path == ("tables" if use_tables else "moov")
        assert _last_audio_durations(out) == pytest.approx(expected, abs=1e-9), use_tables
