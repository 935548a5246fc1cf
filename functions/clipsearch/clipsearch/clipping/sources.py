"""Byte-range sources: where a clip's bytes come from, with counters for what it cost.

A source answers `read(offset, length)` with at most `length` bytes (fewer only at the end of
the object) in one ranged request, and counts requests and bytes so callers can report and
test the cost of a clip. Only the local file lives here: the engine imports no network
client, so the Cloud Storage and HTTP sources are adapters (clipsearch.adapters.ranges).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol


class RangeSource(Protocol):
    """An immutable object read by byte ranges."""

    @property
    def size(self) -> int | None:
        """Total size in bytes; None until the first read tells it (HTTP)."""
        ...

    @property
    def cache_key(self) -> str | None:
        """Identifies this exact content for the index cache; None: do not cache."""
        ...

    @property
    def requests(self) -> int: ...

    @property
    def bytes_read(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` in one ranged request; short only at the end."""
        ...


class ReadCounters:
    """Thread-safe request and byte counters shared by every source."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._bytes = 0

    @property
    def requests(self) -> int:
        return self._requests

    @property
    def bytes_read(self) -> int:
        return self._bytes

    def _count(self, n: int) -> None:
        with self._lock:
            self._requests += 1
            self._bytes += n


def check_range(offset: int, length: int) -> None:
    if offset < 0 or length <= 0:
        raise ValueError(f"bad range offset={offset} length={length}")


class FileRangeSource(ReadCounters):
    """A local file; for tests, the benchmark and local tools."""

    def __init__(self, path: str | Path, *, cache_key: str | None = None) -> None:
        super().__init__()
        self._path = Path(path)
        self._size = self._path.stat().st_size
        self._key = cache_key

    @property
    def size(self) -> int:
        return self._size

    @property
    def cache_key(self) -> str | None:
        return self._key

    def read(self, offset: int, length: int) -> bytes:
        check_range(offset, length)
        with self._path.open("rb") as f:
            f.seek(offset)
            data = f.read(length)
        self._count(len(data))
        return data
