"""Hostile seeds (../shared/reference/hostile-mp4): each ends in a clean fallback with a reason.

Each file is opened and cut (a hit at the start in exact mode, one in the middle) in a worker
process timed from outside: a hang, a crash or any exception but ClipUnavailable fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsearch.clipping import ClipReason, ClipUnavailable, FileRangeSource, cut_clip
from tests.fuzz.harness import Case, run_cases

ROOT = Path(__file__).resolve().parents[3]
SEEDS = ROOT.parent / "shared" / "reference" / "hostile-mp4"
EXPECTED = {
    "tfra-size-zero-hang.mp4": "malformed_source",
    "sidx-8-bytes.mp4": "malformed_source",
    "sidx-12-bytes.mp4": "malformed_source",
    "sidx-20-bytes.mp4": "malformed_source",
    "tfdt-19-bytes-exact-before-first-frame.mp4": "malformed_source",
    "avc1-renamed-av01.mp4": "unsupported_codec",
    "hvcc-shrunk-unreadable-clip.mp4": "self_check_failed",
}


def test_every_hostile_seed_falls_back_cleanly():
    seeds = sorted(SEEDS.glob("*.mp4"))
    assert len(seeds) >= 10, f"hostile seeds not found in {SEEDS} (CI has shared/ beside the clone)"
    cases = [
        Case(i, str(path), ((0.0, 2.0, True), (3.0, 5.0, False)), path.name)
        for i, path in enumerate(seeds)
    ]
    results = run_cases(cases, workers=2, timeout=30)
    assert len(results) == len(cases)
    for result in results:
        name = result.case.label
        assert not result.hang, f"{name}: hang"
        assert not result.crash, f"{name}: worker died"
        assert result.outcomes, name
        for outcome in result.outcomes:
            assert outcome.startswith("fallback:"), f"{name}: {outcome}"
        if name in EXPECTED:
            assert result.outcomes[0] == f"fallback:{EXPECTED[name]}", (name, result.outcomes)
        assert result.rss_kb < 300 * 1024, (name, result.rss_kb)


def test_no_fallback_message_names_a_local_path(tmp_path):
    """The remux failure used to say `.../.clip-xxxx.mp4`: messages must carry no paths."""
    path = SEEDS / "hvcc-shrunk-unreadable-clip.mp4"
    with pytest.raises(ClipUnavailable) as info:
        cut_clip(FileRangeSource(path), 3.0, 5.0, tmp_path / "c.mp4")
    assert info.value.reason is ClipReason.SELF_CHECK_FAILED
    assert str(tmp_path) not in str(info.value)
    assert "/" not in info.value.message
    assert list(tmp_path.iterdir()) == []  # nothing unreadable was left behind
