"""Cut every hit of a corpus file in one mode and judge each cut with the oracle.

Modes: `cold` (a fresh source and ClipSource per cut), `sequential` (one ClipSource, the hits
in the order `sequence` gives: out of time order, after a fallback, one hit twice) and
`sidecar` (the index written by a cold open, serialised with SourceIndex.dumps, loaded into a
fresh IndexCache, then a new ClipSource per cut, as another instance would).
A cut ends as `right` (the oracle agrees), `wrong` (the oracle does not), `fallback`
(ClipUnavailable, with its reason) or `crash` (any other exception).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

from clipsearch.clipping import (
    ClipSource,
    ClipUnavailable,
    FileRangeSource,
    IndexCache,
    SourceIndex,
    poster_frame,
    tune_process,
)
from tests.corpus.allowlist import allowed_reasons
from tests.corpus.oracle import Media, Verdict, judge, scan
from tests.corpus.recipes import GOP_S, SECONDS, build

MODES = ("cold", "sequential", "sidecar")
HITS = (
    "start",
    "middle",
    "gop_boundary",
    "on_keyframe",
    "exact_middle",
    "exact_start",
    "before_keyframe",
    "end",
    "past_end",
)
CUT_DEADLINE_S = 60.0  # a 12 s source cuts in well under a second
SWEEP = tuple(f"sweep_{i:02d}" for i in range(9))  # CLIPSEARCH_CORPUS=full: every 1.3 s


# Sequential mode cuts in the order the function does, the search's ranking, not time: later
# hits first, a hit after a fallback (past_end), then the rest, and one hit again at the end.
SEQUENCE_FIRST = ("end", "middle", "start", "past_end")
REPEATED = "middle"


def sequence(names: tuple[str, ...]) -> tuple[str, ...]:
    """The order sequential mode cuts `names` in: out of time order, with a repeat."""
    first = tuple(n for n in SEQUENCE_FIRST if n in names)
    rest = tuple(n for n in names if n not in first)
    return first + rest + ((REPEATED,) if REPEATED in names else ())


def full_run() -> bool:
    return os.environ.get("CLIPSEARCH_CORPUS", "") == "full"


def hit_names() -> tuple[str, ...]:
    """Two sweep hits always run: [1.75, 3.75] and [5.65, 7.65] end just before a 2 s-GOP
    keyframe, where a variable frame rate once lost the last frame."""
    return HITS + SWEEP if full_run() else (*HITS, SWEEP[1], SWEEP[4])


@dataclass(frozen=True)
class Hit:
    name: str
    start: float
    end: float
    exact: bool = False


@dataclass(frozen=True)
class Outcome:
    kind: str
    mode: str
    hit: str
    status: str  # right | wrong | fallback | crash | hang
    reason: str = ""  # the fallback's reason
    detail: str = ""  # why wrong, the fallback's message, or the crash
    bytes_read: int = 0
    clip_size: int = 0
    seconds: float = 0.0
    start: float = math.nan  # the clip's reported start and end (source timeline)
    end: float = math.nan
    path: str = ""
    beyond_end: bool = False  # the hit starts after the video ends
    index_path: str = ""  # how the engine indexed the source (ClipInfo.index_path)

    @property
    def allowed(self) -> dict[str, str]:
        """Honest fallback reasons for this cut (tests/corpus/allowlist.py)."""
        return allowed_reasons(self.kind, self.hit, beyond_end=self.beyond_end)

    @property
    def ratio(self) -> float:
        return self.bytes_read / self.clip_size if self.clip_size else math.nan


@cache
def source_media(path: Path) -> Media | None:
    """The source as decoded (None: it has no video, every cut must fall back)."""
    try:
        return scan(path)
    except ValueError:
        return None


def hits_for(media: Media | None) -> dict[str, Hit]:
    """Hits placed on this file's own keyframes (its sync samples) and duration."""
    if media is None or not media.frames:
        end, keys = float(SECONDS), [k * GOP_S for k in range(int(SECONDS / GOP_S))]
    else:
        end = media.video_end
        keys = sorted(t for t in media.sync_times if t >= media.frames[0].time)
    third = [k for k in keys if k >= end / 3] or [end / 3]
    two_thirds = [k for k in keys if k >= end * 0.6] or [end * 0.6]
    boundary = third[0] if third[0] > 0.1 else end / 3
    mid = round(end / 2 + 0.37, 3)
    return {
        h.name: h
        for h in (
            Hit("start", 0.0, 3.0),
            Hit("middle", mid, mid + 3.0),
            Hit("gop_boundary", round(boundary - 0.02, 3), round(boundary + 2.0, 3)),
            Hit("on_keyframe", two_thirds[0], round(two_thirds[0] + 2.0, 3)),
            Hit("exact_middle", mid, mid + 2.0, exact=True),
            Hit("exact_start", 0.0, 2.0, exact=True),
            # ends 0.35 s before a keyframe: the next GOP starts within the reorder margin
            Hit("before_keyframe", round(two_thirds[0] - 2.35, 3), round(two_thirds[0] - 0.35, 3)),
            Hit("end", round(end - 2.5, 3), round(end + 1.0, 3)),
            Hit("past_end", round(end + 5.0, 3), round(end + 8.0, 3)),
            *(
                Hit(name, round(0.45 + 1.3 * i, 3), round(2.45 + 1.3 * i, 3), exact=i % 3 == 2)
                for i, name in enumerate(SWEEP)
            ),
        )
    }


