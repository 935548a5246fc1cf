"""A source's index: the few byte spans needed to open it (boxes, `moov`, `mfra`, first packets).

Cold, the index costs one or two ranged requests; cached, a clip costs one. The cache is in
memory, shared by every event in the instance, and the index serialises to a small blob so the
caller can persist it as a sidecar object and share it across instances.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from clipsearch.clipping.movie import Movie
from clipsearch.clipping.sidecar import dump_movie, load_movie

_MAGIC = b"CSIX"
_VERSION = 2
_HEAD = struct.Struct(">4sBQ")  # magic, version, source size (before the zlib body)
_BOX = struct.Struct(">4sQQ")
_SPAN = struct.Struct(">QQ")
_COUNT = struct.Struct(">I")
_ENTRY_OVERHEAD = 256  # rough per-entry bookkeeping, so tiny entries still count


@dataclass(frozen=True)
class Box:
    """A top-level MP4 box: its four-character type, where it starts, and its total size."""

    kind: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class SourceIndex:
    """Everything needed to open one exact source version without reading it again."""

    size: int
    layout: str  # "faststart", "moov_at_end" or "fragmented"
    boxes: tuple[Box, ...]
    spans: tuple[tuple[int, bytes], ...]  # (offset, bytes), sorted, non-overlapping
    # The moov as compact tables (movie.py), when we can reproduce it: the spans then
    # hold the boxes around it but not the moov itself, and cuts never parse it whole.
    movie: Movie | None = None

    @property
    def nbytes(self) -> int:
        return sum(len(data) for _, data in self.spans) + (self.movie.nbytes if self.movie else 0)

    def box(self, kind: str) -> Box | None:
        return next((b for b in self.boxes if b.kind == kind), None)

    def dumps(self) -> bytes:
        """A versioned binary form for a sidecar object: the boxes and spans (zlib, small
        unless the moov is held as bytes), then the movie's tables raw, so loading them is a
        copy (a 10 h source's 48 MB moov took 2.7 s to compress at zlib level 6)."""
        layout = self.layout.encode()
        parts = [bytes([len(layout)]), layout, _COUNT.pack(len(self.boxes))]
        parts += [_BOX.pack(b.kind.encode("latin-1"), b.offset, b.size) for b in self.boxes]
        parts.append(_COUNT.pack(len(self.spans)))
        for offset, data in self.spans:
            parts += [_SPAN.pack(offset, len(data)), data]
        packed = zlib.compress(b"".join(parts), 1)
        movie = dump_movie(self.movie) if self.movie is not None else b""
        pad = bytes(-(_HEAD.size + _SPAN.size + len(packed)) % 8)  # the tables 8-aligned
        return b"".join(
            [
                _HEAD.pack(_MAGIC, _VERSION, self.size),
                _SPAN.pack(len(packed), len(movie)),
                packed,
                pad,
                movie,
            ]
        )

    @classmethod
    def loads(cls, blob: bytes, *, max_bytes: int = 256 * 1024 * 1024) -> SourceIndex:
        """Parse `dumps()` output; ValueError on anything else (a stale or foreign sidecar)."""
        if len(blob) < _HEAD.size:
            raise ValueError("index blob too short")
        magic, version, size = _HEAD.unpack_from(blob)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError("not a clipsearch index blob (or another version)")
        if len(blob) < _HEAD.size + _SPAN.size:
            raise ValueError("index blob too short")
        packed_len, movie_len = _SPAN.unpack_from(blob, _HEAD.size)
        at = _HEAD.size + _SPAN.size
        pad = -(at + packed_len) % 8
        if at + packed_len + pad + movie_len != len(blob) or movie_len > max_bytes:
            raise ValueError("index blob truncated or padded")
        # The tables are views into `blob` (no copy): the cache holds the blob itself.
        movie = load_movie(memoryview(blob)[len(blob) - movie_len :]) if movie_len else None
        try:
            inflater = zlib.decompressobj()
            body = inflater.decompress(blob[at : at + packed_len], max_bytes)
            if inflater.unconsumed_tail:
                raise ValueError("index blob exceeds max_bytes")
            if not inflater.eof or inflater.unused_data:
                raise ValueError("index blob truncated or padded")
            pos = 0

            def take(n: int) -> bytes:
                nonlocal pos
                if pos + n > len(body):
                    raise ValueError("index blob truncated")
                chunk = body[pos : pos + n]
                pos += n
                return chunk

            layout = take(take(1)[0]).decode()
            (nboxes,) = _COUNT.unpack(take(_COUNT.size))
            boxes = []
            for _ in range(nboxes):
                kind, offset, bsize = _BOX.unpack(take(_BOX.size))
                boxes.append(Box(kind.decode("latin-1"), offset, bsize))
            (nspans,) = _COUNT.unpack(take(_COUNT.size))
            spans = []
            for _ in range(nspans):
                offset, length = _SPAN.unpack(take(_SPAN.size))
                spans.append((offset, take(length)))
            if pos != len(body):
                raise ValueError("trailing bytes in index blob")
        except (zlib.error, struct.error, UnicodeDecodeError) as error:
            raise ValueError(f"corrupt index blob: {error}") from None
        return cls(size, layout, tuple(boxes), tuple(spans), movie)


class IndexCache:
    """LRU of SourceIndex by cache key, bounded in bytes; safe to share across threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, SourceIndex] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evictions = 0

    @staticmethod
    def _weight(index: SourceIndex) -> int:
        return index.nbytes + _ENTRY_OVERHEAD

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> SourceIndex | None:
        with self._lock:
            index = self._entries.get(key)
            if index is not None:
                self._entries.move_to_end(key)
            return index

    def put(self, key: str, index: SourceIndex) -> None:
        """Insert or replace; an index larger than the whole cache is not kept."""
        weight = self._weight(index)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= self._weight(old)
            if weight > self.max_bytes:
                return
            self._entries[key] = index
            self._bytes += weight
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= self._weight(evicted)
                self.evictions += 1

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= self._weight(old)
