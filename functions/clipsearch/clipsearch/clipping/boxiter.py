"""The one walk over the boxes inside a byte range: every parser here reads boxes through it.

Pure: bytes in, boxes out. A header that does not fit raises `BadBox`; a caller that reads
damaged input on purpose (a bounds check, a best-effort lookup) maps that one exception to
its own reaction.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

Bytes = bytes | bytearray | memoryview


class BadBox(ValueError):
    """A box header that is truncated or does not fit the range it is read from."""


class BoxSpan(NamedTuple):
    """One whole box: its type, where it starts, where its body starts, where it ends."""

    kind: str
    start: int
    body: int
    end: int


def iter_boxes(data: Bytes, start: int, end: int) -> Iterator[BoxSpan]:
    """The boxes in data[start:end] in order, each whole; BadBox at the first that is not.

    A size of 0 runs to `end`; a size of 1 takes the 64-bit size that follows the type.
    """
    pos = start
    end = min(end, len(data))
    while pos < end:
        if pos + 8 > end:
            raise BadBox("a truncated box header")
        length, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if length == 1:
            if pos + 16 > end:
                raise BadBox("a truncated large box header")
            (length,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif length == 0:
            length = end - pos
        if length < header or pos + length > end:
            raise BadBox("a box that does not fit its parent")
        yield BoxSpan(kind.decode("latin-1"), pos, pos + header, pos + length)
        pos += length


def boxes_in(data: Bytes, start: int, end: int) -> list[BoxSpan]:
    """Every box in data[start:end], all of them whole, or BadBox."""
    return list(iter_boxes(data, start, end))


def leading_boxes(data: Bytes, start: int, end: int) -> list[BoxSpan]:
    """The whole boxes in data[start:end] before the first bad header, which ends the list:
    for the checks and lookups that judge what they find, not the walk."""
    out: list[BoxSpan] = []
    try:
        for span in iter_boxes(data, start, end):
            out.append(span)
    except BadBox:
        pass
    return out


def box(kind: str, *parts: Bytes) -> bytes:
    """A box of type `kind` whose body is `parts` joined."""
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind.encode("latin-1")) + body


def full_box(kind: str, version: int, flags: int, *parts: Bytes) -> bytes:
    """A full box: version and flags, then `parts`."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def find_path(data: Bytes, start: int, end: int, path: tuple[str, ...]) -> list[tuple[int, int]]:
    """Bodies (start, end) of the boxes at `path` under data[start:end], searched through
    `leading_boxes` (a bad header ends the search at its level)."""
    if not path:
        return [(start, end)]
    out = []
    for kind, _, body, box_end in leading_boxes(data, start, end):
        if kind == path[0]:
            out += find_path(data, body, box_end, path[1:])
    return out
