"""Re-lay out a plain (moov + mdat) MP4: chunk order, chunk length, stco or co64, moov position.

ffmpeg cannot make the layouts GPAC's MP4Box and some packagers make (`-inter 500`: 0.5 s
chunks; `-flat`: no interleaving; `-64`: co64 on a small file), and GPAC is not packaged here,
so this small tool re-creates them. It copies every sample byte for byte and rewrites only
`stsc` and `stco`/`co64`: timing, sample sizes and descriptions are untouched, so a decoder
shows exactly the same frames.

    python -m tests.corpus.relayout in.mp4 out.mp4 --chunk 0.5 [--co64] [--moov end] [--flat]
"""

from __future__ import annotations

import argparse
import struct
from dataclasses import dataclass
from pathlib import Path

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


@dataclass
class _Box:
    kind: bytes
    payload: bytes = b""
    children: list[_Box] | None = None

    def child(self, kind: bytes) -> _Box | None:
        return next((c for c in self.children or [] if c.kind == kind), None)

    def serialize(self) -> bytes:
        body = (
            b"".join(c.serialize() for c in self.children)
            if self.children is not None
            else self.payload
        )
        if len(body) + 8 > 0xFFFFFFFF:
            return struct.pack(">I4sQ", 1, self.kind, len(body) + 16) + body
        return struct.pack(">I4s", len(body) + 8, self.kind) + body


def _parse(data: bytes, *, recurse: bool) -> list[_Box]:
    boxes = []
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            head = 16
        elif size == 0:
            size = len(data) - pos
        if size < head or pos + size > len(data):
            raise ValueError(f"bad box {kind!r} at {pos}")
        payload = data[pos + head : pos + size]
        if recurse and kind in _CONTAINERS:
            boxes.append(_Box(kind, children=_parse(payload, recurse=True)))
        else:
            boxes.append(_Box(kind, payload))
        pos += size
    return boxes


def _top_level(path: Path) -> list[tuple[bytes, int, int, int]]:
    """(kind, offset, header size, total size) of each top-level box, without reading mdat."""
    out = []
    size_total = path.stat().st_size
    with path.open("rb") as f:
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            size, kind = struct.unpack(">I4s", f.read(8))
            head = 8
            if size == 1:
                (size,) = struct.unpack(">Q", f.read(8))
                head = 16
            elif size == 0:
                size = size_total - pos
            out.append((kind, pos, head, size))
            pos += size
    return out


def _full(payload: bytes) -> tuple[bytes, int, bytes]:
    """(version+flags, entry count, entries) of a full box with an entry table."""
    (count,) = struct.unpack_from(">I", payload, 4)
    return payload[:4], count, payload[8:]


@dataclass
class _Track:
    stbl: _Box
    timescale: int
    offsets: list[int]  # per sample, in the source file
    sizes: list[int]
    dts: list[int]
    description: int  # sample description index (one per track here)


def _samples(trak: _Box) -> _Track:
    mdia = trak.child(b"mdia")
    assert mdia is not None
    mdhd = mdia.child(b"mdhd")
    minf = mdia.child(b"minf")
    assert mdhd is not None
    assert minf is not None
    version = mdhd.payload[0]
    timescale = struct.unpack_from(">I", mdhd.payload, 20 if version == 1 else 12)[0]
    stbl = minf.child(b"stbl")
    assert stbl is not None
    stsz = stbl.child(b"stsz")
    assert stsz is not None, "stz2 is not supported"
    uniform, count = struct.unpack_from(">II", stsz.payload, 4)
    sizes = (
        [uniform] * count if uniform else list(struct.unpack_from(f">{count}I", stsz.payload, 12))
    )
    stco = stbl.child(b"stco") or stbl.child(b"co64")
    assert stco is not None
    _, nchunks, table = _full(stco.payload)
    fmt = ">%dQ" if stco.kind == b"co64" else ">%dI"
    chunk_offsets = list(struct.unpack_from(fmt % nchunks, table))
    stsc = stbl.child(b"stsc")
    assert stsc is not None
    _, nentries, table = _full(stsc.payload)
    runs = [struct.unpack_from(">III", table, 12 * i) for i in range(nentries)]
    descriptions = {r[2] for r in runs}
    if len(descriptions) != 1:
        raise ValueError("tracks with several sample descriptions are not supported")
    offsets: list[int] = []
    sample = 0
    for i, (first, per_chunk, _) in enumerate(runs):
        last = runs[i + 1][0] - 1 if i + 1 < len(runs) else nchunks
        for chunk in range(first, last + 1):
            pos = chunk_offsets[chunk - 1]
            for _ in range(per_chunk):
                offsets.append(pos)
                pos += sizes[sample]
                sample += 1
    if sample != count:
        raise ValueError(f"stsc covers {sample} samples, stsz has {count}")
    stts = stbl.child(b"stts")
    assert stts is not None
    _, n, table = _full(stts.payload)
    dts: list[int] = []
    t = 0
    for i in range(n):
        run, delta = struct.unpack_from(">II", table, 8 * i)
        for _ in range(run):
            dts.append(t)
            t += delta
    return _Track(stbl, timescale, offsets, sizes, dts[:count], descriptions.pop())


