"""Clip cost against source length (issue 11): `make bench-scaling [LENGTHS=600,10800]`.

For each source length (seconds; default 10 min, 1 h, 3 h, 10 h) and each scenario, a fresh
child process cuts one 6 s clip from the middle of the source through the engine's public API
(`ClipSource` over a `FileRangeSource`, as bench/clipping.py does). Every child first cuts a
clip from another, 60 s source, so the process's one-off costs (lazy imports, codec set-up,
~100 ms here) are paid before the clock starts and every figure is what this source costs:

- `cold`: a new process, no sidecar: walk the boxes, read the index, cut. As the function
  does (fetch.py `ClipFetcher._write_sidecar`), the sidecar is written by a thread started
  right after the open, concurrently with the cut: `SourceIndex.dumps()`, then the blob
  written to a temp file (standing for the upload to the results bucket); it is joined after
  the cut and the source's close, as the event joins it before its fetch stage returns.
- `cold-with-sidecar`: a new process, the sidecar present: read it, `SourceIndex.loads()`
  into an `IndexCache`, open from the cache, cut.
- `warm`: the index already in the instance's memory cache: the process first cuts another
  clip (a quarter into the source; that fills the cache), then the measured clip is a second
  `ClipSource` in the same process, as the next event on the same instance would open.

`wall_ms` is the clip's critical path: from the start of the scenario's work to the clip
written and the source closed (what the hit waits for). `event_wall_ms` runs on to the sidecar
writer joined (the same as `wall_ms` where nothing is written); `dumps_ms` is timed inside the
writer thread. Every row also says how the demuxer saw the source (`ClipInfo.index_path`); the
run fails unless it is "tables" (a synthetic moov of the clip's samples) for these sources.
Peak RSS is `ru_maxrss` of the child (read by the parent with `wait4`; the parent imports
neither PyAV nor the engine, so it cannot lend the child its own peak); the child also reports
the peak of the measured cut alone (VmHWM reset through /proc/self/clear_refs right before it),
which for `warm` leaves out the cut that filled the cache. Bytes read and requests are those on
the source; the sidecar read (one GET on the results bucket) is counted apart. Repetitions
interleave every length and scenario, so a noisy neighbour hits all of them alike; figures are
medians.

Sources: one 60 s piece of bench/media_realistic.py footage (720p30 H.264 + AAC stereo, moov
at the end) at a low video bitrate, concatenated by the ffmpeg CLI's concat demuxer with stream
copy (no re-encode), moov written at the end by the mp4 muxer; all cached in bench/out/media/.
The index (sample tables) grows with the sample count, not the bitrate. The prepare step
rewrites every source's .idx sidecar in the engine's current format (a stale one from an
older engine is replaced, never loaded) and reads it back once to check it.

Writes bench/out/scaling.json (a list of rows) and bench/out/scaling.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "out"
MEDIA = OUT / "media"
LENGTHS = (600, 3600, 10800, 36000)
SCENARIOS = ("cold", "cold-with-sidecar", "warm")
REPEATS = 7
PIECE_S = 60
# 1 Mbit/s video + 128 kbit/s audio: the 10 h source is ~5 GB, still past 4 GiB, so its chunk
# offsets are 64-bit (co64) as a real 10 h file's are; 2 Mbit/s would double the disk.
PIECE_KBPS = 1000
CLIP_S = 6.0
CACHE_BYTES = 256 * 1024 * 1024  # the function's default CLIPSEARCH_INDEX_CACHE_BYTES
KEY = "bench-source#1"
MIB = 1024 * 1024


# -- sources (parent side: ffmpeg CLI only) ---------------------------------------------------


def _piece() -> Path:
    piece = MEDIA / f"scaling-piece-{PIECE_S}s-{PIECE_KBPS}k.mp4"
    if not piece.exists():
        MEDIA.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        # Encoding imports PyAV: a child, so this process stays small (see the module doc).
        subprocess.run([sys.executable, "-m", "bench.scaling", "--piece", str(piece)], check=True)
        print(f"encoded {piece.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return piece


def source(length_s: int) -> Path:
    """The `length_s` source: copies of the piece joined by stream copy, moov at the end."""
    if length_s % PIECE_S:
        raise SystemExit(f"length {length_s} s is not a multiple of the {PIECE_S} s piece")
    path = MEDIA / f"scaling-{length_s}s-{PIECE_KBPS}k.mp4"
    if path.exists():
        return path
    piece = _piece()
    listing = path.with_suffix(".ffconcat")
    listing.write_text("ffconcat version 1.0\n" + f"file '{piece.name}'\n" * (length_s // PIECE_S))
    partial = path.with_suffix(".partial.mp4")
    started = time.perf_counter()
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"),
            *("-f", "concat", "-safe", "0", "-i", str(listing)),
            *("-map", "0", "-c", "copy", "-f", "mp4", str(partial)),
        ],
        check=True,
    )
    partial.rename(path)
    listing.unlink()
    print(f"concatenated {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


# -- children (import PyAV and the engine) ----------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """Describe one source and write its sidecar (the `cold-with-sidecar` scenario reads it)."""
    from bench.clipping import _describe  # noqa: PLC0415
    from clipsearch.clipping import ClipSource, FileRangeSource, SourceIndex  # noqa: PLC0415

    path = Path(spec["path"])
    with ClipSource(FileRangeSource(path, cache_key=KEY)) as clips:
        index = clips.index
        layout = clips.layout
        duration = clips.duration
    started = time.perf_counter()
    blob = index.dumps()
    dumps_ms = (time.perf_counter() - started) * 1000
    # Always rewritten (never trusted because it exists): a sidecar left by an older engine
    # would otherwise be what `cold-with-sidecar` loads. Written aside, then renamed.
    sidecar = Path(spec["sidecar"])
    stale = sidecar.exists() and sidecar.read_bytes()[:5] != blob[:5]  # magic + version
    partial = sidecar.with_suffix(".idx.partial")
    partial.write_bytes(blob)
    partial.rename(sidecar)
    started = time.perf_counter()
    loaded = SourceIndex.loads(sidecar.read_bytes())
    loads_ms = (time.perf_counter() - started) * 1000
    if loaded.nbytes != index.nbytes or loaded.dumps() != blob:
        raise RuntimeError(f"{sidecar.name}: the sidecar does not load back to the same index")
    moov = index.box("moov")
    movie = index.movie
    samples = movie.samples if movie is not None else None
    return {
        **_describe(path),
        "layout": layout,
        "engine_duration_s": round(duration, 3),
        "moov_bytes": moov.size if moov else None,
        "index_bytes": index.nbytes,
        "index_table_bytes": movie.nbytes if movie is not None else 0,
        "samples": samples,
        "index_bytes_per_sample": round(index.nbytes / samples, 2) if samples else None,
        "sidecar_size": len(blob),
        "sidecar_version": blob[4],
        "sidecar_was_stale": stale,
        "dumps_ms": round(dumps_ms, 1),
        "loads_ms": round(loads_ms, 1),
    }


def scenario(spec: dict[str, Any]) -> dict[str, Any]:
    """One scenario, once, in this fresh process."""
    import gc  # noqa: PLC0415

    from clipsearch.clipping import tune_process  # noqa: PLC0415

    tune_process()  # as the function's composition root does
    from clipsearch.clipping import (  # noqa: PLC0415
        ClipSource,
        FileRangeSource,
        IndexCache,
        SourceIndex,
    )

    kind, path, start, clip_s = spec["scenario"], spec["path"], spec["start"], spec["clip_s"]
    imported_kib = _status_kib("VmRSS")
    cache = IndexCache(CACHE_BYTES)
    with tempfile.TemporaryDirectory() as tmp:
        # Pay the process's one-off costs (lazy imports, codec set-up) on another, short
        # source first: what remains is the work this source costs.
        started = time.perf_counter()
        with ClipSource(FileRangeSource(spec["warmup_path"])) as other:
            other.cut(10.0, 10.0 + clip_s, Path(tmp) / "other.mp4")
        first_cut_ms = (time.perf_counter() - started) * 1000
        if kind == "warm":  # an earlier event on this instance filled the cache
            warm = spec["warm_start"]
            with ClipSource(FileRangeSource(path, cache_key=KEY), index_cache=cache) as clips:
                clips.cut(warm, warm + clip_s, Path(tmp) / "earlier.mp4")
        gc.collect()
        before_kib = _status_kib("VmRSS")
        reset = _reset_peak()
        out = Path(tmp) / "clip.mp4"
        ranged = FileRangeSource(path, cache_key=KEY)
        sidecar_requests = sidecar_read = 0
        loads_ms = 0.0
        written: dict[str, float] = {}
        writer: threading.Thread | None = None

        def write_sidecar(index: SourceIndex) -> None:
            """The function's `_write_sidecar`: dumps, then the upload (here a temp file)."""
            began = time.perf_counter()
            blob = index.dumps()
            dumped = time.perf_counter()
            (Path(tmp) / "sidecar.idx").write_bytes(blob)
            written.update(
                bytes=len(blob),
                dumps_ms=(dumped - began) * 1000,
                write_ms=(time.perf_counter() - dumped) * 1000,
            )

        started = time.perf_counter()
        if kind == "cold-with-sidecar":  # the function's _warm_cache: GET, loads, put
            blob = Path(spec["sidecar"]).read_bytes()
            sidecar_requests, sidecar_read = 1, len(blob)
            cache.put(KEY, SourceIndex.loads(blob))
            loads_ms = (time.perf_counter() - started) * 1000
        with ClipSource(ranged, index_cache=cache) as clips:
            opened = time.perf_counter()
            if kind == "cold":  # as the function: the sidecar written beside the cut
                writer = threading.Thread(target=write_sidecar, args=(clips.index,))
                writer.start()
            info = clips.cut(start, start + clip_s, out)
            cached = clips.index_cached
        wall_ms = (time.perf_counter() - started) * 1000  # what the hit waits for
        if writer is not None:  # the event joins the writer before its fetch stage returns
            writer.join()
            if "bytes" not in written:
                raise RuntimeError("the sidecar writer failed")
        event_wall_ms = (time.perf_counter() - started) * 1000
        cut_peak_kib = _status_kib("VmHWM") if reset else None
    if cached != (kind != "cold"):
        raise RuntimeError(f"{kind}: index_cached={cached}")
    return {
        "wall_ms": round(wall_ms, 1),
        "event_wall_ms": round(event_wall_ms, 1),
        "index_path": info.index_path,
        "process_first_cut_ms": round(first_cut_ms, 1),
        "open_ms": round((opened - started) * 1000, 1),
        "loads_ms": round(loads_ms, 1),
        "dumps_ms": round(written.get("dumps_ms", 0.0), 1),
        "sidecar_write_ms": round(written.get("write_ms", 0.0), 1),
        "timings_ms": {k: round(v, 1) for k, v in info.timings_ms.items()},
        "bytes_read": info.bytes_read,
        "requests": info.requests,
        "sidecar_requests": sidecar_requests,
        "sidecar_bytes_read": sidecar_read,
        "sidecar_bytes_written": int(written.get("bytes", 0)),
        "clip_bytes": info.size,
        "real_start": round(info.start, 3),
        "real_end": round(info.end, 3),
        "rss_imported_mib": round(imported_kib / 1024, 1),
        "rss_before_cut_mib": round(before_kib / 1024, 1),
        "cut_peak_rss_mib": round(cut_peak_kib / 1024, 1) if cut_peak_kib else None,
    }


