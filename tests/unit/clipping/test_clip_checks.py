"""Checks that turn a source with damaged tables into a fallback instead of a wrong clip.

Each was found by the fuzz test's cheap oracle checks: a clip that decoded and read back,
but whose samples were not what a player reading the source shows, or whose container
declared another length than its samples.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest

from clipsearch.clipping import ClipReason, ClipSource, ClipUnavailable, FileRangeSource
from clipsearch.clipping.checks import check_no_shared_bytes
from clipsearch.clipping.verify import declared_duration_disagreement


def _packet(pos: int, size: int) -> SimpleNamespace:
    return SimpleNamespace(pos=pos, size=size, time_base=Fraction(1, 1000))


def test_samples_that_share_bytes_are_malformed() -> None:
    check_no_shared_bytes([_packet(100, 50), _packet(150, 10), _packet(-1, 999)])
    with pytest.raises(ClipUnavailable) as caught:
        check_no_shared_bytes([_packet(100, 50), _packet(149, 10)])
    assert caught.value.reason == ClipReason.MALFORMED_SOURCE
    # a sample running into the moov (a raised stsz size)
    check_no_shared_bytes([_packet(100, 50)], [(0, 32), (150, 4000)])
    with pytest.raises(ClipUnavailable):
        check_no_shared_bytes([_packet(100, 51)], [(0, 32), (150, 4000)])


def _patched_mvhd(clip: bytes, seconds: float) -> bytes:
    data = bytearray(clip)
    at = data.index(b"mvhd") - 4
    timescale = int.from_bytes(data[at + 20 : at + 24], "big")
    data[at + 24 : at + 28] = round(seconds * timescale).to_bytes(4, "big")
    return bytes(data)


def test_the_read_back_compares_the_declared_durations_with_the_samples(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "clip.mp4"
    with ClipSource(FileRangeSource(sources["faststart"])) as clips:
        clips.cut(10.0, 14.0, out)
    clip = out.read_bytes()
    assert declared_duration_disagreement(clip) == ""
    assert "mvhd says 15.870s" in declared_duration_disagreement(_patched_mvhd(clip, 15.87))
