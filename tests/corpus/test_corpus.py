"""Every corpus kind x hit x mode: the clip is right by the oracle, or an honest fallback.

A fallback is honest when its reason is listed for that kind (and hit) in allowlist.py, with
why we cannot cut it; any other fallback, a wrong clip or an exception fails. Open defects
(observed, not yet fixed) are marked xfail(strict=True) per exact case in OPEN_DEFECTS, so
the suite flips red when they are fixed. Reproduce one case with its pytest id, e.g.
`.venv/bin/pytest tests/corpus -q -k cmaf-middle-cold`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.allowlist import ALLOWED, OPEN_DEFECTS
from tests.corpus.conftest import Results
from tests.corpus.recipes import KINDS, build, command
from tests.corpus.runner import MODES, hit_names, source_media

# a local path: "/dir/..." not preceded by ":" or "/" (so gs://bucket/x is not one)
LEAK = re.compile(r"(?<![:/\w])/(?:[\w.-]+/)+|\.clip-")


def _cases() -> list[Any]:
    cases: list[Any] = []
    for kind in KINDS:
        for mode in MODES:
            for hit in hit_names():
                defect = OPEN_DEFECTS.get((kind, hit, mode))
                marks = (
                    [pytest.mark.xfail(strict=True, reason=f"open defect: {defect}")]
                    if defect
                    else []
                )
                cases.append(pytest.param(kind, mode, hit, marks=marks, id=f"{kind}-{hit}-{mode}"))
    return cases


@pytest.mark.parametrize(("kind", "mode", "hit"), _cases())
def test_cut_is_right_or_an_honest_fallback(
    corpus: Results, kind: str, mode: str, hit: str
) -> None:
    outcome = corpus.outcome(kind, mode, hit)
    how = f"\nsource: {command(kind)}"
    if outcome.status == "right":
        return
    if outcome.status == "fallback":
        allowed = outcome.allowed
        if outcome.reason not in allowed:
            pytest.fail(
                f"fallback {outcome.reason} ({outcome.detail}) is not an honest reason for "
                f"{kind}/{hit}; allowed: {sorted(allowed) or 'none'}{how}"
            )
        if LEAK.search(outcome.detail):
            pytest.fail(f"fallback message leaks a local path: {outcome.detail!r}")
        return
    pytest.fail(f"{outcome.status}: {outcome.detail}{how}")


def test_every_allowlist_entry_names_a_real_kind_and_says_why() -> None:
    for (kind, hit), reasons in ALLOWED.items():
        assert kind == "*" or kind in KINDS, kind
        assert hit == "*" or hit in hit_names(), hit
        assert all(len(why) > 20 for why in reasons.values())
    for kind, hit, mode in OPEN_DEFECTS:
        assert kind in KINDS, (kind, hit, mode)
        assert mode in MODES, (kind, hit, mode)


def _framemd5(path: Path) -> list[str]:
    """Per-frame md5s of the first video stream as the ffmpeg CLI (Debian's FFmpeg) decodes
    it, in presentation order: a second decoder and demuxer, not the engine's PyAV."""
    exe = shutil.which("ffmpeg")
    assert exe, "the corpus needs the ffmpeg CLI"
    args = ["-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode"]
    out = subprocess.run(
        [exe, *args, "passthrough", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rows = [line.split(",") for line in out.splitlines() if line and not line.startswith("#")]
    return [row[-1].strip() for row in sorted(rows, key=lambda r: int(r[2]))]


def test_a_second_decoder_agrees_with_the_oracle(corpus: Results) -> None:
    """For each kind, the first clip the oracle calls right (cold mode) shows, under the ffmpeg
    CLI too, exactly the run of source frames starting at its reported start."""
    checked = []
    for kind in KINDS:
        right = [corpus.outcome(kind, "cold", h) for h in hit_names()]
        right = [o for o in right if o.status == "right" and not o.hit.startswith("exact")]
        if not right:
            continue
        outcome = right[0]
        source = build(kind)
        media = source_media(source)
        assert media is not None
        times = [f.time for f in media.frames]
        first = min(range(len(times)), key=lambda i: abs(times[i] - outcome.start))
        count = sum(1 for t in times if outcome.start - 1e-3 <= t < outcome.end - 1e-3)
        source_md5 = _framemd5(source)
        clip_md5 = _framemd5(Path(outcome.path))
        assert len(source_md5) == len(times), f"{kind}: the CLI and PyAV decode different counts"
        assert clip_md5 == source_md5[first : first + count], (
            f"{kind}/{outcome.hit}: the ffmpeg CLI sees other frames in the clip than in the "
            f"source from {outcome.start:.3f}s"
        )
        checked.append(kind)
    # every kind the allowlist does not excuse as a whole has a right clip to check
    cuttable = [k for k in KINDS if (k, "*") not in ALLOWED]
    assert sorted(set(cuttable) - set(checked)) == []