# -- parent -----------------------------------------------------------------------------------


def _child(args: list[str]) -> tuple[dict[str, Any], float]:
    """Run `python -m bench.scaling ARGS`; its last stdout line as JSON, and its ru_maxrss MiB."""
    with tempfile.TemporaryFile() as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.scaling", *args],
            stdout=stdout,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise RuntimeError(f"child {args[:1]} exited {process.returncode}")
        stdout.seek(0)
        lines = stdout.read().decode().strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    return result, usage.ru_maxrss / 1024  # KiB on Linux


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def run(lengths: list[int], repeats: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    started = time.perf_counter()
    paths = {n: source(n) for n in lengths}
    meta: dict[str, Any] = {}
    for n, path in paths.items():
        sidecar = path.with_suffix(".idx")
        described, _ = _child(
            ["--prepare", json.dumps({"path": str(path), "sidecar": str(sidecar)})]
        )
        if described["layout"] != "moov_at_end":
            raise RuntimeError(f"{path.name}: layout {described['layout']}, not moov at the end")
        if not described["index_table_bytes"]:
            raise RuntimeError(f"{path.name}: the index holds no tables (the moov as bytes)")
        meta[str(n)] = {**described, "path": str(path), "sidecar": str(sidecar)}
        print(f"{n} s: {json.dumps(described)}", flush=True)
    runs: dict[tuple[int, str], list[tuple[dict[str, Any], float]]] = {}
    for rep in range(repeats):
        for n in lengths:
            duration = meta[str(n)]["engine_duration_s"]
            for kind in SCENARIOS:
                spec = {
                    "scenario": kind,
                    "path": meta[str(n)]["path"],
                    "sidecar": meta[str(n)]["sidecar"],
                    "clip_s": CLIP_S,
                    "start": round(duration / 2 + 0.37, 2),
                    "warm_start": round(duration / 4 + 0.37, 2),
                    "warmup_path": str(_piece()),
                }
                result, maxrss = _child(["--scenario", json.dumps(spec)])
                if result["index_path"] != "tables":  # these sources must never parse the moov
                    raise RuntimeError(f"{n} s {kind}: index_path {result['index_path']!r}")
                runs.setdefault((n, kind), []).append((result, maxrss))
                print(
                    f"rep {rep + 1}/{repeats} {n} s {kind}: {result['wall_ms']:.0f} ms, "
                    f"ru_maxrss {maxrss:.0f} MiB",
                    flush=True,
                )
    rows = []
    for (n, kind), results in runs.items():
        first = results[0][0]
        for r, _ in results:  # the same clip every time: same bytes, same requests
            for field in ("bytes_read", "requests", "clip_bytes", "real_start", "index_path"):
                if r[field] != first[field]:
                    raise RuntimeError(
                        f"{n} s {kind}: {field} varies: {r[field]} != {first[field]}"
                    )
        peaks = [m for _, m in results]
        cut_peaks = [r["cut_peak_rss_mib"] for r, _ in results if r["cut_peak_rss_mib"]]
        src = meta[str(n)]
        rows.append(
            {
                "length_s": n,
                "scenario": kind,
                "wall_ms": _median([r["wall_ms"] for r, _ in results]),
                "peak_rss_mib": _median(peaks),
                "bytes_read": first["bytes_read"],
                "requests": first["requests"],
                "index_path": first["index_path"],
                "event_wall_ms": _median([r["event_wall_ms"] for r, _ in results]),
                "median_of": len(results),
                "clip_s": CLIP_S,
                "clip_bytes": first["clip_bytes"],
                "clip_start_s": first["real_start"],
                "clip_end_s": first["real_end"],
                "wall_ms_all": [r["wall_ms"] for r, _ in results],
                "open_ms": _median([r["open_ms"] for r, _ in results]),
                "loads_ms": _median([r["loads_ms"] for r, _ in results]),
                "dumps_ms": _median([r["dumps_ms"] for r, _ in results]),
                "sidecar_write_ms": _median([r["sidecar_write_ms"] for r, _ in results]),
                "cut_ms": _median(
                    [
                        r["timings_ms"].get("fetch", 0) + r["timings_ms"].get("remux", 0)
                        for r, _ in results
                    ]
                ),
                "peak_rss_mib_max": round(max(peaks), 1),
                "cut_peak_rss_mib": _median(cut_peaks) if cut_peaks else None,
                "process_first_cut_ms": _median([r["process_first_cut_ms"] for r, _ in results]),
                "rss_imported_mib": _median([r["rss_imported_mib"] for r, _ in results]),
                "rss_before_cut_mib": _median([r["rss_before_cut_mib"] for r, _ in results]),
                "sidecar_requests": first["sidecar_requests"],
                "sidecar_bytes_read": first["sidecar_bytes_read"],
                "sidecar_bytes_written": first["sidecar_bytes_written"],
                "source_bytes": src["size"],
                "moov_bytes": src["moov_bytes"],
                "index_bytes": src["index_bytes"],
                "index_bytes_per_sample": src["index_bytes_per_sample"],
                "sidecar_size": src["sidecar_size"],
            }
        )
    rows.sort(key=lambda r: (r["length_s"], SCENARIOS.index(r["scenario"])))
    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench-scaling"
        + ("" if tuple(lengths) == LENGTHS else f" LENGTHS={','.join(map(str, lengths))}"),
        "repeats": repeats,
        "run_s": round(time.perf_counter() - started),
        "load_avg": os.getloadavg(),
        "engine_sha256": _engine_fingerprint(),
        "sources": meta,
    }
    return rows, info