def relayout(
    src: str | Path,
    dst: str | Path,
    *,
    chunk_s: float | None,
    co64: bool = False,
    moov_first: bool = True,
    lag_s: float = 0.0,
) -> Path:
    """Rewrite `src` with chunks of `chunk_s` seconds interleaved by time.

    `chunk_s=None`: one chunk per track, tracks stored one after another (not interleaved).
    `lag_s`: tracks after the first are stored as if `lag_s` later (audio that lags the video
    in the file; negative: leads).
    """
    src, dst = Path(src), Path(dst)
    top = _top_level(src)
    moov_entry = next(b for b in top if b[0] == b"moov")
    ftyp_entry = next(b for b in top if b[0] == b"ftyp")
    with src.open("rb") as f:
        f.seek(moov_entry[1] + moov_entry[2])
        moov = _Box(b"moov", children=_parse(f.read(moov_entry[3] - moov_entry[2]), recurse=True))
        f.seek(ftyp_entry[1])
        ftyp = f.read(ftyp_entry[3])
    source_bytes = src.read_bytes()
    traks = [c for c in moov.children or [] if c.kind == b"trak"]
    tracks = [_samples(t) for t in traks]
    # chunks: (start seconds, track number, [sample indices])
    chunks: list[tuple[float, int, list[int]]] = []
    for n, track in enumerate(tracks):
        if not track.sizes:
            continue
        if chunk_s is None:
            chunks.append((0.0 if n == 0 else float(n), n, list(range(len(track.sizes)))))
            continue
        current: list[int] = []
        begin = 0.0
        for i, t in enumerate(track.dts):
            seconds = t / track.timescale
            if current and seconds >= begin + chunk_s - 1e-9:
                chunks.append((begin, n, current))
                current = []
            if not current:
                begin = seconds
            current.append(i)
        chunks.append((begin, n, current))
    chunks.sort(
        key=lambda c: (c[0] + (lag_s if c[1] else 0.0), c[1]) if chunk_s is not None else (c[1], 0)
    )
    per_track_chunks: list[list[tuple[int, list[int]]]] = [[] for _ in tracks]
    for order, (_, n, samples) in enumerate(chunks):
        per_track_chunks[n].append((order, samples))

    def tables(chunk_offsets: list[int]) -> None:
        for n, track in enumerate(tracks):
            mine = per_track_chunks[n]
            runs: list[tuple[int, int]] = []
            for i, (_, samples) in enumerate(mine, start=1):
                if not runs or runs[-1][1] != len(samples):
                    runs.append((i, len(samples)))
            stsc = struct.pack(">4sI", b"\0\0\0\0", len(runs)) + b"".join(
                struct.pack(">III", first, per, track.description) for first, per in runs
            )
            offs = [chunk_offsets[order] for order, _ in mine]
            kind = b"co64" if co64 else b"stco"
            body = struct.pack(">4sI", b"\0\0\0\0", len(offs)) + struct.pack(
                f">{len(offs)}{'Q' if co64 else 'I'}", *offs
            )
            children = [
                c for c in track.stbl.children or [] if c.kind not in (b"stco", b"co64", b"stsc")
            ]
            children += [_Box(b"stsc", stsc), _Box(kind, body)]
            track.stbl.children = children

    payload_parts: list[bytes] = []
    relative: list[int] = []
    pos = 0
    for _, n, samples in chunks:
        relative.append(pos)
        track = tracks[n]
        for i in samples:
            piece = source_bytes[track.offsets[i] : track.offsets[i] + track.sizes[i]]
            payload_parts.append(piece)
            pos += len(piece)
    payload = b"".join(payload_parts)
    mdat_head = 8 if len(payload) + 8 <= 0xFFFFFFFF else 16
    tables([0] * len(chunks))  # sizes do not depend on the offsets' values
    moov_size = len(moov.serialize())
    mdat_start = len(ftyp) + (moov_size if moov_first else 0) + mdat_head
    if not co64 and mdat_start + len(payload) > 0xFFFFFFFF:
        raise ValueError("file too large for stco; use co64")
    tables([mdat_start + r for r in relative])
    moov_bytes = moov.serialize()
    assert len(moov_bytes) == moov_size
    mdat = _Box(b"mdat", payload).serialize()
    parts = [ftyp, moov_bytes, mdat] if moov_first else [ftyp, mdat, moov_bytes]
    tmp = dst.with_name(dst.name + ".part")
    tmp.write_bytes(b"".join(parts))
    tmp.replace(dst)
    return dst


