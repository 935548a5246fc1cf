"""Our sample tables (movie.py, moov.py, sidecar.py) and the planner's index over them,
against FFmpeg's own index.

FFmpeg parses the same moov its way; for every sample of every track our offset, size, decode
time (shifted to FFmpeg's timeline) and sync flag must be its, and the planner's search must
answer what FFmpeg's av_index_search_timestamp answers.
"""

from __future__ import annotations

import itertools
import struct
import tracemalloc
from pathlib import Path

import av
import pytest

from clipsearch.clipping import ClipSource, FileRangeSource, IndexCache
from clipsearch.clipping.moov import rebuild
from clipsearch.clipping.movie import Movie, parse_movie
from clipsearch.clipping.planner import EntriesIndex, TableIndex
from clipsearch.clipping.samples import Unsupported, be32, chunk_map
from clipsearch.clipping.sidecar import dump_movie, load_movie

KINDS = ("faststart", "moov_at_end", "video_only", "hvc1", "hev1")


def _moov(path: Path) -> tuple[bytes, bytes]:
    """(the file's bytes, its moov box's bytes)."""
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"moov":
            return data, data[pos : pos + size]
        pos += size
    raise AssertionError("no moov")


def _movie(path: Path) -> Movie:
    data, moov = _moov(path)
    return parse_movie(moov, len(data))


@pytest.mark.parametrize("kind", KINDS)
def test_every_sample_is_where_and_when_ffmpeg_says(sources: dict[str, Path], kind: str) -> None:
    movie = _movie(sources[kind])
    with av.open(str(sources[kind])) as container:
        assert len(container.streams) == len(movie.tracks)
        for stream, track in zip(container.streams, movie.tracks, strict=True):
            entries = stream.index_entries
            assert len(entries) == track.samples
            shift = int(entries[0].timestamp) - track.dts(0)
            for i, entry in enumerate(entries):
                assert track.offset(i) == entry.pos, (kind, stream.index, i)
                assert track.sizes[i] == entry.size, (kind, stream.index, i)
                assert track.dts(i) + shift == entry.timestamp, (kind, stream.index, i)
                assert track.is_sync(i) == entry.is_keyframe, (kind, stream.index, i)