def _engine_fingerprint() -> str:
    """sha256 over the clip engine's sources: which engine these figures belong to."""
    root = Path(__file__).parent.parent / "functions/clipsearch/clipsearch/clipping"
    digest = hashlib.sha256()
    for path in sorted(root.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _label(n: int) -> str:
    return f"{n // 3600} h" if n % 3600 == 0 else f"{n // 60} min" if n % 60 == 0 else f"{n} s"


def _samples(stream: str) -> str:
    """'h264 1280x720 30 fps, 18000 samples' -> '18,000'."""
    return f"{int(stream.rsplit(', ', 1)[-1].split(maxsplit=1)[0]):,}"


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"`{info['command']}` on {info['date']}; run took {info['run_s']} s; every figure "
        f"the median of {info['repeats']} fresh processes per scenario, all interleaved in one "
        f"run (load average at the end {', '.join(f'{x:.1f}' for x in info['load_avg'])}). "
        f"A {CLIP_S:g} s clip from the middle of each source; clip engine sources sha256 "
        f"{info['engine_sha256']}.",
        "",
        "| source | moov | sidecar (dumps / loads, prepare step) | index held in memory "
        "(of it tables) | index bytes per sample | samples (video / audio) |",
        "|---|--:|--:|--:|--:|---|",
    ]
    for n, src in info["sources"].items():
        per_sample = src["index_bytes_per_sample"]
        lines.append(
            f"| {_label(int(n))} ({src['size'] / 1e6:,.0f} MB) | {src['moov_bytes'] / 1e6:.2f} MB "
            f"| {src['sidecar_size'] / 1e6:.2f} MB ({src['dumps_ms']:.0f} / "
            f"{src['loads_ms']:.0f} ms) | {src['index_bytes'] / 1e6:.2f} MB "
            f"({src['index_table_bytes'] / 1e6:.2f} MB) | "
            f"{f'{per_sample:.2f}' if per_sample else 'n/a'} | "
            f"{_samples(src['video'])} / {_samples(src['audio'])} |"
        )
    base = {
        r["scenario"]: r["wall_ms"]
        for r in rows
        if r["length_s"] == min(int(n) for n in info["sources"])
    }
    lines += [
        "",
        "| source | scenario | wall ms per clip (critical path, median) | x shortest | "
        "event wall ms (sidecar joined) | open / sidecar loads / cut ms | sidecar dumps ms "
        "(writer thread) | peak RSS MiB (ru_maxrss) | measured cut's peak RSS MiB (RSS "
        "before it) | bytes read (source) | requests (source) | clip bytes | index path |",
        "|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        dumps = f"{r['dumps_ms']:.0f}" if r["scenario"] == "cold" else "n/a"
        loads = f"{r['loads_ms']:.0f}" if r["scenario"] == "cold-with-sidecar" else "n/a"
        extra = ""
        if r["sidecar_requests"]:
            extra = f" + 1 sidecar GET ({r['sidecar_bytes_read']:,} B)"
        cut_peak = f"{r['cut_peak_rss_mib']:.0f}" if r["cut_peak_rss_mib"] else "n/a"
        lines.append(
            f"| {_label(r['length_s'])} | {r['scenario']} | {r['wall_ms']:.0f} | "
            f"{r['wall_ms'] / base[r['scenario']]:.2f}x | {r['event_wall_ms']:.0f} | "
            f"{r['open_ms']:.0f} / {loads} / {r['cut_ms']:.0f} | {dumps} | "
            f"{r['peak_rss_mib']:.0f} | {cut_peak} ({r['rss_before_cut_mib']:.0f}) | "
            f"{r['bytes_read']:,}{extra} | {r['requests']} | {r['clip_bytes']:,} | "
            f"{r['index_path']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--piece", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.piece:
        from bench.media_realistic import make_piece  # noqa: PLC0415

        partial = Path(args.piece).with_suffix(".partial.mp4")
        make_piece(partial, PIECE_S, video_kbps=PIECE_KBPS)
        partial.rename(args.piece)
        return
    if args.prepare:
        print(json.dumps(prepare(json.loads(args.prepare))))
        return
    if args.scenario:
        print(json.dumps(scenario(json.loads(args.scenario))))
        return
    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    rows, info = run(lengths, args.repeats)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    (OUT / "scaling-run.json").write_text(json.dumps(info, indent=2) + "\n")
    text = markdown(rows, info)
    (OUT / "scaling.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
