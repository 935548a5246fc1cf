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


class TruncatedHeader(BadBox):
    """The bytes at hand end inside a box header (`large`: inside its 64-bit size)."""

    def __init__(self, large: bool) -> None:
        super().__init__("a truncated large box header" if large else "a truncated box header")
        self.large = large


class Header(NamedTuple):
    """A decoded box header: the whole box's length and the header's own."""

    kind: bytes
    length: int
    header: int


def decode_header(raw: Bytes, at: int, room: int) -> Header:
    """The box header at raw[at:], in a parent with `room` bytes left from `at`.

    A size of 0 runs to the parent's end; a size of 1 takes the 64-bit size that follows the
    type. The length is not judged here: each reader has its own rule for a box that does not
    fit, and its own reaction.
    """
    available = min(len(raw) - at, room)
    if available < 8:
        raise TruncatedHeader(large=False)
    length, kind = struct.unpack_from(">I4s", raw, at)
    if length == 1:
        if available < 16:
            raise TruncatedHeader(large=True)
        (length,) = struct.unpack_from(">Q", raw, at + 8)
        return Header(kind, length, 16)
    return Header(kind, room if length == 0 else length, 8)


def iter_boxes(data: Bytes, start: int, end: int) -> Iterator[BoxSpan]:
    """The boxes in data[start:end] in order, each whole; BadBox at the first that is not."""
    pos = start
    end = min(end, len(data))
    while pos < end:
        kind, length, header = decode_header(data, pos, end - pos)
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
