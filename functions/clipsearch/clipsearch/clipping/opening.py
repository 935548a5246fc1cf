"""Opening a source: its index from the cache or walked cold, its moofs guarded, its moov
parsed into tables when they reproduce it, and the demuxer opened over what is held.

`open_source` tries the tables way first; tables that cannot serve even the open
(`TablesCannotServe`) are forgotten (a cached index is dropped) and the source is opened
again with the demuxer parsing the whole moov.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import av

from clipsearch.clipping.boxes import Layout, check_box, walk
from clipsearch.clipping.demux import Demux
from clipsearch.clipping.errors import ClipReason, ClipUnavailable, TablesCannotServe
from clipsearch.clipping.fragmented import Fragments, guard_fragments
from clipsearch.clipping.index import Box, IndexCache, SourceIndex
from clipsearch.clipping.movie import Movie, parse_movie
from clipsearch.clipping.plan import CutPlan, FragmentIndex, MoovIndex, Span, TablesIndex
from clipsearch.clipping.planner import merge_spans
from clipsearch.clipping.process import release_free_memory
from clipsearch.clipping.reader import SparseFile
from clipsearch.clipping.samples import Unsupported
from clipsearch.clipping.sources import RangeSource
from clipsearch.clipping.streams import Streams, take_streams
from clipsearch.clipping.synthetic import calibrate, outside_moov, synthetic_file, window_bounds

OPEN_SLACK_BYTES = 12 * 1024 * 1024  # what an open may fetch beyond its index cap
MERGE_GAP_MIN = 64 * 1024  # spans closer than this (or MERGE_GAP_SHARE of the clip) share
MERGE_GAP_SHARE = 0.05  # one request: reading a small gap is cheaper than another round trip
INDEX_SLACK_BYTES = 2 * 1024 * 1024  # what the held index may exceed the cap by

Blanks = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class OpenRequest:
    """How to open a source: its cache, its index cap, its deadline, whether tables may serve."""

    source: RangeSource
    cache: IndexCache | None
    max_index_bytes: int
    deadline: float | None
    use_tables: bool


@dataclass
class Opened:
    """A source as opened: every field is set and valid until the source is closed.

    `file`, `container` and `streams` are the demuxer a cut reads through (a cut may open
    another over the same source: `reopen`, `open_window`, `to_moov`); `index` is what the
    planner reads (`plan.py`), and says which way the source is cut. `fragments` holds the
    moofs checked in the file the walk read (none unless the source has fragments).
    """

    source: RangeSource
    layout: Layout
    source_index: SourceIndex
    index_cached: bool
    file: SparseFile
    container: Any
    streams: Streams
    index: MoovIndex | TablesIndex | FragmentIndex
    fragments: Fragments
    cost: tuple[int, int]  # (requests, bytes) the open read
    open_ms: float

    @property
    def fragmented(self) -> bool:
        return self.layout.kind == "fragmented"

    @property
    def tfra_times(self) -> str:
        return self.index.tfra_times if isinstance(self.index, FragmentIndex) else ""

    def reopen(self, blanks: Blanks = ()) -> None:
        """A fresh demuxer over the file as held: it reads nothing more from the source."""
        _close(self.container)
        self.container = av_open(self.file, blanks, self.tfra_times, self.fragmented)
        movie = self.index.movie if isinstance(self.index, TablesIndex) else None
        f, layout = self.file, self.layout
        self.streams = take_streams(self.container, lambda: sample_entries(f, layout, movie))

    def open_window(self, plan: CutPlan) -> Demux:
        """A demuxer over a synthetic index of the plan's windows, the planned bytes fetched
        first (so the open's probe is not answered with blanks where the clip reads)."""
        index = self.index
        assert isinstance(index, TablesIndex)
        assert plan.windows is not None
        old = self.file
        moov = index_moov(self.layout)
        spans = self.source_index.spans
        self.file, ctts = synthetic_file(
            self.source, index.movie, moov, spans, plan.windows, old.source_size
        )
        self.file.deadline, self.file.budget = old.deadline, plan.budget
        fetch(self.file, plan.spans)
        self.reopen(blanks_for(self.layout, True))
        bounds = window_bounds(index, self.streams, plan.windows)
        return Demux(self.container, self.streams, self.file.check_deadline, False, ctts, bounds)

    def to_moov(self, max_index_bytes: int) -> None:
        """Leave the tables for this source: fetch its moov and let FFmpeg parse it whole.
        What a missed cut fetched is kept, less the `free` header and the synthetic tail."""
        moov = index_moov(self.layout)
        size = self.file.source_size
        held = [
            (max(o, 0), d[: max(0, min(len(d), size - o))])
            for o, d in self.file.regions
            if o < size and (o + len(d) <= moov.offset or o >= moov.end)
        ]
        f = SparseFile(self.source, size=size, regions=tuple((o, d) for o, d in held if d))
        f.deadline = self.file.deadline
        f.budget = max_index_bytes + OPEN_SLACK_BYTES
        f.ensure(moov.offset, moov.end)
        check_box(f.peek(moov.offset, moov.size), "moov", f.size)
        self.file = f
        self.index = moov_index(f, self.layout)
        self.reopen(media_payloads(self.layout))


def fetch(f: SparseFile, spans: Iterable[Span]) -> None:
    """Hold the spans, merged where a gap is cheaper to read than another request."""
    for a, b in merge_spans(list(spans), MERGE_GAP_MIN, MERGE_GAP_SHARE):
        f.ensure(a, b)


def container_options(tfra_times: str, fragmented: bool) -> dict[str, str]:
    """Fragmented files: seek with the mfra's times instead of walking every fragment (only
    for an mfra that passed `mfra_is_sound`), and seek the other streams to the chosen video
    sample (else audio's own fragment lookup can move the read position one fragment
    earlier); `tfra_times` says how to read the tfra times (`FragmentIndex`). Indexed files
    seek every stream on its own. The smallest probe: one packet, whose bytes are blanked
    (`SparseFile.serving_blanks`); the sample description has the rest."""
    individually = "0" if fragmented else "1"
    options = {"seek_streams_individually": individually, "probesize": "32", "analyzeduration": "0"}
    if tfra_times:
        options["use_mfra_for"] = tfra_times
    return options


def media_payloads(layout: Layout) -> Blanks:
    """Sample data the open may probe without fetching: mdat bodies of an indexed (moov) file.

    Fragmented files are excluded: their demuxer reads each moof, which must be real bytes.
    """
    if layout.kind == "fragmented":
        return ()
    return tuple((b.offset + 16, b.end) for b in layout.boxes if b.kind == "mdat")


def av_open(f: SparseFile, blanks: Blanks, tfra_times: str, fragmented: bool) -> Any:
    """Open the demuxer; its probe reads inside `blanks` are answered with zeros."""
    try:
        with f.serving_blanks(blanks):
            options = container_options(tfra_times, fragmented)
            return av.open(f, "r", format="mp4", container_options=options)
    except ClipUnavailable:
        raise
    except (av.FFmpegError, ValueError, OSError) as error:
        raise ClipUnavailable(
            ClipReason.UNSUPPORTED_CONTAINER, f"demuxer refused the source: {error}"
        ) from None


def sample_entries(f: SparseFile, layout: Layout, movie: Movie | None) -> bytes | None:
    """Bytes holding the video's sample description: the tables' skeleton, else the moov."""
    if movie is not None:
        return movie.skeleton
    moov = layout.first("moov")
    return None if moov is None else f.peek(moov.offset, moov.size)


def blanks_for(layout: Layout, tables: bool) -> Blanks:
    """What the open may read as zeros: the media payloads, and with a synthetic index the
    old moov's body, a `free` box the demuxer's buffer reads into."""
    blanks = media_payloads(layout)
    if tables:
        moov = index_moov(layout)
        blanks = tuple(sorted([*blanks, (moov.offset + 8, moov.end)]))
    return blanks


def open_source(request: OpenRequest) -> Opened:
    """The tables way when it can serve the open, else the whole-moov way."""
    try:
        return _open(request, request.use_tables)
    except TablesCannotServe:
        if not request.use_tables:
            raise
    return _open(request, False)


def _cached(request: OpenRequest) -> SourceIndex | None:
    source, cache = request.source, request.cache
    key = source.cache_key
    cached = cache.get(key) if cache is not None and key else None
    if cached is not None and source.size is not None and cached.size != source.size:
        cache.discard(key)  # type: ignore[union-attr,arg-type]
        cached = None
    return cached


@dataclass(frozen=True)
class _Held:
    """What an open holds before its demuxer: the file, its layout, maybe its tables."""

    file: SparseFile
    layout: Layout
    cached: SourceIndex | None
    movie: Movie | None
    fragments: Fragments
    fragment_index: FragmentIndex | None


def _hold_index(request: OpenRequest, use_tables: bool) -> _Held:
    """The index from the cache, or walked cold (moofs guarded, the moov parsed to tables)."""
    source = request.source
    budget = request.max_index_bytes + OPEN_SLACK_BYTES
    f = SparseFile(source, size=source.size)
    f.deadline = request.deadline
    f.check_deadline()
    cached = _cached(request)
    movie: Movie | None = None
    if cached is not None:
        f = SparseFile(source, size=cached.size, regions=cached.spans)
        f.deadline = request.deadline
        layout = Layout(cached.layout, cached.boxes)
        movie = cached.movie if use_tables else None
    else:
        f.budget = budget
        layout = walk(f, max_index_bytes=request.max_index_bytes)
    fragments = Fragments(f)
    fragment_index = guard_fragments(fragments, layout) if movie is None else None
    if cached is None and use_tables:
        movie = _tables(f, layout)
    f.budget = budget
    return _Held(f, layout, cached, movie, fragments, fragment_index)


def _open(request: OpenRequest, use_tables: bool) -> Opened:
    """One attempt: the index held, then the demuxer over it (on a synthetic index when
    there are tables), the index cached, the streams taken and the index calibrated."""
    source = request.source
    requests0, bytes0 = source.requests, source.bytes_read
    started = time.perf_counter()
    held = _hold_index(request, use_tables)
    layout, movie, f = held.layout, held.movie, held.file
    container: Any = None
    try:
        spans = held.cached.spans if held.cached is not None else ()
        if movie is not None:
            moov = index_moov(layout)
            spans = spans if held.cached is not None else outside_moov(f.regions, moov)
            windows = [None] * len(movie.tracks)
            f = synthetic_file(source, movie, moov, spans, windows, f.source_size)[0]
            f.deadline = request.deadline
        tfra_times = held.fragment_index.tfra_times if held.fragment_index is not None else ""
        blanks = blanks_for(layout, movie is not None)
        container = av_open(f, blanks, tfra_times, layout.kind == "fragmented")
        source_index = held.cached
        if source_index is None:
            source_index = _index_of(
                request, f, layout, f.regions if movie is None else spans, movie
            )
        open_ms = (time.perf_counter() - started) * 1000
        cost = (source.requests - requests0, source.bytes_read - bytes0)
        streams = take_streams(container, lambda: sample_entries(f, layout, movie))
        index: MoovIndex | TablesIndex | FragmentIndex
        if movie is not None:
            index = calibrate(container, movie, streams.video)
        else:
            index = held.fragment_index or moov_index(f, layout)
    except TablesCannotServe:
        _close(container)
        if held.cached is not None and request.cache is not None and source.cache_key:
            request.cache.discard(source.cache_key)
        raise
    except BaseException:
        _close(container)
        raise
    cached = held.cached is not None
    return Opened(
        source,
        layout,
        source_index,
        cached,
        f,
        container,
        streams,
        index,
        held.fragments,
        cost,
        open_ms,
    )


def index_moov(layout: Layout) -> Box:
    moov = layout.first("moov")
    if moov is None:
        raise ClipUnavailable(ClipReason.UNSUPPORTED_CONTAINER, "no moov box")
    return moov


def moov_index(f: SparseFile, layout: Layout) -> MoovIndex:
    """What the cut reads off a moov the demuxer parses whole: from `f`, which holds it."""

    def moov() -> bytes | None:
        box = layout.first("moov")
        if box is None or f.gaps(box.offset, box.end):
            return None
        return f.peek(box.offset, box.size)

    return MoovIndex(moov)


def _index_of(
    request: OpenRequest,
    f: SparseFile,
    layout: Layout,
    regions: tuple[tuple[int, bytes], ...],
    movie: Movie | None,
) -> SourceIndex:
    """The index a cold open leaves to cache: the boxes, what it holds, the tables."""
    index = SourceIndex(f.source_size, layout.kind, layout.boxes, regions, movie)
    if index.nbytes > request.max_index_bytes + INDEX_SLACK_BYTES:
        raise ClipUnavailable(ClipReason.INDEX_TOO_LARGE, f"index spans are {index.nbytes} bytes")
    key = request.source.cache_key
    if request.cache is not None and key:
        request.cache.put(key, index)
    return index


def _tables(f: SparseFile, layout: Layout) -> Movie | None:
    """The moov as tables, or None: a layout the synthetic index does not reproduce
    (fragments, negative composition offsets, an edit list of several edits, ...), which
    is cut the whole way. The first sight of a source pays this parse once."""
    if layout.kind == "fragmented" or f.on_demand is not None:
        return None
    moov = layout.first("moov")
    if moov is None or f.gaps(moov.offset, moov.end):
        return None
    for box in layout.boxes:  # a box "to the end of the file" would swallow the tail
        held = box.kind != "moov" and not f.gaps(box.offset, box.offset + 4)
        if held and f.peek(box.offset, 4) == bytes(4):
            return None
    try:
        return parse_movie(f.view(moov.offset, moov.size), f.size)
    except Unsupported:
        return None  # FFmpeg's own parse then, behind boxes.check_box
    finally:
        release_free_memory()


def _close(container: Any) -> None:
    if container is not None:
        with contextlib.suppress(Exception):
            container.close()
