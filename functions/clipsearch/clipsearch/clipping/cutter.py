"""Cut [start, end] out of a remote MP4 by stream copy, reading only the index and the clip.

`ClipSource` opens a source once (`opening.py`: the index from the cache, or walked and
fetched cold) and cuts any number of clips from it; `cut_clip` is the one-shot form. A cut
runs one pipeline:

    plan (plan.py) -> fetch (opening.py, reader.py) -> demux (demux.py, fragmented.py)
        -> write and read back (mux.py, verify.py)

The tables way (a synthetic index of the clip's samples) is tried first; a cut the tables
cannot serve (`TablesCannotServe`) is done again with the demuxer parsing the whole moov.

The source is untrusted: every outcome is a ClipInfo or a ClipUnavailable with a reason.
Parsers bound what they read (boxes.py), reads have a deadline and a byte budget
(reader.py), and any other exception is turned into ClipUnavailable with no local path in it.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import av

from clipsearch.clipping.boxes import check_chain
from clipsearch.clipping.checks import INDEX_BOXES
from clipsearch.clipping.demux import Demux, Packets
from clipsearch.clipping.errors import ClipReason, ClipUnavailable, TablesCannotServe
from clipsearch.clipping.fragmented import fragment_audio, keyframe_seek
from clipsearch.clipping.index import IndexCache
from clipsearch.clipping.mux import Clip, Written, write
from clipsearch.clipping.opening import Opened, OpenRequest, fetch, open_source
from clipsearch.clipping.plan import EPS, CutPlan, FragmentIndex, TablesIndex, plan
from clipsearch.clipping.samples import LastSample
from clipsearch.clipping.sources import RangeSource
from clipsearch.clipping.verify import codec_name

DEFAULT_MAX_CLIP_S = 600.0
DEFAULT_MAX_PREROLL_S = 60.0  # keyframe snapping may start the clip at most this early
DEFAULT_MAX_INDEX_BYTES = 64 * 1024 * 1024
_PATH = re.compile(r"'?/[^\s']+'?")


@dataclass(frozen=True)
class ClipInfo:
    """What was cut: requested and real times (source timeline, seconds) and what it cost.

    `dropped_tracks` names the source tracks the clip does not carry (e.g. a second audio
    track: "audio#2 (opus, eng)"), so the caller can say so in the clip's notes.
    """

    path: Path
    requested_start: float
    requested_end: float
    start: float  # the real start shown by the clip (the keyframe, unless exact)
    end: float  # the real end: the last included frame's end
    size: int
    requests: int  # ranged requests this clip cost (the open's, for the first clip)
    bytes_read: int
    keyframe_snapped: bool
    exact: bool
    index_cached: bool
    video_codec: str
    codec_tag: str
    has_audio: bool
    dropped_tracks: tuple[str, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)
    # How the demuxer saw the source: "tables" (a synthetic index of the clip's samples, the
    # usual way), "moov" (the whole moov, for the layouts the tables do not reproduce), or
    # "tables+moov" (the tables could not serve the cut: cut again the whole way).
    index_path: str = "moov"


@dataclass(frozen=True)
class _CutRequest:
    start: float
    end: float
    out_path: Path
    exact: bool
    max_preroll_s: float


def _clean(message: str) -> str:
    """A message fit for a fallback reason: no local paths, one line, bounded."""
    return _PATH.sub("<file>", " ".join(str(message).split()))[:300]


def _unavailable(error: Exception, stage: str) -> ClipUnavailable:
    """Any exception from the engine as a ClipUnavailable with a reason (never transient)."""
    if isinstance(error, ClipUnavailable):
        return error
    frames = traceback.extract_tb(error.__traceback__)
    where = f" in {Path(frames[-1].filename).stem}.{frames[-1].name}" if frames else ""
    text = _clean(f"{type(error).__name__}{where} while {stage}: {error}")
    if isinstance(error, av.codec.codec.UnknownCodecError):
        return ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, text)
    if isinstance(error, av.FFmpegError):
        if stage == "opening":
            return ClipUnavailable(ClipReason.UNSUPPORTED_CONTAINER, text)
        return ClipUnavailable(ClipReason.MALFORMED_SOURCE, text)
    return ClipUnavailable(ClipReason.ENGINE_ERROR, text)


@contextlib.contextmanager
def _as_clip_errors(stage: str) -> Iterator[None]:
    try:
        yield
    except ClipUnavailable as error:
        error.message = _clean(error.message)
        error.args = (f"{error.reason}: {error.message}",)
        raise
    except Exception as error:  # the catch-all: a hostile file must not escape as a crash
        raise _unavailable(error, stage) from None


class ClipSource:
    """One opened source: several hits on the same video share the open and the index."""

    def __init__(
        self,
        source: RangeSource,
        *,
        index_cache: IndexCache | None = None,
        max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES,
        deadline: float | None = None,
        use_tables: bool = True,
    ) -> None:
        """`use_tables=False` makes FFmpeg parse the whole moov: the reference the synthetic
        index is tested against, and a switch if it ever misleads."""
        self.source = source
        self._deadline = deadline
        self._max_index_bytes = max_index_bytes
        request = OpenRequest(source, index_cache, max_index_bytes, deadline, use_tables)
        with _as_clip_errors("opening"):
            self._opened: Opened = open_source(request)
        opened = self._opened
        opened.file.deadline = None
        opened.file.budget = None
        self.index = opened.source_index
        self.index_cached = opened.index_cached
        self.index_path = "tables" if isinstance(opened.index, TablesIndex) else "moov"
        self._pending = opened.cost  # reads not yet counted in a clip: the open's, a miss's
        self._keep: tuple[tuple[int, bytes], ...] | None = None  # held between cuts
        self._cut_before = False  # a fragmented source's demuxer holds an earlier cut's index

    @property
    def held_bytes(self) -> int:
        """Bytes of the source held between cuts: the index, never a clip's bytes."""
        f = self._opened.file
        return f.held_bytes - len(f.tail)

    @property
    def layout(self) -> str:
        return self._opened.layout.kind

    @property
    def duration(self) -> float:
        """Seconds; for fragmented sources the demuxer only knows the fragments it read."""
        if self._opened.fragmented:
            return math.inf
        container, v = self._opened.container, self._opened.streams.video
        if container.duration is not None:
            return float(container.duration) / 1_000_000
        if v.duration is not None and v.time_base is not None:
            return float(v.duration * v.time_base)
        return math.inf

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._opened.container.close()
        self._opened.file.drop_except(())

    def __enter__(self) -> ClipSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cut(
        self,
        start: float,
        end: float,
        out_path: str | Path,
        *,
        exact: bool = False,
        max_clip_s: float = DEFAULT_MAX_CLIP_S,
        max_preroll_s: float = DEFAULT_MAX_PREROLL_S,
        deadline: float | None = None,
    ) -> ClipInfo:
        """Write [start, end] of the source to `out_path` (MP4, stream copy, faststart).

        `deadline` (time.monotonic() seconds; default: the one given to the ClipSource) bounds
        the cut: past it the cut stops with DEADLINE_EXCEEDED. Raises only ClipUnavailable.
        """
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise ClipUnavailable(ClipReason.INVALID_RANGE, f"bad range [{start}, {end}]")
        if end - start > max_clip_s:
            raise ClipUnavailable(
                ClipReason.CLIP_TOO_LONG, f"{end - start:.1f}s is over the {max_clip_s}s cap"
            )
        request = _CutRequest(start, end, Path(out_path), exact, max_preroll_s)
        self._opened.file.deadline = deadline if deadline is not None else self._deadline
        try:
            with _as_clip_errors("cutting"):
                return self._cut_either_way(request)
        finally:
            f = self._opened.file
            f.deadline = None
            f.budget = None
            f.drop_except(self._keep if self._keep is not None else self.index.spans)

    def _cut_either_way(self, request: _CutRequest) -> ClipInfo:
        """The tables way first; a cut they cannot serve is done again the whole-moov way,
        what the miss read kept and counted in this clip's cost."""
        source = self.source
        requests0, bytes0 = source.requests, source.bytes_read
        try:
            return self._cut(request)
        except TablesCannotServe:
            if not isinstance(self._opened.index, TablesIndex):
                raise
        self._count(requests0, bytes0)
        requests0, bytes0 = source.requests, source.bytes_read
        self._opened.to_moov(self._max_index_bytes)
        self._keep = self._opened.file.regions
        self.index_path = "tables+moov"
        self._count(requests0, bytes0)
        return self._cut(request)

    def _count(self, requests0: int, bytes0: int) -> None:
        """Add what the source read since (requests0, bytes0) to the next clip's cost."""
        requests, read = self._pending
        self._pending = (
            requests + self.source.requests - requests0,
            read + self.source.bytes_read - bytes0,
        )

    def _cut(self, request: _CutRequest) -> ClipInfo:
        """One cut: plan -> fetch -> demux -> write (and read back)."""
        opened, start = self._opened, request.start
        opened.file.check_deadline()
        duration = self.duration
        if start >= duration:
            raise ClipUnavailable(
                ClipReason.START_BEYOND_DURATION, f"start {start}s >= duration {duration:.3f}s"
            )
        end = min(request.end, duration)
        requests0, bytes0 = self.source.requests, self.source.bytes_read
        t0 = time.perf_counter()
        cut_plan = plan(
            opened.index,
            opened.streams,
            start,
            end,
            file_size=self.index.size,
            max_preroll_s=request.max_preroll_s,
        )
        try:
            demux, seek_ts = self._fetch(cut_plan, start)
            t_fetch = time.perf_counter()
            got = demux.collect(seek_ts, start, end, request.max_preroll_s, cut_plan.last_dts)
            if opened.fragmented and got.audio:
                fragment_audio(opened.fragments, demux, opened.layout.first("moov"), got)
            written = self._write(demux, got, request)
        except av.FFmpegError as error:
            if not isinstance(opened.index, TablesIndex):
                raise
            raise TablesCannotServe(f"the demuxer or muxer refused the window: {error}") from error
        t_done = time.perf_counter()
        return self._info(request, end, written, (requests0, bytes0), (t0, t_fetch, t_done))

    def _fetch(self, cut_plan: CutPlan, start: float) -> tuple[Demux, int]:
        """Hold the plan's bytes and ready a demuxer over them; where it seeks."""
        opened = self._opened
        index = opened.index
        if isinstance(index, TablesIndex):
            return opened.open_window(cut_plan), cut_plan.seek_ts
        f = opened.file
        f.budget = cut_plan.budget
        fetch(f, cut_plan.spans)
        if isinstance(index, FragmentIndex):
            for lo, hi in cut_plan.spans:  # planned reads start at a moof (from tfra or sidx)
                check_chain(f, lo, hi, opened.fragments.checked)
            self._fresh_fragment_demuxer()
            seek_ts = keyframe_seek(
                opened.fragments, cut_plan, opened.streams.video, index.tfra_times
            )
            return Demux(opened.container, opened.streams, f.check_deadline, True), seek_ts
        self._reopen_if_blanked(cut_plan.spans)
        demux = Demux(opened.container, opened.streams, f.check_deadline, False, index.ctts)
        return demux, cut_plan.seek_ts

    def _reopen_if_blanked(self, spans: tuple[tuple[int, int], ...]) -> None:
        """A clip reaching into what the open's probe saw as blanks gets a fresh demuxer.

        FFmpeg's I/O buffer may keep what it last read and serve a seek inside it from there.
        The tests (tests/unit/clipping) see no cut served those blanks, but nothing promises
        FFmpeg never will, and being sure is cheap: only clips at the very start of a file
        pay it (a re-parse of the index, no extra request).
        """
        f = self._opened.file
        if not spans or min(a for a, _ in spans) >= f.blanked_until:
            return
        f.blanked_until = 0
        self._opened.reopen()

    def _fresh_fragment_demuxer(self) -> None:
        """A fragmented source's second and later cuts get a demuxer of their own.

        FFmpeg adds each fragment it parses to one index and takes a packet's duration from
        the next entry: after an earlier cut's fragments, the last packet before a fragment
        it has not read lasts until that later cut (an audio packet of 2 s, a 4 s clip whose
        container said 5.9 s). A demuxer opened on what the open and this cut hold sees the
        fragments in order, like a cold cut; it reads nothing more from the source.
        """
        if not self._cut_before:
            self._cut_before = True
            return
        self._opened.reopen()

    def _write(self, demux: Demux, got: Packets, request: _CutRequest) -> Written:
        opened = self._opened
        index = opened.index
        boxes = tuple((b.offset, b.size) for b in opened.layout.boxes if b.kind in INDEX_BOXES)
        clip = Clip(got, demux.streams, request.start, request.exact, opened.fragmented, boxes)

        def last_samples() -> dict[int, LastSample]:
            return {} if isinstance(index, FragmentIndex) else index.last_samples

        return write(clip, request.out_path, last_samples, opened.file.check_deadline)

    def _info(
        self,
        request: _CutRequest,
        end: float,
        written: Written,
        read0: tuple[int, int],
        times: tuple[float, float, float],
    ) -> ClipInfo:
        """The clip's ClipInfo: its cost is what the source read since `read0`, and what
        the open (for the first clip) or a missed cut read before it."""
        extra_requests, extra_bytes = self._pending
        self._pending = (0, 0)
        v, (t0, t_fetch, t_done) = self._opened.streams.video, times
        return ClipInfo(
            path=written.path,
            requested_start=request.start,
            requested_end=end,
            start=written.start,
            end=written.end,
            size=written.size,
            requests=self.source.requests - read0[0] + extra_requests,
            bytes_read=self.source.bytes_read - read0[1] + extra_bytes,
            keyframe_snapped=not request.exact and written.start < request.start - EPS,
            exact=request.exact,
            index_cached=self.index_cached,
            video_codec=codec_name(v),
            codec_tag=str(v.codec_tag),
            has_audio=written.has_audio,
            dropped_tracks=self._opened.streams.dropped,
            index_path=self.index_path,
            timings_ms={
                "open": round(self._opened.open_ms, 1),
                "fetch": round((t_fetch - t0) * 1000, 1),
                "remux": round((t_done - t_fetch) * 1000, 1),
            },
        )


def cut_clip(
    source: RangeSource,
    start: float,
    end: float,
    out_path: str | Path,
    *,
    exact: bool = False,
    index_cache: IndexCache | None = None,
    max_clip_s: float = DEFAULT_MAX_CLIP_S,
    max_preroll_s: float = DEFAULT_MAX_PREROLL_S,
    max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES,
    deadline: float | None = None,
    use_tables: bool = True,
) -> ClipInfo:
    """Open `source`, cut one clip, close. Raises ClipUnavailable with a stable reason."""
    with ClipSource(
        source,
        index_cache=index_cache,
        max_index_bytes=max_index_bytes,
        deadline=deadline,
        use_tables=use_tables,
    ) as clips:
        return clips.cut(
            start, end, out_path, exact=exact, max_clip_s=max_clip_s, max_preroll_s=max_preroll_s
        )
