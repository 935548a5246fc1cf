"""Process-wide tuning of the libraries the engine runs on, and handing freed memory back.

`tune_process` is called once by the composition root: its settings hold for the process,
so no engine object sets them. It loads FFmpeg's libavutil by path without importing PyAV
(the same library PyAV links to later), so it may run at start-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
from pathlib import Path
from typing import Any

FFMPEG_MAX_ALLOC = 96 * 1024 * 1024


def tune_process() -> bool:
    """Set what the engine expects of the process; True when FFmpeg's cap is in force."""
    return _cap_ffmpeg_allocations()


@functools.cache
def _cap_ffmpeg_allocations() -> bool:
    """Make FFmpeg refuse any single allocation over FFMPEG_MAX_ALLOC (av_max_alloc).

    A backstop behind our own bounds checks: a count FFmpeg trusts then fails its malloc
    (an error we turn into a fallback) instead of growing the process by gigabytes. The
    limit is process-wide and far above what a 10 h source's index needs (~26 MB).
    """
    spec = importlib.util.find_spec("av")
    if spec is None or spec.origin is None:
        return False
    libs = Path(spec.origin).resolve().parent.parent / "av.libs"
    for lib in sorted(libs.glob("libavutil-*.so*")):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(str(lib)).av_max_alloc(ctypes.c_size_t(FFMPEG_MAX_ALLOC))
            return True
    return False


@functools.cache
def _libc() -> Any:
    with contextlib.suppress(OSError):
        return ctypes.CDLL("libc.so.6")
    return None


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim).

    Parsing a 10 h moov builds and drops tens of MB of temporary arrays; glibc keeps those
    pages, so the instance would carry them into every later event. Costs ~1 ms. Called
    after each parse of a moov: the garbage is per open, not per process.
    """
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)
