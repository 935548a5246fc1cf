from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.corpus.runner import Outcome, hit_names, run


class Results:
    """Each (kind, mode) is cut once, all its hits in order; tests read their own outcome."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._runs: dict[tuple[str, str], dict[str, Outcome]] = {}

    def outcome(self, kind: str, mode: str, hit: str) -> Outcome:
        if (kind, mode) not in self._runs:
            self._runs[kind, mode] = run(kind, mode, hit_names(), self._workdir / kind / mode)
        return self._runs[kind, mode][hit]

    def dump(self, path: Path) -> None:
        outcomes = [asdict(o) for run in self._runs.values() for o in run.values()]
        path.write_text(json.dumps(outcomes, indent=1))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Results]:
    """CLIPSEARCH_CORPUS_JSON=path keeps every outcome (for `report --from-json`)."""
    results = Results(tmp_path_factory.mktemp("corpus-clips"))
    yield results
    if os.environ.get("CLIPSEARCH_CORPUS_JSON"):
        results.dump(Path(os.environ["CLIPSEARCH_CORPUS_JSON"]))
