"""A seeded fuzz test of the index sidecar (SourceIndex.loads and the tables it carries).

The sidecar is our own object in our own bucket, its bytes checksummed by Cloud Storage on
the way up and down; still, a truncated, stale or tampered one must end in a ValueError at
load (the caller then ignores it) or, if it loads, in clips or clean fallbacks: never
another exception or a hang. Each case flips bytes, overwrites a word with an extreme
value, or truncates a real sidecar; a loaded one is then cut from, in this process (the
loader allocates nothing its input does not hold).

    CLIPSEARCH_SIDECAR_FUZZ_CASES=5000 .venv/bin/pytest tests/fuzz/test_fuzz_sidecar.py -q -s
"""

from __future__ import annotations

import collections
import os
import random
import struct
from pathlib import Path

import pytest

from clipsearch.clipping import (
    ClipSource,
    ClipUnavailable,
    FileRangeSource,
    IndexCache,
    SourceIndex,
    tune_process,
)
from tests.fuzz.seeds import make_seeds

CASES = int(os.environ.get("CLIPSEARCH_SIDECAR_FUZZ_CASES", "400"))
SEED = int(os.environ.get("CLIPSEARCH_FUZZ_SEED", "20261202"))
EXTREMES = (0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0xFFFF)


def _movie_start(blob: bytes) -> int:
    """Where the tables begin: after the header (13 bytes), the two lengths and the spans."""
    packed, _ = struct.unpack_from(">QQ", blob, 13)
    return 13 + 16 + packed


def _mutate(blob: bytes, rng: random.Random) -> tuple[bytes, str]:
    data = bytearray(blob)
    how = rng.choice(("flip", "word", "truncate", "flip", "word"))
    if how == "truncate":
        return bytes(data[: rng.randrange(len(data))]), how
    # Mostly the tables (raw arrays a flip does not make unreadable), sometimes anywhere.
    low = _movie_start(blob) if rng.random() < 0.9 else 0
    at = rng.randrange(low, len(data) - 4)
    if how == "word":
        data[at : at + 4] = struct.pack("<I", rng.choice(EXTREMES))
    else:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data), f"{how}@{at}"


@pytest.mark.timeout(600)
def test_mutated_sidecars_load_cleanly_or_are_refused(tmp_path: Path) -> None:
    tune_process()  # as the function's composition root does
    (tmp_path / "seeds").mkdir()
    seeds = make_seeds(tmp_path / "seeds")
    rng = random.Random(SEED)
    sources = []
    for name in sorted(seeds):
        cache = IndexCache(64 * 1024 * 1024)
        source = FileRangeSource(seeds[name], cache_key=name)
        try:
            with ClipSource(source, index_cache=cache):
                pass
        except ClipUnavailable:
            continue
        index = cache.get(name)
        if index is not None and index.movie is not None:
            sources.append((name, seeds[name], index.dumps()))
    assert sources, "no seed opened from tables"
    tally: collections.Counter[str] = collections.Counter()
    engine_errors: collections.Counter[str] = collections.Counter()
    failures = []
    for i in range(CASES):
        name, path, blob = sources[i % len(sources)]
        data, how = _mutate(blob, rng)
        try:
            index = SourceIndex.loads(data)
        except ValueError:
            tally["refused"] += 1
            continue
        except Exception as error:
            failures.append(f"{name} {how}: loads raised {type(error).__name__}: {error}")
            continue
        cache = IndexCache(64 * 1024 * 1024)
        cache.put(name, index)
        try:
            with ClipSource(FileRangeSource(path, cache_key=name), index_cache=cache) as clips:
                clips.cut(1.0, 2.5, tmp_path / "clip.mp4")
            tally["clip"] += 1
        except ClipUnavailable as error:
            tally[f"fallback:{error.reason}"] += 1
            if error.reason == "engine_error":
                engine_errors[error.message.split(":")[0]] += 1
        except Exception as error:
            failures.append(f"{name} {how}: cut raised {type(error).__name__}: {error}")
    print(f"sidecar fuzz seed {SEED}: {CASES} cases, {dict(sorted(tally.items()))}")
    print(f"engine_error by cause: {dict(engine_errors)}")
    assert not failures, "\n".join(failures[:20])
    assert tally["refused"] > 0
