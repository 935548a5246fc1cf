"""What the function's entry point does to its own process before its imports."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_imports() -> Iterator[None]:
    """Run the block (the function's imports) with the cyclic garbage collector paused, then
    move all it made to the collector's permanent generation.

    Start-up allocates hundreds of thousands of objects that live as long as the process:
    the collections they trigger find no garbage, and every later full collection would scan
    them again (together ~40 ms of CPU at a cold start; docs/benchmarks.md, "Cold start").
    Where the server forks its workers after the import, as gunicorn does, frozen objects
    also stay shared with the parent instead of being copied when a collection touches them.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
