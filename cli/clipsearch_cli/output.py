"""Tables, JSON lines, progress and the one-line error: everything the commands print."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


def table(
    rows: Sequence[Sequence[str]], header: Sequence[str], out: TextIO, *, show_header: bool = True
) -> None:
    """Left-aligned columns sized to their widest cell: readable, and easy to `cut`."""
    cells = [list(header), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells if show_header else cells[1:]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def json_line(value: Mapping[str, Any], out: TextIO) -> None:
    out.write(json.dumps(value, ensure_ascii=False, sort_keys=True) + "\n")
    out.flush()


def clip_rows(outcome: Mapping[str, Any]) -> list[list[str]]:
    """One row per clip (rank, start-end, score, where it is); one row for an error or none."""
    query = outcome["query"]
    where = f"gs://{query['bucket']}/{query['object']}#{query['generation']}"
    if outcome["status"] != "success":
        error = outcome.get("error") or {}
        return [[where, "-", "-", "-", f"error {error.get('reason')}: {error.get('message')}"]]
    if not outcome["clips"]:
        return [[where, "-", "-", "-", "no matching clips"]]
    return [
        [
            where,
            str(clip["rank"]),
            f"{clip['start_time']:.2f}-{clip['end_time']:.2f}",
            f"{clip['score']:.4f}",
            clip_location(clip),
        ]
        for clip in outcome["clips"]
    ]


CLIP_HEADER = ("query", "rank", "start-end", "score", "clip")


def clip_location(clip: Mapping[str, Any]) -> str:
    if clip.get("artifact"):
        return str(clip["artifact"]["uri"])
    source = clip.get("source") or {}
    where = str(source.get("uri") or "(no source)")
    if clip.get("fetch_error"):
        return f"{where} (not fetched: {clip['fetch_error']})"
    return where


class Progress:
    """A one-line bar on stderr, only when stderr is a terminal (scripts get clean output)."""

    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, *, enabled: bool | None = None
    ) -> None:
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._total = max(total, 0)
        self._done = 0
        self._label = label
        self._last = 0.0

    def advance(self, note: str = "", step: int = 1) -> None:
        self._done += step
        self._draw(note)

    def set(self, done: int, note: str = "") -> None:
        self._done = done
        self._draw(note)

    def _draw(self, note: str) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if self._done < self._total and now - self._last < 0.1:
            return
        self._last = now
        width = 24
        filled = width * self._done // self._total if self._total else width
        bar = "#" * filled + "-" * (width - filled)
        line = f"\r{self._label} [{bar}] {self._done}/{self._total} {note}"[:120]
        self._stream.write(line.ljust(121)[:121])
        self._stream.flush()

    def close(self) -> None:
        if self._enabled:
            self._stream.write("\r" + " " * 121 + "\r")
            self._stream.flush()
