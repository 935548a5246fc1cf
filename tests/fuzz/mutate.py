"""A structure-aware MP4 mutator: parse the box tree, then patch one thing a parser trusts.

Targets every box the clip engine's walker and FFmpeg's demuxer read: sizes, types, entry
counts, offsets and other fields, and truncations at or inside boxes. Seeded, so a failing
case can be re-made from (seed file, case number).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

CONTAINERS = {
    "moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "mvex", "moof", "traf", "mfra",
    "udta",
}  # fmt: skip
# Boxes whose first field after version/flags is an entry count (offset of the count).
COUNTED = {
    "stts": 4, "ctts": 4, "stss": 4, "stsc": 4, "stco": 4, "co64": 4, "elst": 4, "trun": 4,
    "stsz": 8, "stz2": 8, "stsd": 4, "tfra": 12,
}  # fmt: skip
TARGETS = {
    "moov", "trak", "mdia", "minf", "stbl", "stts", "ctts", "stss", "stsc", "stsz", "stz2",
    "stco", "co64", "elst", "mdhd", "tkhd", "hdlr", "stsd", "moof", "traf", "tfhd", "tfdt",
    "trun", "sidx", "mfra", "tfra", "mfro", "avc1", "hvc1", "mp4a", "avcC", "hvcC", "esds",
    "mdat", "ftyp", "edts", "mvhd", "trex", "mvex",
}  # fmt: skip
INTERESTING_32 = [0, 1, 2, 7, 8, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 89_000_000]
INTERESTING_64 = [0, 1, 2**31, 2**32, 2**62, 2**63, 2**64 - 1]
RENAMES = ["av01", "vp09", "mp4a", "avc1", "hvc1", "hev1", "stz2", "co64", "stco", "free", "mdat",
           "moof", "moov", "trak", "Opus", "ac-3", "\x00\x00\x00\x00", "zzzz"]  # fmt: skip


@dataclass(frozen=True)
class BoxAt:
    kind: str
    offset: int
    header: int
    size: int
    depth: int

    @property
    def body(self) -> int:
        return self.offset + self.header


def parse(data: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[BoxAt]:
    """Every box, depth first, including sample entries and their configuration boxes."""
    end = len(data) if end is None else end
    out: list[BoxAt] = []
    pos = start
    while pos + 8 <= end and depth < 10:
        size, kind_raw = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        kind = kind_raw.decode("latin-1")
        box = BoxAt(kind, pos, header, size, depth)
        out.append(box)
        body = pos + header
        if kind in CONTAINERS:
            out += parse(data, body, pos + size, depth + 1)
        elif kind == "stsd":
            out += parse(data, body + 8, pos + size, depth + 1)
        elif kind in ("avc1", "hvc1", "hev1", "av01", "vp09"):
            out += parse(data, body + 78, pos + size, depth + 1)
        elif kind == "mp4a":
            out += parse(data, body + 28, pos + size, depth + 1)
        pos += size
    return out


def _put32(data: bytearray, at: int, value: int) -> None:
    if 0 <= at <= len(data) - 4:
        struct.pack_into(">I", data, at, value & 0xFFFFFFFF)


def _put64(data: bytearray, at: int, value: int) -> None:
    if 0 <= at <= len(data) - 8:
        struct.pack_into(">Q", data, at, value & 0xFFFFFFFFFFFFFFFF)


def mutate(seed: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One mutated file and a description of the patch."""
    boxes = [b for b in parse(seed) if b.kind in TARGETS] or parse(seed)
    box = rng.choice(boxes)
    data = bytearray(seed)
    op = rng.choice(["size", "size", "type", "count", "count", "field", "field", "truncate",
                     "bytes", "offsets"])  # fmt: skip
    what = f"{op} {box.kind}@{box.offset}"
    if op == "size":
        value = rng.choice([
            0, 1, 7, 8, box.size - 1, box.size + 1, box.size - rng.randint(1, 64),
            box.size + rng.randint(1, 4096), box.size * 2, 0xFFFFFFFF, box.header,
        ])  # fmt: skip
        if box.header == 16 and value > 1:
            _put64(data, box.offset + 8, value)
        else:
            _put32(data, box.offset, value)
        what += f" size={value}"
    elif op == "type":
        name = rng.choice(RENAMES)
        data[box.offset + 4 : box.offset + 8] = name.encode("latin-1")
        what += f" -> {name!r}"
    elif op == "count":
        at = box.body + COUNTED.get(box.kind, 4)
        value = rng.choice([*INTERESTING_32, rng.randint(0, 1 << 20)])
        _put32(data, at, value)
        what += f" count={value}"
    elif op == "field":
        room = max(1, box.size - box.header - 4)
        at = box.body + rng.randrange(0, room)
        if rng.random() < 0.3:
            value = rng.choice(INTERESTING_64)
            _put64(data, at, value)
        else:
            value = rng.choice(INTERESTING_32)
            _put32(data, at, value)
        what += f" +{at - box.body}={value}"
    elif op == "truncate":
        cut = rng.choice([box.offset, box.offset + 4, box.body, box.offset + box.size - 1,
                          box.offset + rng.randrange(0, max(1, box.size))])  # fmt: skip
        data = data[: max(8, cut)]
        what += f" at {cut}"
    elif op == "bytes":
        for _ in range(rng.randint(1, 8)):
            at = box.offset + rng.randrange(0, max(1, box.size))
            if at < len(data):
                data[at] = rng.randrange(256)
    else:  # every entry of a table of offsets or times
        step = 8 if box.kind in ("co64", "tfra", "sidx") else 4
        value = rng.choice(INTERESTING_64 if step == 8 else INTERESTING_32)
        for at in range(box.body + 8, min(box.offset + box.size, len(data)) - step + 1, step):
            (_put64 if step == 8 else _put32)(data, at, value)
        what += f" all={value}"
    return bytes(data), what
