"""A fragmented source's audio in a clip: the source's own times, every cut of an open source.

The fragment sample table (`clipping/fragments.py`) must say what FFmpeg says when it reads a
file from its start (the reference a clip is judged against); a cut re-timed from it must
carry the audio as one contiguous run, or decline; and the second and later cuts of one
`ClipSource` must be what a cold cut is (the demuxer's index carried over once made a 4 s
clip declare 15.9 s).
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import pytest

from clipsearch.clipping import ClipReason, ClipSource, ClipUnavailable, FileRangeSource
from clipsearch.clipping.checks import check_audio_run
from clipsearch.clipping.fragments import (
    TrackDefaults,
    fragment_samples,
    samples_span,
    track_defaults,
)
from tests.corpus.oracle import declared_duration_defects, scan
from tests.corpus.recipes import build


def _top_level(data: bytes) -> list[tuple[bytes, int, int]]:
    out, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        out.append((kind, at, size))
        at += size
    return out


def test_the_fragment_table_says_what_a_read_from_the_start_says(
    sources: dict[str, Path],
) -> None:
    """Every packet's byte offset, decode time and duration, video and audio, agree with
    FFmpeg's read of the whole file in order."""
    path = sources["fragmented"]
    data = path.read_bytes()
    boxes = _top_level(data)
    kind, at, size = next(b for b in boxes if b[0] == b"moov")
    defaults = track_defaults(data[at : at + size])
    with av.open(str(path)) as container:
        for stream in container.streams:
            table = {}
            for kind, at, size in boxes:
                if kind == b"moof":
                    table.update(fragment_samples(data[at : at + size], at, stream.id, defaults))
            container.seek(0)
            packets = [p for p in container.demux(stream) if p.size]
            assert len(packets) > 100
            assert len(table) == len(packets)
            for packet in packets:
                assert packet.pos is not None
                sample = table[packet.pos]
                assert sample.decode_time == packet.dts
                assert sample.duration == packet.duration


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def test_an_edit_list_shifts_the_fragment_times_as_ffmpeg_does() -> None:
    """FFmpeg takes the first edit's media time, less the empty edits before it (rescaled
    from the movie's timescale), off every tfdt."""
    mvhd = _box(b"mvhd", bytes(12) + struct.pack(">II", 1000, 0) + bytes(80))
    tkhd = _box(b"tkhd", bytes(12) + struct.pack(">I", 2) + bytes(64))
    elst = _box(b"elst", bytes(4) + struct.pack(">IIiIIiI", 2, 500, -1, 65536, 9000, 1024, 65536))
    mdhd = _box(b"mdhd", bytes(12) + struct.pack(">II", 48000, 0) + bytes(4))
    trex = _box(b"trex", bytes(4) + struct.pack(">IIIII", 2, 1, 1024, 371, 0))
    trak = _box(b"trak", tkhd + _box(b"edts", elst) + _box(b"mdia", mdhd))
    moov = _box(b"moov", mvhd + trak + _box(b"mvex", trex))
    assert track_defaults(moov) == {2: TrackDefaults(1024, 371, 1024 - 500 * 48)}


def test_a_trun_without_durations_or_sizes_takes_the_track_defaults() -> None:
    tfhd = _box(b"tfhd", struct.pack(">II", 0x20000, 2))  # default-base-is-moof
    tfdt = _box(b"tfdt", struct.pack(">II", 0, 96000))
    trun = _box(b"trun", struct.pack(">IIi", 0x1, 3, 100))  # data offset only
    moof = _box(b"moof", _box(b"traf", tfhd + tfdt + trun))
    table = fragment_samples(moof, 5000, 2, {2: TrackDefaults(1024, 371, 1024)})
    assert {pos: (s.decode_time, s.duration) for pos, s in table.items()} == {
        5100: (96000 - 1024, 1024),
        5471: (96000, 1024),
        5842: (96000 + 1024, 1024),
    }
    # where its samples lie: the engine declines a moof whose samples leave its mdat
    assert samples_span(moof, 5000, {2: TrackDefaults(1024, 371, 1024)}) == (5100, 5100 + 3 * 371)


def _packet(dts: int, duration: int) -> SimpleNamespace:
    return SimpleNamespace(dts=dts, duration=duration, time_base=Fraction(1, 48000))


def test_audio_that_overlaps_or_leaves_a_gap_at_a_join_is_declined() -> None:
    check_audio_run([_packet(n * 1024, 1024) for n in range(10)])
    overlap = [_packet(0, 1024), _packet(1024, 1024), _packet(2048 - 240, 1024)]
    with pytest.raises(ClipUnavailable) as caught:
        check_audio_run(overlap)
    assert caught.value.reason == ClipReason.UNSUPPORTED_CONTAINER
    assert "overlap by 5.0 ms" in caught.value.message
    gap = [_packet(0, 1024), _packet(2048, 1024)]
    with pytest.raises(ClipUnavailable, match=r"leave a gap by 21\.3 ms"):
        check_audio_run(gap)


def test_later_cuts_of_one_open_fragmented_source_declare_their_own_length(
    tmp_path: Path,
) -> None:
    """ffmpeg's frag_keyframe+empty_moov, cut as the function does: the end, the middle, the
    start (once a 3 s clip whose container said 5.9 s), the end again. Each clip's container
    durations are its streams', and each is the cold cut's clip."""
    path = build("frag_mfra")
    hits = [(9.5, 13.0), (6.37, 9.37), (0.0, 3.0), (9.5, 13.0)]
    with ClipSource(FileRangeSource(path)) as clips:
        for n, (start, end) in enumerate(hits):
            out = tmp_path / f"seq-{n}.mp4"
            info = clips.cut(start, end, out)
            assert declared_duration_defects(out, scan(out, rotation=False)) == []
            cold_out = tmp_path / f"cold-{n}.mp4"
            with ClipSource(FileRangeSource(path)) as cold:
                cold_info = cold.cut(start, end, cold_out)
            assert (info.start, info.end) == (cold_info.start, cold_info.end)
            assert scan(out, rotation=False).audio == scan(cold_out, rotation=False).audio