def step_back_tfdt(src: Path, dst: Path, *, step_back_ms: float) -> Path:
    """Copy a fragmented MP4 with each audio fragment's tfdt `step_back_ms` earlier than the
    previous one ends (the k-th fragment k steps back), as encoders that trim or re-time audio
    per segment write it: each join repeats a few ms. Only tfdt values change."""
    data = bytearray(Path(src).read_bytes())
    boxes = _top_level(Path(src))
    moov = next(b for b in boxes if b[0] == b"moov")
    sound: dict[int, int] = {}  # track id -> media timescale
    for trak in _parse(bytes(data[moov[1] + moov[2] : moov[1] + moov[3]]), recurse=True):
        if trak.kind != b"trak":
            continue
        tkhd, mdia = trak.child(b"tkhd"), trak.child(b"mdia")
        assert tkhd is not None
        assert mdia is not None
        hdlr, mdhd = mdia.child(b"hdlr"), mdia.child(b"mdhd")
        assert hdlr is not None
        assert mdhd is not None
        if hdlr.payload[8:12] != b"soun":
            continue
        track_id = struct.unpack_from(">I", tkhd.payload, 20 if tkhd.payload[0] == 1 else 12)[0]
        at = 20 if mdhd.payload[0] == 1 else 12
        sound[track_id] = struct.unpack_from(">I", mdhd.payload, at)[0]
    joins = 0
    for kind, offset, header, size in boxes:
        if kind != b"moof":
            continue
        at, end = offset + header, offset + size
        while at + 8 <= end:
            tsize, tkind = struct.unpack_from(">I4s", data, at)
            if tkind == b"traf":
                track, tfdt = 0, 0
                inner = at + 8
                while inner + 8 <= at + tsize:
                    isize, ikind = struct.unpack_from(">I4s", data, inner)
                    if ikind == b"tfhd":
                        track = struct.unpack_from(">I", data, inner + 12)[0]
                    elif ikind == b"tfdt":
                        tfdt = inner
                    inner += isize
                if track in sound and tfdt:
                    step = joins * round(step_back_ms * sound[track] / 1000)
                    joins += 1
                    if data[tfdt + 8] == 1:
                        (t,) = struct.unpack_from(">Q", data, tfdt + 12)
                        struct.pack_into(">Q", data, tfdt + 12, max(0, t - step))
                    else:
                        (t,) = struct.unpack_from(">I", data, tfdt + 12)
                        struct.pack_into(">I", data, tfdt + 12, max(0, t - step))
            at += tsize
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--chunk", type=float, default=None, help="chunk seconds (default: flat)")
    parser.add_argument("--co64", action="store_true")
    parser.add_argument("--moov", choices=["start", "end"], default="start")
    args = parser.parse_args()
    relayout(
        args.src, args.dst, chunk_s=args.chunk, co64=args.co64, moov_first=args.moov == "start"
    )


if __name__ == "__main__":
    main()