_VERDICTS: dict[tuple[object, ...], Verdict] = {}


def _judged(media: Media, out: Path, info: Any, hit: Hit) -> Verdict:
    """The oracle's verdict; the same bytes with the same info (the three modes usually cut
    identical clips) are judged once."""
    key = (
        id(media),
        hashlib.sha256(out.read_bytes()).hexdigest(),
        tuple(
            repr(getattr(info, name, None))
            for name in ("start", "end", "requested_start", "keyframe_snapped", "size")
        ),
        tuple(getattr(info, "dropped_tracks", ())),
        hit,
    )
    if key not in _VERDICTS:
        _VERDICTS[key] = judge(media, out, info, requested=(hit.start, hit.end), exact=hit.exact)
    return _VERDICTS[key]


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Hang


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt a cut that runs too long (delivered when the demuxer calls back into Python,
    e.g. to read). Main thread only; elsewhere no deadline."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _judge(
    kind: str, mode: str, hit: Hit, media: Media | None, out: Path, cut: Callable[[], object]
) -> Outcome:
    outcome = _cut_and_judge(kind, mode, hit, media, out, cut)
    beyond = media is not None and bool(media.frames) and hit.start >= media.video_end - 1e-3
    return dataclasses.replace(outcome, beyond_end=beyond)


def _cut_and_judge(
    kind: str, mode: str, hit: Hit, media: Media | None, out: Path, cut: Callable[[], object]
) -> Outcome:
    t0 = time.perf_counter()
    try:
        with _deadline(CUT_DEADLINE_S):
            info = cut()
            # the fetcher stores a poster of every clip: part of the cut, as there
            poster = poster_frame(out)
        if poster[:2] != b"\xff\xd8":
            raise ValueError("the poster is not a JPEG")
    except _Hang:
        return Outcome(
            kind,
            mode,
            hit.name,
            "hang",
            detail=f"the cut ran over {CUT_DEADLINE_S:g} s",
            seconds=time.perf_counter() - t0,
        )
    except ClipUnavailable as error:
        return Outcome(
            kind,
            mode,
            hit.name,
            "fallback",
            str(error.reason),
            error.message,
            seconds=time.perf_counter() - t0,
        )
    except Exception as error:
        tb = traceback.extract_tb(error.__traceback__)[-1]
        where = f"{Path(tb.filename).name}:{tb.lineno}"
        return Outcome(
            kind,
            mode,
            hit.name,
            "crash",
            detail=f"{type(error).__name__}: {error} at {where}",
            seconds=time.perf_counter() - t0,
        )
    elapsed = time.perf_counter() - t0
    bytes_read, size = int(info.bytes_read), int(info.size)  # type: ignore[attr-defined]
    if media is None:
        return Outcome(
            kind, mode, hit.name, "wrong", detail="a clip from a source with no decodable video"
        )
    verdict = _judged(media, out, info, hit)
    status = "right" if verdict.right else "wrong"
    return Outcome(
        kind,
        mode,
        hit.name,
        status,
        "",
        "; ".join(verdict.why),
        bytes_read,
        size,
        elapsed,
        float(info.start),  # type: ignore[attr-defined]
        float(info.end),  # type: ignore[attr-defined]
        str(out),
        index_path=str(getattr(info, "index_path", "")),
    )


