"""Shared fixtures. Environment variables are isolated per test (like functions-framework's)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from clipsearch.clipping import tune_process


@pytest.fixture(autouse=True)
def _isolated_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def _tuned_process() -> None:
    """Every tier runs the engine in a process tuned as the composition root tunes the
    function's (`tune_process`: FFmpeg's allocation cap)."""
    tune_process()
