"""Clip cutting vs whole-file download, on generated 10-minute and 3-hour sources.

`python -m bench.clipping` writes bench/out/clipping.json and bench/out/clipping.md.

Sources are read through `FileRangeSource` (a local file with request/byte counters), so the
figures count ranged requests and bytes exactly and leave network latency out; wall time is
CPU + local I/O. Each scenario runs in its own subprocess so peak RSS is per scenario. The
cached scenarios load the index from its serialised sidecar blob, as another instance would.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from clipsearch.clipping import ClipSource, FileRangeSource, IndexCache, SourceIndex
from clipsearch_dev.media import make_video

OUT = Path(__file__).parent / "out"
MEDIA = OUT / "media"
CLIP_S = 10.0
REPEATS = 5


def _remux_interleaved(segments: list[Path], dst: Path) -> None:
    """Concatenate segments (shifting timestamps) into one moov-at-end MP4, interleaved."""
    with av.open(str(segments[0])) as first, av.open(str(dst), "w", format="mp4") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in first.streams}
        offset_s = 0.0
        for seg in segments:
            with av.open(str(seg)) as inp:
                packets = [p for p in inp.demux() if p.dts is not None and p.size]
                packets.sort(key=lambda p: float(p.dts * p.time_base))
                # Next segment starts after every packet of this one ends, on a 0.1 s grid.
                seg_end = max(float((p.pts + (p.duration or 0)) * p.time_base) for p in packets)
                for p in packets:
                    shift = round(Fraction(offset_s) / p.time_base)
                    p.pts += shift
                    p.dts += shift
                    p.stream = streams[p.stream.index]
                    out.mux(p)
            offset_s += math.ceil(seg_end * 10 + 1) / 10


def sources() -> dict[str, Path]:
    MEDIA.mkdir(parents=True, exist_ok=True)
    ten = MEDIA / "10min.mp4"
    three = MEDIA / "3h.mp4"
    if not ten.exists():
        raw = MEDIA / "10min.raw.mp4"
        t = time.perf_counter()
        make_video(raw, seconds=600, fps=25, width=320, height=240, gop=50, audio=True)
        partial = ten.with_suffix(".partial.mp4")
        _remux_interleaved([raw], partial)
        partial.rename(ten)
        raw.unlink()
        print(f"generated {ten.name} in {time.perf_counter() - t:.0f}s", flush=True)
    if not three.exists():
        # 18 copies of a 10-minute segment: a real 3 h sample table, in seconds not minutes.
        seg = MEDIA / "3h.segment.mp4"
        t = time.perf_counter()
        make_video(seg, seconds=600, fps=10, width=160, height=120, gop=20, audio=True)
        partial = three.with_suffix(".partial.mp4")
        _remux_interleaved([seg] * 18, partial)
        partial.rename(three)
        seg.unlink()
        print(f"generated {three.name} in {time.perf_counter() - t:.0f}s", flush=True)
    return {"10 min": ten, "3 h": three}


def _rss_mb() -> float:
    """Peak RSS of this process image (VmHWM; ru_maxrss would carry the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scenario(path: Path, start: float, mode: str, repeats: int) -> dict[str, Any]:
    """One scenario in this process (run in a child by `main`)."""
    baseline = _rss_mb()
    sidecar = path.with_suffix(".idx")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            cache = None
            if mode == "cached":
                cache = IndexCache(256 * 1024 * 1024)
                cache.put("k", SourceIndex.loads(sidecar.read_bytes()))
            source = FileRangeSource(path, cache_key="k")
            t = time.perf_counter()
            with ClipSource(source, index_cache=cache) as clips:
                info = clips.cut(start, start + CLIP_S, Path(tmp) / f"{i}.mp4")
                if mode == "cold" and i == 0:
                    sidecar.write_bytes(clips.index.dumps())
                    index_bytes = clips.index.nbytes
                    sidecar_bytes = sidecar.stat().st_size
            runs.append((time.perf_counter() - t, info))
    info = runs[0][1]
    return {
        "mode": mode,
        "start": start,
        "real_start": info.start,
        "real_end": info.end,
        "clip_bytes": info.size,
        "bytes_read": info.bytes_read,
        "read_over_clip": round(info.bytes_read / info.size, 3),
        "requests": info.requests,
        "wall_ms_median": round(statistics.median(t for t, _ in runs) * 1000, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "baseline_rss_mb": round(baseline, 1),
        **({"index_bytes": index_bytes, "sidecar_bytes": sidecar_bytes} if mode == "cold" else {}),
    }


def whole_download(path: Path) -> dict[str, Any]:
    source = FileRangeSource(path)
    t = time.perf_counter()
    pos, chunk = 0, 8 * 1024 * 1024
    with tempfile.TemporaryFile() as sink:
        while pos < source.size:
            data = source.read(pos, chunk)
            sink.write(data)
            pos += len(data)
    return {
        "bytes": source.bytes_read,
        "requests": source.requests,
        "wall_ms": round((time.perf_counter() - t) * 1000, 1),
    }


def _duration(path: Path) -> float:
    with av.open(str(path)) as c:
        return float(c.duration or 0) / 1e6


def main() -> None:
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "clip_s": CLIP_S,
        "repeats": REPEATS,
        "source": "local file",
        "sources": {},
    }
    for label, path in sources().items():
        duration = _duration(path)
        whole = whole_download(path)
        report["sources"][label] = {
            "size": path.stat().st_size,
            "duration_s": duration,
            "whole_download": whole,
        }
        for where, start in (
            ("start", 0.0),
            ("middle", round(duration / 2 + 0.37, 2)),
            ("end", round(duration - CLIP_S - 0.5, 2)),
        ):
            for mode in ("cold", "cached"):
                child = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.clipping",
                        "--scenario",
                        str(path),
                        str(start),
                        mode,
                        str(REPEATS),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                row = json.loads(child.stdout.strip().splitlines()[-1])
                row.update(
                    source=label,
                    where=where,
                    whole_over_read=round(whole["bytes"] / row["bytes_read"], 1),
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    report["rows"] = rows
    OUT.mkdir(exist_ok=True)
    (OUT / "clipping.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Clip cutting vs whole-file download",
        "",
        f"`python -m bench.clipping`; {CLIP_S:.0f} s clips, read through a counting local-file "
        f"RangeSource; wall time is the median of {REPEATS} runs (local I/O, no network); "
        "peak RSS per scenario in its own process (baseline: the interpreter with PyAV loaded).",
        "",
    ]
    for label, meta in report["sources"].items():
        w = meta["whole_download"]
        lines.append(
            f"- {label}: {meta['size'] / 1e6:.1f} MB, {meta['duration_s']:.0f} s; whole download "
            f"{w['bytes'] / 1e6:.1f} MB in {w['requests']} requests, {w['wall_ms']:.0f} ms"
        )
    lines += [
        "",
        "| source | clip at | index | requests | bytes read | clip bytes | read / clip | "
        "whole / read | wall ms | peak RSS MB (baseline) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['source']} | {r['where']} ({r['start']:.0f}s→{r['real_start']:.1f}s) | "
            f"{r['mode']} | {r['requests']} | {r['bytes_read']:,} | {r['clip_bytes']:,} | "
            f"{r['read_over_clip']:.2f}x | {r['whole_over_read']:.0f}x | "
            f"{r['wall_ms_median']:.0f} | {r['peak_rss_mb']:.0f} ({r['baseline_rss_mb']:.0f}) |"
        )
    cold = [r for r in rows if r["mode"] == "cold"]
    lines += [
        "",
        "Index (cold): "
        + "; ".join(
            f"{r['source']} {r['index_bytes'] / 1e3:.0f} kB held, "
            f"sidecar {r['sidecar_bytes'] / 1e3:.0f} kB"
            for r in cold
            if r["where"] == "start"
        ),
    ]
    (OUT / "clipping.md").write_text("\n".join(lines) + "\n")
    print((OUT / "clipping.md").read_text())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--scenario":
        result = scenario(Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
        print(json.dumps(result))
    else:
        main()