def run(kind: str, mode: str, hit_names: tuple[str, ...], workdir: Path) -> dict[str, Outcome]:
    """Cut `hit_names` (in this order) of `kind` in `mode`."""
    tune_process()  # as the function's composition root does
    path = build(kind)
    media = source_media(path)
    hits = hits_for(media)
    workdir.mkdir(parents=True, exist_ok=True)
    outcomes: dict[str, Outcome] = {}

    def out_for(hit: Hit) -> Path:
        return workdir / f"{kind}-{mode}-{hit.name}.mp4"

    if mode == "cold":
        for name in hit_names:
            hit, out = hits[name], out_for(hits[name])

            def cold(hit: Hit = hit, out: Path = out) -> object:
                with ClipSource(FileRangeSource(path)) as clips:
                    return clips.cut(hit.start, hit.end, out, exact=hit.exact)

            outcomes[name] = _judge(kind, mode, hit, media, out, cold)
    elif mode == "sequential":
        opened: list[ClipSource] = []
        try:
            for name in sequence(hit_names):
                hit, out = hits[name], out_for(hits[name])
                again = name in outcomes
                if again:
                    out = out.with_name(f"{out.stem}-again{out.suffix}")

                def sequential(hit: Hit = hit, out: Path = out) -> object:
                    if not opened:
                        opened.append(ClipSource(FileRangeSource(path)))
                    return opened[0].cut(hit.start, hit.end, out, exact=hit.exact)

                outcome = _judge(kind, mode, hit, media, out, sequential)
                if not again:
                    outcomes[name] = outcome
                elif outcome.status != outcomes[name].status:
                    # a repeat must end as the first cut did: keep the worse, and say so
                    worse = outcome if outcomes[name].status == "right" else outcomes[name]
                    outcomes[name] = dataclasses.replace(
                        worse,
                        detail=f"the same hit cut again ended {outcome.status}: {outcome.detail}",
                    )
        finally:
            for clips in opened:
                clips.close()
    elif mode == "sidecar":
        key = f"corpus://{path.name}"
        blob: list[bytes] = []

        def sidecar(hit: Hit, out: Path) -> object:
            if not blob:
                first = IndexCache(256 * 1024 * 1024)
                with ClipSource(FileRangeSource(path, cache_key=key), index_cache=first) as c:
                    blob.append(c.index.dumps())
            cache = IndexCache(256 * 1024 * 1024)
            cache.put(key, SourceIndex.loads(blob[0]))
            with ClipSource(FileRangeSource(path, cache_key=key), index_cache=cache) as clips:
                if not clips.index_cached:
                    raise AssertionError("the sidecar index was not used")
                return clips.cut(hit.start, hit.end, out, exact=hit.exact)

        for name in hit_names:
            hit, out = hits[name], out_for(hits[name])
            outcomes[name] = _judge(kind, mode, hit, media, out, partial(sidecar, hit, out))
    else:
        raise ValueError(mode)
    return outcomes
