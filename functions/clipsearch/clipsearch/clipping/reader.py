"""A seekable, read-only file object over a RangeSource that only holds the spans it fetched.

PyAV reads through it. Bytes come from spans fetched ahead of time (the index and the clip's
planned span); a read outside them fetches on demand, with read-ahead, so correctness never
depends on the plan: a wrong plan costs a request, never a wrong clip.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import time
from collections.abc import Callable, Iterator

from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.sources import RangeSource

DEFAULT_READAHEAD = 256 * 1024


class SparseFile(io.RawIOBase):
    """A file made of fetched regions; regions never overlap and adjacent ones are merged."""

    def __init__(
        self,
        source: RangeSource,
        *,
        size: int | None = None,
        regions: tuple[tuple[int, bytes], ...] = (),
        readahead: int = DEFAULT_READAHEAD,
        tail: bytes = b"",
    ) -> None:
        super().__init__()
        self._source = source
        self._size = size
        # Bytes served after the source's end (a synthetic moov, see moov.py): the file
        # the demuxer sees is the source followed by them; fetches still check the source.
        if tail and size is None:
            raise ValueError("a tail needs the source's size")
        self._tail = tail
        self._starts: list[int] = []
        self._data: list[bytes] = []
        self._pos = 0
        self.readahead = readahead
        self.blanked_until = 0  # end of the furthest byte answered with zeros
        self._blanks: tuple[tuple[int, int], ...] = ()
        # Bounds for hostile or runaway reads, set by the cutter per open and per cut: a
        # monotonic deadline, a byte budget for fetches, and a check run on bytes fetched on
        # demand (fragmented sources: every moof the demuxer reaches is bounds-checked first).
        self.deadline: float | None = None
        self.budget: int | None = None
        self.on_demand: Callable[[int, int], None] | None = None
        for offset, data in regions:
            self._insert(offset, data)
        if tail and size is not None:
            self._insert(size, tail)

    # -- regions -----------------------------------------------------------------------

    @property
    def regions(self) -> tuple[tuple[int, bytes], ...]:
        return tuple(zip(self._starts, self._data, strict=True))

    @property
    def held_bytes(self) -> int:
        return sum(len(d) for d in self._data)

    def _insert(self, offset: int, data: bytes) -> None:
        """Add a region that overlaps none; merge it with touching neighbours."""
        if not data:
            return
        i = bisect.bisect_left(self._starts, offset)
        if i > 0 and self._starts[i - 1] + len(self._data[i - 1]) == offset:
            i -= 1
            offset = self._starts[i]
            data = self._data[i] + data
            del self._starts[i], self._data[i]
        if i < len(self._starts) and offset + len(data) == self._starts[i]:
            data = data + self._data[i]
            del self._starts[i], self._data[i]
        self._starts.insert(i, offset)
        self._data.insert(i, data)

    def _region_at(self, offset: int) -> int | None:
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and offset < self._starts[i] + len(self._data[i]):
            return i
        return None

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) not held yet (clipped to the size once it is known)."""
        if self._size is not None:
            end = min(end, self._size + len(self._tail))
        out: list[tuple[int, int]] = []
        pos = start
        for j in range(max(0, bisect.bisect_right(self._starts, start) - 1), len(self._starts)):
            region_start = self._starts[j]
            region_end = region_start + len(self._data[j])
            if region_end <= pos:
                continue
            if region_start >= end:
                break
            if region_start > pos:
                out.append((pos, region_start))
            pos = region_end
            if pos >= end:
                break
        if pos < end:
            out.append((pos, end))
        return out

    def ensure(self, start: int, end: int) -> None:
        """Hold [start, end): one ranged request per missing gap."""
        if self._size is None:
            self._fetch(start, end - start)
        for gap_start, gap_end in self.gaps(start, end):
            self._fetch(gap_start, gap_end - gap_start)

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ClipUnavailable(ClipReason.DEADLINE_EXCEEDED, "the cut ran out of time")

    def _fetch(self, offset: int, length: int) -> None:
        self.check_deadline()
        if self.budget is not None:
            if length > self.budget:
                raise ClipUnavailable(
                    ClipReason.INDEX_TOO_LARGE,
                    f"reading {length} more bytes would pass the read budget of this open or cut",
                )
            self.budget -= length
        try:
            data = self._source.read(offset, length)
        except ValueError as error:  # a range no sound file asks for
            raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, str(error)) from None
        known = self._source.size
        if known is not None:
            if self._size is not None and known != self._size:
                raise ClipUnavailable(
                    ClipReason.SOURCE_CHANGED,
                    f"source is {known} bytes, its index says {self._size}",
                    transient=True,
                )
            self._size = known
        # A region may only be inserted where nothing is held (the caller asked for a gap).
        for gap_start, gap_end in self.gaps(offset, offset + len(data)):
            self._insert(gap_start, data[gap_start - offset : gap_end - offset])

    def peek(self, offset: int, length: int) -> bytes:
        """Bytes already held at [offset, offset+length), fetching what is missing."""
        self.ensure(offset, offset + length)
        i = self._region_at(offset)
        if i is None:
            return b""
        rel = offset - self._starts[i]
        return self._data[i][rel : rel + length]

    def view(self, offset: int, length: int) -> memoryview:
        """Like `peek`, without copying the bytes (a 48 MB moov is parsed in place)."""
        self.ensure(offset, offset + length)
        i = self._region_at(offset)
        if i is None:
            return memoryview(b"")
        rel = offset - self._starts[i]
        return memoryview(self._data[i])[rel : rel + length]

    @property
    def tail(self) -> bytes:
        return self._tail

    @property
    def source_size(self) -> int:
        """The source's size, without the tail."""
        return self.size - len(self._tail)

    def drop_except(self, keep: tuple[tuple[int, bytes], ...]) -> None:
        """Forget everything but `keep` (the index), so memory stays index + one clip."""
        self._starts, self._data = [], []
        for offset, data in keep:
            self._insert(offset, data)
        if self._tail and self._size is not None:
            self._insert(self._size, self._tail)

    @contextlib.contextmanager
    def serving_blanks(self, ranges: tuple[tuple[int, int], ...]) -> Iterator[None]:
        """Answer reads in `ranges` that we do not hold with zeros instead of fetching them.

        For the open only, over the media payload: the demuxer's stream probe reads the first
        packet, which no cut uses (every cut seeks to its keyframe first) and whose codec
        parameters the sample description already gives. Fetching it cost a request per cold
        open; box headers and the index are never blanked. The demuxer's I/O buffer may still
        hold blanks afterwards: a reader of bytes below `blanked_until` must reopen first.
        """
        self._blanks = ranges
        try:
            yield
        finally:
            self._blanks = ()

    def _blank_run(self, size: int) -> bytes | None:
        end = next((b for a, b in self._blanks if a <= self._pos < b), None)
        if end is None:
            return None
        gaps = self.gaps(self._pos, min(end, self._pos + size))
        if not gaps or gaps[0][0] != self._pos:
            return None
        run = gaps[0][1] - self._pos
        self.blanked_until = max(self.blanked_until, self._pos + run)
        return bytes(run)

    # -- file protocol (what PyAV calls) -------------------------------------------------

    @property
    def size(self) -> int:
        if self._size is None:
            self._fetch(0, self.readahead)
        assert self._size is not None
        return self._size + len(self._tail)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        """At most `size` bytes, stopping at the end of the held region (a short read)."""
        self.check_deadline()
        if size is None or size < 0:
            size = self.size - self._pos
        if size == 0 or self._pos >= self.size:
            return b""
        i = self._region_at(self._pos)
        if i is None and (blank := self._blank_run(size)) is not None:
            self._pos += len(blank)
            return blank
        if i is None:
            want = min(self.size, self._pos + max(size, self.readahead))
            gap_end = self.gaps(self._pos, want)[0][1]
            self.ensure(self._pos, gap_end)  # up to the next region
            if self.on_demand is not None:
                self.on_demand(self._pos, gap_end)
            i = self._region_at(self._pos)
            if i is None:  # the source returned nothing where it should have had bytes
                raise ClipUnavailable(
                    ClipReason.SOURCE_CHANGED, f"no bytes at {self._pos}", transient=True
                )
        rel = self._pos - self._starts[i]
        chunk = self._data[i][rel : rel + size]
        self._pos += len(chunk)
        return chunk

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)
