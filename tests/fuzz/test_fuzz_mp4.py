"""A seeded, structure-aware fuzz test of the clip engine on small ffmpeg-made MP4s.

Each case mutates one box of one seed (size, type, entry count, a field, offsets, or a
truncation; see mutate.py), then opens the file and cuts an exact hit at the start, one in
the middle and one past the end, in a worker process timed from outside. Every outcome must
be a clip or a clean ClipUnavailable: no other exception, no hang, no dead worker, no local
path in a message, and the worker's peak RSS under 300 MB. The clips of every tenth case
(CLIPSEARCH_FUZZ_JUDGE_EVERY) must also pass the oracle's cheap checks: declared durations
within a frame of the streams, audio one contiguous run of the source's packets.

`make test` runs CLIPSEARCH_FUZZ_CASES (default 2000, under a minute here); the figures in
docs/clip-engine.md come from a longer run:
    CLIPSEARCH_FUZZ_CASES=25000 CLIPSEARCH_FUZZ_SEED=1 .venv/bin/pytest tests/fuzz -q -s
"""

from __future__ import annotations

import collections
import hashlib
import os
import random
from pathlib import Path

import pytest

from tests.fuzz.harness import Case, run_cases
from tests.fuzz.mutate import mutate
from tests.fuzz.seeds import make_seeds

CASES = int(os.environ.get("CLIPSEARCH_FUZZ_CASES", "2000"))
SEED = int(os.environ.get("CLIPSEARCH_FUZZ_SEED", "20261202"))
WORKERS = int(os.environ.get("CLIPSEARCH_FUZZ_WORKERS", "2"))
JUDGE_EVERY = int(os.environ.get("CLIPSEARCH_FUZZ_JUDGE_EVERY", "10"))  # cases whose clips
# also pass the oracle's cheap checks (durations declared vs held, audio continuity)
CASE_TIMEOUT_S = 30.0
PEAK_RSS_KB = 300 * 1024
CUTS = ((0.0, 1.0, True), (1.4, 2.6, False), (9.0, 10.0, False))
BATCH = 500  # mutated files on disk at once


@pytest.fixture(scope="session")
def fuzz_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.mark.timeout(max(300, int(CASES * 0.5)))
def test_mutated_mp4s_end_in_a_clip_or_a_clean_fallback(fuzz_seeds, tmp_path):
    rng = random.Random(SEED)
    names = sorted(fuzz_seeds)
    blobs = {name: fuzz_seeds[name].read_bytes() for name in names}
    tally: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    engine_errors: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    peak_kb = 0
    done = 0
    while done < CASES:
        cases = []
        for i in range(done, min(CASES, done + BATCH)):
            name = names[i % len(names)]
            data, what = mutate(blobs[name], rng)
            path = tmp_path / f"case-{i % BATCH}.mp4"
            path.write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()[:12]
            label = f"#{i} {name}: {what} ({digest})"
            cases.append(Case(i, str(path), CUTS, label, judge=i % JUDGE_EVERY == 0))
        for result in run_cases(cases, workers=WORKERS, timeout=CASE_TIMEOUT_S):
            tally["cases"] += 1
            peak_kb = max(peak_kb, result.rss_kb)
            if result.hang or result.crash:
                tally["hang" if result.hang else "crash"] += 1
                failures.append(f"{'hang' if result.hang else 'crash'}: {result.case.label}")
                continue
            for outcome in result.outcomes:
                kind, _, detail = outcome.partition(":")
                tally[kind] += 1
                tally["judged"] += detail == "judged"
                if kind == "fallback":
                    reason, _, message = detail.partition("|")
                    reasons[reason] += 1
                    if message:
                        engine_errors[message[:90]] += 1
                elif kind != "ok":
                    failures.append(f"{outcome}: {result.case.label}")
            if result.rss_kb > PEAK_RSS_KB:
                failures.append(f"peak RSS {result.rss_kb // 1024} MB: {result.case.label}")
        done += len(cases)
    summary = (
        f"fuzz seed {SEED}: {tally['cases']} cases, {tally['ok']} clips "
        f"({tally['judged']} judged by the oracle's cheap checks, {tally['wrong']} wrong), "
        f"{tally['fallback']} clean fallbacks {dict(reasons.most_common())}, "
        f"{len(failures)} failures, {tally['hang']} hangs, {tally['crash']} crashes, "
        f"peak RSS {peak_kb / 1024:.0f} MB; engine_error by cause {dict(engine_errors)}"
    )
    print(summary)
    assert tally["cases"] == CASES
    assert tally["judged"] > 0 or CASES < JUDGE_EVERY, "no clip was judged"
    assert not failures, summary + "\n" + "\n".join(failures[:40])
    assert peak_kb <= PEAK_RSS_KB
