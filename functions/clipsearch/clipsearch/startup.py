"""What the function's entry point does to its own process before its imports."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_imports() -> Iterator[None]:
    """Run the block (the function's imports) with the cyclic garbage collector paused, then
    move every object the collector tracks to its permanent generation.

    Start-up allocates hundreds of thousands of objects that live as long as the process:
    the collections they trigger find no garbage, and every later full collection would scan
    them again (together ~30 ms of CPU to the first outcome; docs/benchmarks.md, "Cold
    start"). The few cycles of garbage made before the freeze are never collected.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
