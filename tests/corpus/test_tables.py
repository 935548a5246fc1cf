"""The synthetic index (clipping/tables.py) against FFmpeg's own parse of the whole moov.

Every corpus kind with a moov is classified: cut from our tables, or (a short, named list) by
FFmpeg parsing the moov whole. For the first kind, a clip cut from the synthetic index must be
byte for byte the clip cut the old way (the same packets reach the same muxer), without
falling back to the whole moov. The oracle (test_corpus.py) judges the clips themselves.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from clipsearch.clipping import FileRangeSource, IndexCache, cut_clip
from clipsearch.clipping.tables import Unsupported, parse_movie
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
    kinds = [k for k in KINDS if k not in WHOLE_MOOV and not k.startswith(("frag", "cmaf"))]
    return [k for k in kinds if not k.startswith("dash") and k != "audio_only"]


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