@pytest.mark.parametrize("kind", ["moov_at_end", "hev1"])
def test_the_planners_search_answers_as_ffmpegs_does(sources: dict[str, Path], kind: str) -> None:
    movie = _movie(sources[kind])
    with av.open(str(sources[kind])) as container:
        stream = container.streams.video[0]
        track = movie.tracks[stream.index]
        theirs = EntriesIndex(stream.index_entries, None)
        ours = TableIndex(track, int(stream.index_entries[0].timestamp) - track.dts(0))
        last = ours.timestamp(len(ours) - 1)
        step = max(1, (last - ours.timestamp(0)) // 400)
        for ts in range(ours.timestamp(0) - 3 * step, last + 3 * step, step):
            for backward, any_frame in itertools.product((True, False), repeat=2):
                expected = theirs.search(ts, backward=backward, any_frame=any_frame)
                got = ours.search(ts, backward=backward, any_frame=any_frame)
                assert got == expected, (kind, ts, backward, any_frame)


@pytest.mark.parametrize("kind", KINDS)
def test_tables_round_trip_through_the_sidecar_form(sources: dict[str, Path], kind: str) -> None:
    movie = _movie(sources[kind])
    again = load_movie(dump_movie(movie))
    assert again.skeleton == movie.skeleton
    assert again.movie_timescale == movie.movie_timescale
    for a, b in zip(movie.tracks, again.tracks, strict=True):
        assert a.arrays() == b.arrays()
        assert a.sdtp == b.sdtp
        assert [(h, r.starts, r.values) for h, r in a.groups] == [
            (h, r.starts, r.values) for h, r in b.groups
        ]
        assert (a.edit_shift, a.edit_media_time, a.ctts_version) == (
            b.edit_shift,
            b.edit_media_time,
            b.ctts_version,
        )


def test_index_is_compact(sources: dict[str, Path]) -> None:
    """Issue 11's bound: at most 16 bytes of index per sample, all tracks together."""
    movie = _movie(sources["moov_at_end"])
    tables = sum(t.nbytes for t in movie.tracks)
    assert tables <= 16 * movie.samples, (tables, movie.samples)


def test_a_synthetic_index_of_no_window_keeps_only_the_ends(sources: dict[str, Path]) -> None:
    movie = _movie(sources["moov_at_end"])
    synthetic = movie.synthesize([None] * len(movie.tracks))
    again = parse_movie(synthetic, 1 << 40)
    for source, kept in zip(movie.tracks, again.tracks, strict=True):
        # 16 first + placeholders + 16 last samples; each kept sample where it was.
        assert kept.samples < 40
        assert [kept.offset(i) for i in range(16)] == [source.offset(i) for i in range(16)]
        assert kept.dts(kept.samples - 1) == source.dts(source.samples - 1)
        assert kept.offset(kept.samples - 1) == source.offset(source.samples - 1)


@pytest.mark.parametrize(
    ("mutation", "why"),
    [
        (lambda b: b.replace(b"stsz", b"stsX", 1), "stbl with stsX"),
        (lambda b: b.replace(b"mvhd", b"mvhX", 1), "movie timescale"),
    ],
)
def test_tables_we_cannot_reproduce_are_refused_not_guessed(
    sources: dict[str, Path], mutation: object, why: str
) -> None:
    data, found = _moov(sources["moov_at_end"])
    moov = mutation(found)  # type: ignore[operator]
    with pytest.raises(Unsupported, match=why):
        parse_movie(moov, len(data))


@pytest.mark.parametrize(
    ("values", "code"),
    [([0, 1, 65535, 300], "H"), ([0, 65536, 7], "I"), ([2**32 - 1], "I"), ([], "H")],
)
def test_big_endian_words_narrow_to_16_bits_only_when_every_one_fits(
    values: list[int], code: str
) -> None:
    plain = b"".join(v.to_bytes(4, "big") for v in values)
    # the second column of (count, value) pairs, as in ctts
    pairs = b"".join((9).to_bytes(4, "big") + v.to_bytes(4, "big") for v in values)
    for table in (be32(plain), be32(pairs, 8, 4)):
        assert table.typecode == code
        assert list(table) == values


def test_a_constant_size_table_claiming_billions_of_samples_is_refused_without_building_it(
    sources: dict[str, Path],
) -> None:
    """Review finding: `stsz` with one size for all and a count of 100 million was expanded
    before any check (382 MiB, 1.5 s; 4 billion would be 16 GiB)."""
    data, found = _moov(sources["moov_at_end"])
    moov = bytearray(found)
    at = moov.find(b"stsz")
    struct.pack_into(">II", moov, at + 8, 1, 100_000_000)  # sample_size 1, count 1e8
    tracemalloc.start()
    try:
        with pytest.raises(Unsupported, match="more samples of one size"):
            parse_movie(bytes(moov), len(data))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, peak


def test_cached_tables_that_fail_to_open_fall_back_to_the_whole_moov(
    sources: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: a sidecar whose tables a demuxer (say, after an upgrade) rejects cost
    the clip (engine_error) instead of a cut the whole-moov way."""
    path = sources["moov_at_end"]
    cache = IndexCache(64 * 2**20)
    with ClipSource(FileRangeSource(path, cache_key="k"), index_cache=cache) as clips:
        assert clips.cut(10.0, 12.0, tmp_path / "a.mp4").index_path == "tables"

    def broken(self: Movie, windows: object) -> bytes:
        raise Unsupported("a synthetic moov the tables cannot build")

    monkeypatch.setattr(Movie, "synthesize", broken)
    with ClipSource(FileRangeSource(path, cache_key="k"), index_cache=cache) as clips:
        info = clips.cut(10.0, 12.0, tmp_path / "b.mp4")
    assert info.index_path == "moov"
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


@pytest.mark.timeout(30)
def test_stsc_runs_out_of_order_are_refused_before_anything_is_expanded() -> None:
    """Found by the 25,000-case fuzz run: a first chunk of 4 billion in the middle of many
    runs made the chunk map repeat a run 4 billion times (a hang, then 4 GB)."""
    runs = [(1, 1, 1), (4_000_000_000, 2, 1), (2, 1, 1), (3, 1, 1)]
    body = struct.pack(">II", 0, len(runs)) + b"".join(struct.pack(">III", *r) for r in runs)
    box = memoryview(body)
    with pytest.raises(Unsupported, match="out of order"):
        chunk_map(box, (0, len(body)), 4, 5)


@pytest.mark.parametrize(
    ("runs", "chunks"),
    [
        ([(1, 0xFFFFFFFF, 1)], 0xFFFFFFF0),  # few runs: 2^64 samples in one run
        ([(1, 0xFFFFFFFF, 1), (2, 0xFFFFFFFF, 1), (3, 1, 1), (4, 1, 1)], 4),  # many: over 2^32
    ],
)
def test_stsc_runs_placing_more_samples_than_an_array_holds_are_unsupported(
    runs: list[tuple[int, int, int]], chunks: int
) -> None:
    """Found by the 25,000-case fuzz run: the sums overflowed the chunk map's arrays
    (OverflowError, an engine error) instead of sending the source the whole-moov way."""
    body = struct.pack(">II", 0, len(runs)) + b"".join(struct.pack(">III", *r) for r in runs)
    with pytest.raises(Unsupported, match="more samples"):
        chunk_map(memoryview(body), (0, len(body)), chunks, 5)


def test_a_moov_box_too_short_for_its_fields_is_cut_the_whole_moov_way(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    """Found in review: an mvhd of 4 body bytes at the end of the moov made the tables'
    fixed-offset read fail as an engine error; FFmpeg's own parse cuts such a file."""
    data, moov = _moov(sources["moov_at_end"])
    assert data.endswith(moov)  # the moov is the file's last box: it can grow in place
    short_mvhd = struct.pack(">I4sI", 12, b"mvhd", 0)
    grown = struct.pack(">I", len(moov) + 12) + moov[4:] + short_mvhd
    with pytest.raises(Unsupported, match="cannot hold"):
        parse_movie(grown, len(data) + 12)
    path = tmp_path / "short_mvhd.mp4"
    path.write_bytes(data[: len(data) - len(moov)] + grown)
    with ClipSource(FileRangeSource(path)) as clips:
        info = clips.cut(2.0, 4.0, tmp_path / "clip.mp4")
    assert info.index_path == "moov"
    assert info.start <= 2.0 < 4.0 <= info.end + 0.05  # snapped to the keyframe before


def test_a_skeleton_and_tables_that_disagree_are_refused(sources: dict[str, Path]) -> None:
    """Found by the fuzz: a sample table outside moov > trak > mdia > minf made the rebuild
    run out of tables (StopIteration escaped as an engine error)."""
    movie = _movie(sources["moov_at_end"])
    tracks = [b"" for _ in movie.tracks]
    rebuild(movie.skeleton, tracks)  # as many as the skeleton has: fine
    with pytest.raises(Unsupported, match="more sample tables"):
        rebuild(movie.skeleton, tracks[:-1])
    with pytest.raises(Unsupported, match="fewer sample tables"):
        rebuild(movie.skeleton, [*tracks, b""])
