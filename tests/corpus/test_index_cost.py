"""The open reads the index, not the file: layouts whose index sits behind free space.

GStreamer's qtmux with robust muxing (a recording that must survive a crash) reserves room
for the moov near the start and pads around it with `free` boxes: 3.9 MB before the moov of
this 8.4 MB file. The walker once took the free space for a big mdat with the index behind
it and fetched the rest of the file (4.5 MB read to open, a sidecar as large).
"""

from __future__ import annotations

from pathlib import Path

from clipsearch.clipping import ClipSource, FileRangeSource
from tests.corpus.recipes import build


def test_a_moov_behind_free_space_is_found_without_reading_the_rest(tmp_path: Path) -> None:
    path = build("gst_qtmux_robust")
    size = path.stat().st_size
    source = FileRangeSource(path)
    with ClipSource(source) as clips:
        assert source.bytes_read < 0.05 * size, (source.bytes_read, size)
        assert clips.index.nbytes < 0.05 * size
        info = clips.cut(6.0, 9.0, tmp_path / "clip.mp4")
    assert info.bytes_read < 3 * info.size, (info.bytes_read, info.size)
