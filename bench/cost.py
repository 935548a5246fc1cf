"""Cost per 1,000 queries from the benchmarks' figures and dated list prices (docs/cost.md).

`python -m bench.cost` reads bench/out/function.json (`python -m bench.function`: GCS
operations, Pub/Sub bytes, searches and event time per query, counted on the local stack) and
bench/out/scaling.json (`make bench-scaling`: per-clip time and bytes on realistic sources of
10 min to 10 h), the function's memory and vCPU defaults from infra/variables.tf, and prints
the tables of docs/cost.md. Nothing here is measured; it only multiplies.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
OUT = Path(__file__).parent / "out"
QUERIES = 1000
HITS = (1, 5, 10)
GIB = 1024**3

# List prices, USD, as found on 2026-12-02 (see docs/cost.md for the sources and their dates).
CPU_PER_VCPU_S = 0.000024  # Cloud Run, request-based billing, Tier 1, beyond the free tier
MEM_PER_GIB_S = 0.0000025  # idem
PER_MILLION_REQUESTS = 0.40
GCS_CLASS_A_PER_1000 = 0.005  # Standard storage, regional bucket
GCS_CLASS_B_PER_1000 = 0.0004
GCS_STANDARD_PER_GIB_HOUR = 0.000027397  # regional Standard storage
PUBSUB_PER_TIB = 40.0
PUBSUB_MIN_BYTES = 1000  # per publish, pull or push request
PUBSUB_FIXED_BYTES = 20 + 36  # publish timestamp + a message_id of about 16-36 characters
HOURS_PER_MONTH = 730


def _default(variable: str) -> str:
    text = (ROOT / "infra" / "variables.tf").read_text()
    block = re.search(rf'variable "{variable}" \{{(.*?)\n\}}', text, re.S)
    if block is None:
        raise SystemExit(f"no variable {variable} in infra/variables.tf")
    value = re.search(r'default\s*=\s*"?([^"\n]+)"?', block.group(1))
    if value is None:
        raise SystemExit(f"variable {variable} has no default")
    return value.group(1).strip()


def memory_gib() -> float:
    value = _default("memory")
    if value.endswith("Mi"):
        return float(value.removesuffix("Mi")) / 1024
    return float(value.removesuffix("Gi"))


def _billed_s(seconds: float) -> float:
    """Request-based billing rounds an instance's billable time up to 100 ms."""
    return math.ceil(seconds * 10 - 1e-9) / 10


def _pubsub_bytes(message: int) -> int:
    """Publish plus one delivery (one subscription), each at least the 1,000-byte minimum."""
    return 2 * max(PUBSUB_MIN_BYTES, message + PUBSUB_FIXED_BYTES)


def rows(
    function: dict[str, Any], scaling: list[dict[str, Any]], length_s: int
) -> list[dict[str, Any]]:
    """Per 1,000 queries: every (hits, mode, state) the function benchmark counted."""
    mem, cpu = memory_gib(), float(_default("cpu"))
    warm = next(r for r in scaling if r["length_s"] == length_s and r["scenario"] == "warm")
    cold = next(r for r in scaling if r["length_s"] == length_s and r["scenario"] == "cold")
    out = []
    for op in function["operations"]:
        n, clip = op["hits"], op["mode"] == "clip"
        first = op["state"] in ("first sight", "first copy")
        # The counted event (60 s local source) plus, per clip, the realistic cut of this length.
        seconds = op["event_ms"] / 1000
        read = 0
        if clip:
            seconds += n * warm["wall_ms"] / 1000
            read = n * warm["bytes_read"]
            if first:  # the event waits for the sidecar's writer too (event_wall_ms)
                cold_ms = cold.get("event_wall_ms", cold["wall_ms"])
                seconds += (cold_ms - warm["wall_ms"]) / 1000
                read += cold["bytes_read"] - warm["bytes_read"]
        billed = _billed_s(seconds)
        stored = n * warm["clip_bytes"] if clip else (warm["source_bytes"] if first else 0)
        if clip and first:  # the index sidecar, written once per source
            stored += warm["sidecar_size"]
        pubsub = _pubsub_bytes(op["pubsub_bytes"])
        row = {
            "hits": n,
            "mode": op["mode"],
            "state": op["state"],
            "searches": QUERIES * op["searches"],
            "event_s": round(seconds, 3),
            "vcpu_s": round(QUERIES * billed * cpu),
            "gib_s": round(QUERIES * billed * mem),
            "class_a": QUERIES * op["class_a"],
            "class_b": QUERIES * op["class_b"],
            "source_gb_read": round(QUERIES * read / 1e9, 2),
            # copy mode reads the whole video inside Cloud Storage (a rewrite), not through us
            "copied_gb": round(QUERIES * warm["source_bytes"] / 1e9, 2)
            if first and not clip
            else 0,
            "stored_gb": round(QUERIES * stored / 1e9, 2),
            "pubsub_mb": round(QUERIES * pubsub / 1e6, 2),
        }
        row["usd_compute"] = (
            row["vcpu_s"] * CPU_PER_VCPU_S
            + row["gib_s"] * MEM_PER_GIB_S
            + QUERIES * PER_MILLION_REQUESTS / 1e6
        )
        row["usd_gcs_ops"] = (
            row["class_a"] * GCS_CLASS_A_PER_1000 / 1000
            + row["class_b"] * GCS_CLASS_B_PER_1000 / 1000
        )
        row["usd_storage_month"] = (
            QUERIES * stored / GIB * GCS_STANDARD_PER_GIB_HOUR * HOURS_PER_MONTH
        )
        row["usd_pubsub"] = QUERIES * pubsub / 1024**4 * PUBSUB_PER_TIB
        out.append(row)
    return out


def _label(n: int) -> str:
    return f"{n // 3600} h" if n % 3600 == 0 else f"{n // 60} min"


def markdown(table: list[dict[str, Any]], length_s: int) -> str:
    lines = [
        f"Per 1,000 queries, {_label(length_s)} sources; memory {_default('memory')}, "
        f"{_default('cpu')} vCPU (infra/variables.tf defaults):",
        "",
        "| N | mode | state | searches | s per query | vCPU-s | GiB-s | compute $ | class A "
        "| class B | GCS ops $ | source GB read | GB stored | storage $/month | Pub/Sub MB "
        "| Pub/Sub $ |",
        "|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in table:
        read = f"({r['copied_gb']:,.2f})²" if r["copied_gb"] else f"{r['source_gb_read']:.2f}"
        lines.append(
            f"| {r['hits']} | {r['mode']} | {r['state']} | {r['searches']:,} | {r['event_s']:.2f} "
            f"| {r['vcpu_s']:,} | {r['gib_s']:,} | {r['usd_compute']:.3f} | {r['class_a']:,} "
            f"| {r['class_b']:,} | {r['usd_gcs_ops']:.3f} | {read} "
            f"| {r['stored_gb']:,.2f} | {r['usd_storage_month']:.3f} | {r['pubsub_mb']:.2f} "
            f"| {r['usd_pubsub']:.5f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    function = json.loads((OUT / "function.json").read_text())
    scaling = json.loads((OUT / "scaling.json").read_text())
    lengths = sorted({r["length_s"] for r in scaling})
    for length_s in (lengths[0], lengths[-1]):
        print(markdown(rows(function, scaling, length_s), length_s))


if __name__ == "__main__":
    main()
