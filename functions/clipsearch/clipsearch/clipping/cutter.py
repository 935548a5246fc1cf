"""Cut [start, end] out of a remote MP4 by stream copy, reading only the index and the clip.

`ClipSource` opens a source once (index from the cache, or walked and fetched cold) and cuts
any number of clips from it; `cut_clip` is the one-shot form. Each cut plans the byte spans
the clip needs from the demuxer's index entries, fetches them in as few ranged requests as
possible, remuxes with PyAV into a faststart MP4 written through a temp file, and reads the
written clip back (`_self_check`) before it is kept.

The source is untrusted: every outcome is a ClipInfo or a ClipUnavailable with a reason.
Parsers bound what they read (boxes.py), reads have a deadline and a byte budget
(reader.py), and any other exception is turned into ClipUnavailable with no local path in it.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import functools
import itertools
import math
import re
import statistics
import struct
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av

from clipsearch.clipping import boxes
from clipsearch.clipping.boxes import (
    Layout,
    check_box,
    check_chain,
    first_sample,
    first_sample_times,
    has_fragments,
    mfra_is_sound,
    parse_sidx,
    parse_tfra,
    random_access_nal,
    separate_moofs,
    video_sample_entry,
    video_track_id,
    vpcc_pixel_format,
    walk,
)
from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.fragments import (
    FragmentSample,
    TrackDefaults,
    fragment_samples,
    samples_span,
    track_defaults,
)
from clipsearch.clipping.index import Box, IndexCache, SourceIndex
from clipsearch.clipping.mux import write_clip
from clipsearch.clipping.planner import (
    NEXT_SHOWN_SCAN,
    EntriesIndex,
    TableIndex,
    closure,
    merge_spans,
    plan_audio,
    plan_video,
    window,
)
from clipsearch.clipping.reader import SparseFile
from clipsearch.clipping.sources import RangeSource
from clipsearch.clipping.tables import HEAD_SAMPLES, Movie, Unsupported, parse_movie
from clipsearch.clipping.verify import codec_name as _codec_name
from clipsearch.clipping.verify import self_check

DEFAULT_MAX_CLIP_S = 600.0
DEFAULT_MAX_PREROLL_S = 60.0  # keyframe snapping may start the clip at most this early
DEFAULT_MAX_INDEX_BYTES = 64 * 1024 * 1024
AUDIO_MARGIN_S = 0.5
# Indexed (moov) files seek each stream on its own: the audio restarts at its sample at or
# before the keyframe's decode time, wherever it is stored. (Replaying the read order up to
# the keyframe instead, as fragmented files must, skipped the audio an interleaved file
# stores just before the keyframe: clips whose audio started up to 0.46 s late.)
# Audio is read until it passes the clip's last video frame, which B-frame reordering puts
# a few frames past `end`.
AUDIO_TAIL_FRAMES = 4
MERGE_GAP_MIN = 64 * 1024  # spans closer than this (or MERGE_GAP_SHARE of the clip) share
MERGE_GAP_SHARE = 0.05  # one request: reading a small gap is cheaper than another round trip
FRAGMENT_PEEK = 64 * 1024  # the next fragment's moof, to see the first packet past `end`
# Read budgets: what a cut may fetch beyond its plan, and what a fragmented plan may span
# relative to the clip's share of the file, before it is refused instead of read.
CUT_SLACK_BYTES = 16 * 1024 * 1024
OPEN_SLACK_BYTES = 12 * 1024 * 1024
FRAGMENT_PLAN_MIN = 16 * 1024 * 1024
FRAGMENT_PLAN_FACTOR = 8
FFMPEG_MAX_ALLOC = 96 * 1024 * 1024
MAX_PACKETS = 200_000  # per cut: 600 s of 120 fps video plus audio, with room
MAX_VIDEO_GAP_S = 2.0  # a jump in decode time this large inside a clip means a bad seek
MAX_AUDIO_TRACKS = 8  # carried into a clip; more are named in dropped_tracks
MAX_FRAGMENT_STEPS = 64  # fragments looked back through for one starting with a keyframe
MOOFS_BEHIND = 4  # moofs looked back through for the one holding an audio sample (one per track)
MAX_RETIME_S = 1.0  # an audio packet's trun time this far from FFmpeg's, or this long: malformed
# A synthetic index (tables.py) holds the clip's samples and this much more around them: the
# keyframes a cut may step back to (from recovery points it cannot start at) and, past the
# plan, room for the closing scan; the audio, a second either side of the video.
WINDOW_TAIL = 4 * NEXT_SHOWN_SCAN + 2  # the closing scan reads up to 2 scans past the clip
SEEK_ATTEMPTS = 6  # keyframes a cut steps back through to find one a decoder can start at
WINDOW_AUDIO_S = 1.0
_EPS = 1e-6
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
    # usual way), "moov" (the whole moov, for the layouts tables.py does not reproduce), or
    # "tables+moov" (the window missed: cut again the whole way).
    index_path: str = "moov"


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


def _container_options(use_mfra: str, fragmented: bool) -> dict[str, str]:
    # Fragmented files: seek with the mfra's times instead of walking every fragment (only
    # for an mfra that passed `mfra_is_sound`), and seek the other streams to the chosen video
    # sample (else audio's own fragment lookup can move the read position one fragment
    # earlier); `use_mfra` says how to read the tfra times (`ClipSource._tfra_times`).
    # Indexed files seek every stream on its own (see above). The smallest probe: one
    # packet, whose bytes we blank (see `SparseFile.serving_blanks`); the sample description
    # has the rest.
    individually = "0" if fragmented else "1"
    options = {"seek_streams_individually": individually, "probesize": "32", "analyzeduration": "0"}
    if use_mfra:
        options["use_mfra_for"] = use_mfra
    return options


def _media_payloads(layout: Layout) -> tuple[tuple[int, int], ...]:
    """Sample data the open may probe without fetching: mdat bodies of an indexed (moov) file.

    Fragmented files are excluded: their demuxer reads each moof, which must be real bytes.
    """
    if layout.kind == "fragmented":
        return ()
    return tuple((b.offset + 16, b.end) for b in layout.boxes if b.kind == "mdat")


@functools.cache
def _cap_ffmpeg_allocations() -> bool:
    """Make FFmpeg refuse any single allocation over FFMPEG_MAX_ALLOC (av_max_alloc).

    A backstop behind our own bounds checks: a count FFmpeg trusts then fails its malloc
    (an error we turn into a fallback) instead of growing the process by gigabytes. The
    limit is process-wide and far above what a 10 h source's index needs (~26 MB).
    """
    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    for lib in sorted(libs.glob("libavutil-*.so*")):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(str(lib)).av_max_alloc(ctypes.c_size_t(FFMPEG_MAX_ALLOC))
            return True
    return False


@functools.cache
def _libc() -> Any:
    with contextlib.suppress(OSError):
        return ctypes.CDLL("libc.so.6")
    return None


def _release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim).

    Parsing a 10 h moov builds and drops tens of MB of temporary arrays; glibc keeps those
    pages, so the instance would carry them into every later event. Costs ~1 ms.
    """
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)


def _av_open(
    f: SparseFile, blanks: tuple[tuple[int, int], ...], use_mfra: str, fragmented: bool
) -> Any:
    """Open the demuxer; its probe reads inside `blanks` are answered with zeros."""
    try:
        with f.serving_blanks(blanks):
            options = _container_options(use_mfra, fragmented)
            return av.open(f, "r", format="mp4", container_options=options)
    except ClipUnavailable:
        raise
    except (av.FFmpegError, ValueError, OSError) as error:
        raise ClipUnavailable(
            ClipReason.UNSUPPORTED_CONTAINER, f"demuxer refused the source: {error}"
        ) from None


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
        """`use_tables=False` makes FFmpeg parse the whole moov, as before the tables: the
        reference the synthetic index is tested against, and a switch if it ever misleads."""
        _cap_ffmpeg_allocations()
        self.source = source
        self._cache = index_cache
        self._key = source.cache_key
        self._deadline = deadline
        self._container: Any = None
        self._file = SparseFile(source, size=source.size)
        self._checked_moofs: set[int] = set()
        self._use_mfra = ""  # "", or how FFmpeg should read the tfra times: "dts" | "pts"
        # The source as tables (tables.py): each cut then opens a synthetic index of its own
        # samples. `_shifts` maps each track's stored decode times to the demuxer's.
        self._movie: Movie | None = None
        self._shifts: dict[int, int] = {}
        self._windows: dict[int, tuple[int, int, bool]] = {}  # stream -> (lo, hi dts, cut short)
        self._synthetic = b""
        self._first_entry: int | None = None  # the demuxer's first video entry's timestamp
        self._max_index_bytes = max_index_bytes
        self._use_tables = use_tables
        self._keep: tuple[tuple[int, bytes], ...] | None = None  # held between cuts
        self._cut_before = False  # a fragmented source's demuxer holds an earlier cut's index
        self._sound_moofs: set[int] = set()  # moofs whose samples lie inside their mdat
        self.index_path = "moov"
        try:
            with _as_clip_errors("opening"):
                try:
                    self._open(max_index_bytes)
                except _TABLES_MISSED:
                    if self._movie is None:
                        raise
                    self._reopen_without_tables()
                    self._open(max_index_bytes)
        except BaseException:
            self.close()
            raise
        finally:
            self._file.deadline = None
            self._file.budget = None

    def _reopen_without_tables(self) -> None:
        """Tables that fail to open (a damaged sidecar, or ones our parse got wrong): forget
        them; a cached index is opened cold again, a cold one the whole-moov way."""
        with contextlib.suppress(Exception):
            self._container.close()
        if self.index_cached and self._cache is not None and self._key:
            self._cache.discard(self._key)
        self._use_tables = False  # whatever failed (a sidecar, a parse, a demuxer) may again
        self._movie, self._windows, self._synthetic = None, {}, b""
        self._file = SparseFile(self.source, size=self.source.size)
        self._checked_moofs = set()
        self.index_path = "moov"

    def _open(self, max_index_bytes: int) -> None:
        use_tables = self._use_tables
        source, index_cache = self.source, self._cache
        requests0, bytes0 = source.requests, source.bytes_read
        started = time.perf_counter()
        self._file.deadline = self._deadline
        self._file.check_deadline()
        cached = index_cache.get(self._key) if index_cache is not None and self._key else None
        if cached is not None and source.size is not None and cached.size != source.size:
            index_cache.discard(self._key)  # type: ignore[union-attr,arg-type]
            cached = None
        self.index_cached = cached is not None
        if cached is not None:
            self.index = cached
            self._file = SparseFile(source, size=cached.size, regions=cached.spans)
            self._file.deadline = self._deadline
            self._layout = Layout(cached.layout, cached.boxes)
            self._movie = cached.movie if use_tables else None
        else:
            self._file.budget = max_index_bytes + OPEN_SLACK_BYTES
            self._layout = walk(self._file, max_index_bytes=max_index_bytes)
        if self._movie is None:
            self._guard_fragments()
        if cached is None and use_tables:
            self._movie = self._tables()
        self._file.budget = max_index_bytes + OPEN_SLACK_BYTES
        if self._movie is not None:
            spans = cached.spans if cached is not None else self._outside_moov()
            self._file = self._synthetic_file(spans, [None] * len(self._movie.tracks))
            self._file.deadline = self._deadline
            self.index_path = "tables"
        self._container = _av_open(self._file, self._blanks(), self._use_mfra, self._fragmented)
        if cached is None:
            regions = self._file.regions if self._movie is None else spans
            self.index = SourceIndex(
                self._file.source_size, self._layout.kind, self._layout.boxes, regions, self._movie
            )
            if self.index.nbytes > max_index_bytes + 2 * 1024 * 1024:
                raise ClipUnavailable(
                    ClipReason.INDEX_TOO_LARGE, f"index spans are {self.index.nbytes} bytes"
                )
            if index_cache is not None and self._key:
                index_cache.put(self._key, self.index)
        self.open_ms = (time.perf_counter() - started) * 1000
        self._pending = (source.requests - requests0, source.bytes_read - bytes0)
        self._take_streams()
        if self._movie is not None:
            self._calibrate()

    def _tables(self) -> Movie | None:
        """The moov as tables, or None: a layout the synthetic index does not reproduce
        (fragments, negative composition offsets, an edit list of several edits, ...), which
        is cut the whole way. The first sight of a source pays this parse once."""
        if self._layout.kind == "fragmented" or self._file.on_demand is not None:
            return None
        moov = next((b for b in self._layout.boxes if b.kind == "moov"), None)
        if moov is None or self._file.gaps(moov.offset, moov.end):
            return None
        for box in self._layout.boxes:  # a box "to the end of the file" would swallow the tail
            held = box.kind != "moov" and not self._file.gaps(box.offset, box.offset + 4)
            if held and self._file.peek(box.offset, 4) == bytes(4):
                return None
        try:
            return parse_movie(self._file.view(moov.offset, moov.size), self._file.size)
        except (Unsupported, struct.error, IndexError, ValueError, ArithmeticError):
            return None  # FFmpeg's own parse then, behind boxes.check_box as before
        finally:
            _release_free_memory()

    def _outside_moov(self) -> tuple[tuple[int, bytes], ...]:
        """What the walk holds, less the moov (the tables replace it)."""
        moov = self.index_moov()
        out = []
        for offset, data in self._file.regions:
            end = offset + len(data)
            if end <= moov.offset or offset >= moov.end:
                out.append((offset, data))
                continue
            if offset < moov.offset:
                out.append((offset, data[: moov.offset - offset]))
            if end > moov.end:
                out.append((moov.end, data[moov.end - offset :]))
        return tuple(out)

    def index_moov(self) -> Box:
        moov = next((b for b in self._layout.boxes if b.kind == "moov"), None)
        if moov is None:
            raise ClipUnavailable(ClipReason.UNSUPPORTED_CONTAINER, "no moov box")
        return moov

    def _synthetic_file(
        self, spans: tuple[tuple[int, bytes], ...], windows: list[tuple[int, int] | None]
    ) -> SparseFile:
        """The source as the demuxer should see it: its moov renamed `free`, and after its
        end a synthetic moov of the windows' samples (which keep their offsets)."""
        assert self._movie is not None
        moov = self.index_moov()
        self._synthetic = self._movie.synthesize(windows)
        header = struct.pack(">I4s", moov.size, b"free")
        size = self._file.source_size
        regions = tuple(sorted([*spans, (moov.offset, header)]))
        f = SparseFile(self.source, size=size, regions=regions, tail=self._synthetic)
        self._ctts_synthetic = boxes.video_composition_offsets(self._synthetic)
        return f

    def _blanks(self) -> tuple[tuple[int, int], ...]:
        """What the open may read as zeros: the media payloads, and with a synthetic index
        the old moov's body, now a `free` box the demuxer's buffer reads into."""
        blanks = _media_payloads(self._layout)
        if self._movie is not None:
            moov = self.index_moov()
            blanks = tuple(sorted([*blanks, (moov.offset + 8, moov.end)]))
        return blanks

    def _open_window(
        self, windows: list[tuple[int, int] | None], spans: list[tuple[int, int]]
    ) -> None:
        """A demuxer over a synthetic index of the windows, the planned bytes fetched first
        (so the open's probe is not answered with blanks where the clip reads)."""
        assert self._movie is not None
        old = self._file
        self._file = self._synthetic_file(self.index.spans, windows)
        self._file.deadline, self._file.budget = old.deadline, old.budget
        self._file.on_demand = None
        self._fetch(spans)
        with contextlib.suppress(Exception):
            self._container.close()
        self._container = _av_open(self._file, self._blanks(), "", False)
        self._take_streams()
        self._windows = {}
        for stream in (self._video, *self._audios):
            track = self._track_of(stream)
            bounds = windows[track] if track is not None else None
            if bounds is None:
                continue
            t = self._movie.tracks[track]  # type: ignore[index]
            shift = self._shifts.get(track, 0)  # type: ignore[arg-type]
            first, last = bounds
            if first <= HEAD_SAMPLES:  # joined to the first samples, kept whole
                first = 0
            if last >= t.samples - HEAD_SAMPLES - 1:
                last = t.samples - 1
            short = last < t.samples - 1
            self._windows[stream.index] = (t.dts(first) + shift, t.dts(last) + shift, short)

    def _to_moov(self) -> None:
        """Leave the tables for this source: fetch its moov and let FFmpeg parse it whole."""
        moov = self.index_moov()
        requests0, bytes0 = self.source.requests, self.source.bytes_read
        size = self._file.source_size
        held = [  # what the miss fetched, less the `free` header and the synthetic tail
            (max(o, 0), d[: max(0, min(len(d), size - o))])
            for o, d in self._file.regions
            if o < size and (o + len(d) <= moov.offset or o >= moov.end)
        ]
        f = SparseFile(self.source, size=size, regions=tuple((o, d) for o, d in held if d))
        f.deadline = self._file.deadline
        f.budget = self._max_index_bytes + OPEN_SLACK_BYTES
        f.ensure(moov.offset, moov.end)
        check_box(f.peek(moov.offset, moov.size), "moov", f.size)
        self._file = f
        self._movie, self._windows, self._synthetic = None, {}, b""
        with contextlib.suppress(Exception):
            self._container.close()
        self._container = _av_open(f, _media_payloads(self._layout), "", False)
        self._take_streams()
        self._keep = f.regions
        self.index_path = "tables+moov"
        pending = self._pending
        self._pending = (
            pending[0] + self.source.requests - requests0,
            pending[1] + self.source.bytes_read - bytes0,
        )

    def _calibrate(self) -> None:
        """Each track's shift from stored to demuxer decode times, read off the entries of
        the samples the synthetic index shares with the source (its first ones)."""
        assert self._movie is not None
        for stream in self._container.streams:
            track = self._track_of(stream)
            if track is None:
                continue
            t = self._movie.tracks[track]
            if stream is self._video and len(stream.index_entries):
                self._first_entry = int(stream.index_entries[0].timestamp)
            offsets = {t.offset(i): i for i in range(min(HEAD_SAMPLES, t.samples))}
            for entry in stream.index_entries:
                i = offsets.get(int(entry.pos))
                if i is not None:
                    self._shifts[track] = int(entry.timestamp) - t.dts(i)
                    break
            else:
                self._shifts[track] = t.edit_shift

    def _track_of(self, stream: Any) -> int | None:
        """The movie track behind a demuxer stream (FFmpeg numbers them in trak order)."""
        if self._movie is None:
            return None
        tracks = self._movie.tracks
        index = int(stream.index)
        if index < len(tracks) and tracks[index].track_id == int(stream.id):
            return index
        return next((i for i, t in enumerate(tracks) if t.track_id == int(stream.id)), None)

    def _guard_fragments(self) -> None:
        """Fragmented: check the mfra before FFmpeg trusts it, and every moof it will parse.

        A moov that holds the first samples and announces fragments (`frag_keyframe` without
        `empty_moov`) is opened as an indexed file, FFmpeg walking its fragments from the
        first mdat on: each moof it reaches is checked the same way.
        """
        if self._layout.kind != "fragmented":
            moov = next((b for b in self._layout.boxes if b.kind == "moov"), None)
            mdat = next((b for b in self._layout.boxes if b.kind == "mdat"), None)
            if moov and mdat and has_fragments(self._file.peek(moov.offset, moov.size)):
                self._checked_moofs.add(mdat.offset)  # an anchor for the chain
                check_chain(self._file, mdat.offset, self._file.size, self._checked_moofs)
                self._file.on_demand = self._check_fragments
            return
        mfra = next((b for b in self._layout.boxes if b.kind == "mfra"), None)
        if mfra is not None and not mfra_is_sound(self._file.peek(mfra.offset, mfra.size)):
            raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, "mfra fails its bounds check")
        moof = next(b for b in self._layout.boxes if b.kind == "moof")
        check_chain(self._file, moof.offset, self._file.size, self._checked_moofs)
        if mfra is not None:
            self._use_mfra = self._tfra_times(mfra, moof)
        moov = next((b for b in self._layout.boxes if b.kind == "moov"), None)
        if moov is not None and separate_moofs(
            self._file.peek(moov.offset, moov.size), self._file.peek(moof.offset, moof.size)
        ):
            # A moof per track: FFmpeg's mfra seek does not load the target fragment (it lands
            # on a keyframe it read at the open, then jumps). It seeks right once it has walked
            # every fragment, which only a small file affords.
            if self._file.size > boxes.SMALL_FILE_BYTES:
                raise ClipUnavailable(
                    ClipReason.UNSUPPORTED_CONTAINER,
                    "fragmented with a moof per track: the demuxer cannot seek in it unread",
                )
            self._file.ensure(0, self._file.size)
            self._use_mfra = ""
        self._file.on_demand = self._check_fragments

    def _tfra_times(self, mfra: Box, moof: Box) -> str:
        """Whether this muxer's tfra times are decode ("dts") or presentation ("pts") times.

        FFmpeg takes a seeked fragment's first timestamp from the tfra, as the kind it is
        told; told wrong, every clip's times shift by the B-frame delay (FFmpeg 5.1's CMAF
        writes decode times, FFmpeg 8 presentation times). The first fragment tells which.
        """
        moov = next((b for b in self._layout.boxes if b.kind == "moov"), None)
        track = video_track_id(self._file.peek(moov.offset, moov.size)) if moov else None
        if track is None:
            return "dts"
        points = parse_tfra(self._file.peek(mfra.offset, mfra.size)).get(track) or []
        tfra_time = next((p.time for p in points if p.moof_offset == moof.offset), None)
        times = first_sample_times(self._file.peek(moof.offset, moof.size), track)
        if tfra_time is None or times is None:
            return "dts"
        decode_time, offset = times
        return "pts" if offset and tfra_time == decode_time + offset else "dts"

    def _check_fragments(self, start: int, end: int) -> None:
        """On a read the plan did not foresee: check the moofs from the nearest known box."""
        known = [o for o in self._checked_moofs if o <= start]
        if known:
            check_chain(self._file, max(known), end, self._checked_moofs)

    def _take_streams(self) -> None:
        streams = self._container.streams
        if not streams.video:
            raise ClipUnavailable(ClipReason.NO_VIDEO_STREAM, "the source has no video")
        self._video = streams.video[0]
        if self._video.codec_context is None:
            raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, "the video has no codec here")
        usable = [a for a in streams.audio if a.codec_context is not None and a.time_base]
        self._audios = usable[:MAX_AUDIO_TRACKS]
        self._audio = usable[0] if usable else None
        self._dropped = tuple(
            f"{st.type}#{st.index + 1} ({_codec_name(st)}"
            + (f", {st.language}" if getattr(st, "language", None) else "")
            + ")"
            for st in streams
            if st is not self._video and st not in self._audios and st.type in ("video", "audio")
        )
        if self._video.time_base is None or self._video.time_base <= 0:
            raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, "video has no time base")
        self._prepare_codec()

    def _prepare_codec(self) -> None:
        """What the muxer needs that a one-packet probe does not give: VP9's pixel format."""
        self._pix_fmt: str | None = None
        name = _codec_name(self._video)
        if name not in ("vp9", "av1"):
            return
        if self._movie is not None:  # the sample descriptions stay in the skeleton
            kind, children = video_sample_entry(self._movie.skeleton)
        else:
            moov = next((b for b in self._layout.boxes if b.kind == "moov"), None)
            if moov is None:
                raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, f"{name} without a moov")
            kind, children = video_sample_entry(self._file.peek(moov.offset, moov.size))
        config = {"vp9": "vpcC", "av1": "av1C"}[name]
        if config not in children:
            raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, f"{name} ({kind}) without {config}")
        if name == "vp9":
            self._pix_fmt = vpcc_pixel_format(children[config])
            if self._pix_fmt is None:
                raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, "vp9 with an unknown vpcC")

    def _reopen_if_blanked(self, spans: list[tuple[int, int]]) -> None:
        """A clip reaching into what the open's probe saw as blanks gets a fresh demuxer.

        FFmpeg's I/O buffer may keep what it last read and serve a seek inside it from there.
        We could not make it serve those blanks to a cut (tests/unit/clipping), but nothing
        promises it never will, and the price of being sure is small: only clips at the very
        start of a file pay it (a re-parse of the index, no extra request).
        """
        if not spans or min(a for a, _ in spans) >= self._file.blanked_until:
            return
        with contextlib.suppress(Exception):
            self._container.close()
        self._file.blanked_until = 0
        self._container = _av_open(self._file, (), self._use_mfra, self._fragmented)
        self._take_streams()

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
        with contextlib.suppress(Exception):
            self._container.close()
        self._container = _av_open(self._file, (), self._use_mfra, self._fragmented)
        self._take_streams()

    @property
    def _fragmented(self) -> bool:
        return self._layout.kind == "fragmented"

    @property
    def layout(self) -> str:
        return self._layout.kind

    @property
    def duration(self) -> float:
        """Seconds; for fragmented sources the demuxer only knows the fragments it read."""
        if self._layout.kind == "fragmented":
            return math.inf
        if self._container.duration is not None:
            return float(self._container.duration) / 1_000_000
        v = self._video
        if v.duration is not None and v.time_base is not None:
            return float(v.duration * v.time_base)
        return math.inf

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        self._file.drop_except(())

    def __enter__(self) -> ClipSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- planning ----------------------------------------------------------------------

    def plan(self, start: float, end: float) -> tuple[int, list[tuple[int, int]], int | None]:
        """(keyframe pts, byte spans, last video dts) of a clip of an indexed (moov) source."""
        if self._movie is not None:
            return self._plan_tables(start, end)[:3]
        return self._plan_moov(start, end)

    def _plan_moov(self, start: float, end: float) -> tuple[int, list[tuple[int, int]], int | None]:
        """(keyframe pts, byte spans, last video dts) from FFmpeg's index (planner.py)."""
        v = self._video
        samples = self._sample_times()
        ctts = self._composition_offsets() if samples is not None else None
        index = EntriesIndex(v.index_entries, None if ctts is None else ctts.at)
        plan = plan_video(
            index,
            start,
            end,
            time_base=v.time_base,
            start_time=v.start_time or 0,
            file_size=self.index.size,
        )
        spans = list(plan.spans)
        kf_dts_time = float(index.timestamp(plan.first) * v.time_base)
        for a in self._audios:
            until = plan.video_end + self._audio_tail_s()
            audio = EntriesIndex(a.index_entries, None)
            spans += plan_audio(audio, a.time_base, kf_dts_time, until, self.index.size)[2]
        return plan.keyframe_pts, spans, plan.last_dts

    def _plan_tables(
        self, start: float, end: float, max_preroll_s: float = DEFAULT_MAX_PREROLL_S
    ) -> tuple[int, list[tuple[int, int]], int | None, list[tuple[int, int] | None]]:
        """The same plan from our tables, and the window of samples each track's synthetic
        index holds (None: a track the clip does not use)."""
        assert self._movie is not None
        movie, v = self._movie, self._video
        vt = self._track_of(v)
        if vt is None:
            raise _OutsideWindow("the video stream has no track")
        video = TableIndex(movie.tracks[vt], self._shifts.get(vt, 0))
        tb = v.time_base
        plan = plan_video(
            video,
            start,
            end,
            time_base=tb,
            start_time=v.start_time or 0,
            file_size=self.index.size,
            first_timestamp=self._first_entry,
        )
        spans = list(plan.spans)
        windows: list[tuple[int, int] | None] = [None] * len(movie.tracks)
        # As far back as `_collect` may step, but no further than a keyframe could start the
        # clip (max_preroll_s): a source with keyframes minutes apart keeps its window small.
        earliest = video.search(
            math.floor((start - max_preroll_s - 1) / tb), backward=True, any_frame=True
        )
        w0 = plan.first
        for _ in range(SEEK_ATTEMPTS):
            before = video.track.sync_at_or_before(w0 - 1) if w0 else None
            if before is None or before < earliest:
                break
            w0 = before
        w1 = min(len(video) - 1, plan.last + WINDOW_TAIL)
        windows[vt] = (w0, w1)
        kf_dts_time = float(video.timestamp(plan.first) * tb)
        since = float(video.timestamp(w0) * tb) - WINDOW_AUDIO_S
        until = float(video.timestamp(w1) * tb) + WINDOW_AUDIO_S
        for a in self._audios:
            at = self._track_of(a)
            if at is None:
                raise _OutsideWindow("an audio stream has no track")
            audio = TableIndex(movie.tracks[at], self._shifts.get(at, 0))
            tail = plan.video_end + self._audio_tail_s()
            spans += plan_audio(audio, a.time_base, kf_dts_time, tail, self.index.size)[2]
            windows[at] = window(audio, since, until, a.time_base)
        return plan.keyframe_pts, spans, plan.last_dts, windows

    def _audio_tail_s(self) -> float:
        track = self._track_of(self._video)
        if self._movie is not None and track is not None:
            # The source's average rate (a synthetic index's placeholders would skew FFmpeg's).
            t = self._movie.tracks[track]
            last = t.samples - 1
            span = t.dts(last) + t.duration_of(last)
            return AUDIO_TAIL_FRAMES * span / t.samples / t.timescale if span else AUDIO_MARGIN_S
        rate = self._video.average_rate
        return AUDIO_TAIL_FRAMES / float(rate) if rate else AUDIO_MARGIN_S

    def _plan_fragmented(self, start: float, end: float) -> list[tuple[int, int]]:
        """Byte spans from the fragment index (mfra's tfra, else sidx)."""
        v = self._video
        size = self.index.size
        mfra = self.index.box("mfra")
        if mfra is not None:
            tracks = parse_tfra(self._file.peek(mfra.offset, mfra.size))
            spans = []
            for stream in (v, *self._audios):
                points = tracks.get(int(stream.id)) if stream is not None else None
                if not points or stream is None or stream.time_base is None:
                    continue
                s_ts, e_ts = start / stream.time_base, end / stream.time_base
                before = [p.moof_offset for p in points if p.time <= s_ts] or [
                    points[0].moof_offset
                ]
                after = [p.moof_offset for p in points if p.time > e_ts]
                hi = min(after) + FRAGMENT_PEEK if after else mfra.offset
                spans.append((before[-1], min(hi, size)))
            if spans:
                return spans
        sidx = self.index.box("sidx")
        if sidx is not None:
            timescale, subsegments = parse_sidx(
                self._file.peek(sidx.offset, sidx.size), sidx.offset
            )
            if subsegments and timescale:
                s, e = start * timescale, end * timescale
                first_seg = [x for x in subsegments if x.time <= s] or subsegments[:1]
                lo = first_seg[-1].offset
                later = [x for x in subsegments if x.time > e]
                hi = later[0].offset + FRAGMENT_PEEK if later else size
                return [(lo, min(hi, size))]
        return []

    def _keyframe_fragment(self, start: float, max_preroll_s: float) -> int:
        """Where to seek in a fragmented source: the latest fragment whose first video sample
        is a sync sample shown at or before `start` (tfra time), else `start` itself.

        FFmpeg only knows the keyframes of fragments it has read: seeking to a fragment that
        starts between keyframes (`frag_duration` cuts, separate moofs) landed on a keyframe
        of the first fragment, 30 s early, and then jumped. Seeking to the keyframe's own
        fragment lets it read on from there, in file order.
        """
        v = self._video
        tb = v.time_base
        s_ts = math.floor((start + _EPS) / tb)
        mfra = self.index.box("mfra")
        if mfra is None or not self._use_mfra:
            return int(s_ts)
        points = parse_tfra(self._file.peek(mfra.offset, mfra.size)).get(int(v.id)) or []
        earliest = s_ts - max_preroll_s / tb
        candidates = sorted((p for p in points if p.time <= s_ts), key=lambda p: p.time)
        for checked, point in enumerate(reversed(candidates)):
            if point.time < earliest or checked >= MAX_FRAGMENT_STEPS:
                break
            if not 0 < point.moof_offset < self.index.size:
                continue
            self._file.ensure(point.moof_offset, point.moof_offset + 16)
            check_chain(self._file, point.moof_offset, point.moof_offset + 1, self._checked_moofs)
            if point.moof_offset not in self._checked_moofs:
                continue  # not a moof
            header = self._file.peek(point.moof_offset, 8)
            moof = self._file.peek(point.moof_offset, int.from_bytes(header[:4], "big"))
            first = first_sample(moof, int(v.id))
            if first is None or first[2] is False:
                continue
            shown = point.time + (first[1] if self._use_mfra == "dts" else 0)
            if shown <= s_ts:
                return int(point.time)
        return int(s_ts)

    def _cap_fragment_plan(self, spans: list[tuple[int, int]], start: float, end: float) -> None:
        """Refuse a fragmented plan far larger than the clip's share of the file, unread."""
        planned = sum(max(0, b - a) for a, b in spans)
        duration = self._fragment_duration()
        share = self.index.size * (end - start) / duration if duration > 0 else 0
        cap = max(FRAGMENT_PLAN_MIN, FRAGMENT_PLAN_FACTOR * share)
        if planned > cap:
            raise ClipUnavailable(
                ClipReason.INDEX_TOO_LARGE,
                f"the fragment index leaves {planned} bytes to read for a "
                f"{end - start:.1f}s clip (cap {int(cap)})",
            )

    def _fragment_duration(self) -> float:
        """Seconds the fragment index spans (0 when unknown)."""
        mfra = self.index.box("mfra")
        v = self._video
        if mfra is not None and v.time_base is not None:
            points = parse_tfra(self._file.peek(mfra.offset, mfra.size)).get(int(v.id)) or []
            if points:
                return float(max(p.time for p in points) * v.time_base)
        sidx = self.index.box("sidx")
        if sidx is not None:
            timescale, refs = parse_sidx(self._file.peek(sidx.offset, sidx.size), sidx.offset)
            if refs and timescale:
                return refs[-1].time / timescale
        return 0.0

    def _fetch(self, spans: list[tuple[int, int]]) -> None:
        for a, b in merge_spans(spans, MERGE_GAP_MIN, MERGE_GAP_SHARE):
            self._file.ensure(a, b)

    # -- cutting -----------------------------------------------------------------------

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
        self._file.deadline = deadline if deadline is not None else self._deadline
        try:
            with _as_clip_errors("cutting"):
                requests0, bytes0 = self.source.requests, self.source.bytes_read
                try:
                    return self._cut(start, end, Path(out_path), exact, max_preroll_s)
                except _TABLES_MISSED:
                    # The synthetic index missed (or our tables failed on a hostile file):
                    # cut again with FFmpeg parsing the moov, as before the tables. What the
                    # miss read is kept, and counted in this clip's cost.
                    if self._movie is None:
                        raise
                    self._pending = (
                        self._pending[0] + self.source.requests - requests0,
                        self._pending[1] + self.source.bytes_read - bytes0,
                    )
                    self._to_moov()
                    return self._cut(start, end, Path(out_path), exact, max_preroll_s)
        finally:
            self._file.deadline = None
            self._file.budget = None
            self._file.drop_except(self._keep if self._keep is not None else self.index.spans)

    def _cut(
        self, start: float, end: float, out_path: Path, exact: bool, max_preroll_s: float
    ) -> ClipInfo:
        self._file.check_deadline()
        duration = self.duration
        if start >= duration:
            raise ClipUnavailable(
                ClipReason.START_BEYOND_DURATION, f"start {start}s >= duration {duration:.3f}s"
            )
        end = min(end, duration)
        requests0, bytes0 = self.source.requests, self.source.bytes_read
        t0 = time.perf_counter()
        v = self._video
        last_dts: int | None = None
        if self._layout.kind == "fragmented":
            spans = self._plan_fragmented(start, end)
            self._cap_fragment_plan(spans, start, end)
            self._file.budget = sum(b - a for a, b in spans) + CUT_SLACK_BYTES
            self._fetch(spans)
            for lo, hi in spans:  # planned reads start at a moof (from tfra or sidx)
                check_chain(self._file, lo, hi, self._checked_moofs)
            self._fresh_fragment_demuxer()
            seek_ts = self._keyframe_fragment(start, max_preroll_s)
        elif self._movie is not None:
            seek_ts, spans, last_dts, windows = self._plan_tables(start, end, max_preroll_s)
            self._file.budget = sum(b - a for a, b in spans) + CUT_SLACK_BYTES
            self._open_window(windows, spans)
            v = self._video
        else:
            seek_ts, spans, last_dts = self._plan_moov(start, end)
            self._file.budget = sum(b - a for a, b in spans) + CUT_SLACK_BYTES
            self._fetch(spans)
            self._reopen_if_blanked(spans)
            v = self._video
        t_fetch = time.perf_counter()
        packets = self._collect(seek_ts, start, end, max_preroll_s, last_dts)
        if self._fragmented and packets.audio:
            self._fragment_audio(packets)
        info = self._write(packets, start, end, out_path, exact)
        t_done = time.perf_counter()
        extra_requests, extra_bytes = self._pending
        self._pending = (0, 0)
        return ClipInfo(
            path=info.path,
            requested_start=start,
            requested_end=end,
            start=info.start,
            end=info.end,
            size=info.size,
            requests=self.source.requests - requests0 + extra_requests,
            bytes_read=self.source.bytes_read - bytes0 + extra_bytes,
            keyframe_snapped=not exact and info.start < start - _EPS,
            exact=exact,
            index_cached=self.index_cached,
            video_codec=_codec_name(v),
            codec_tag=str(v.codec_tag),
            has_audio=info.has_audio,
            dropped_tracks=self._dropped,
            index_path=self.index_path,
            timings_ms={
                "open": round(self.open_ms, 1),
                "fetch": round((t_fetch - t0) * 1000, 1),
                "remux": round((t_done - t_fetch) * 1000, 1),
            },
        )

    def _collect(
        self, seek_ts: int, start: float, end: float, max_preroll_s: float, last_dts: int | None
    ) -> _Packets:
        """Demux from the decodable keyframe at or before `start` to just past `end`."""
        v = self._video
        tb = v.time_base
        target = math.floor((start + _EPS) / tb)
        for _attempt in range(SEEK_ATTEMPTS):
            self._container.seek(seek_ts, stream=v, backward=True, any_frame=False)
            got = self._demux(start, end, last_dts)
            first = got.video[0] if got.video else None
            if first is None and got.video_seen:
                raise ClipUnavailable(
                    ClipReason.MALFORMED_SOURCE,
                    f"no keyframe among the {got.video_seen} video samples read from the seek",
                )
            if first is None:
                raise ClipUnavailable(ClipReason.START_BEYOND_DURATION, "no video at start")
            decodable = self._decodable(first)
            if (first.pts <= target or got.at_file_start) and decodable is not False:
                break
            if got.at_file_start:
                raise ClipUnavailable(
                    ClipReason.UNSUPPORTED_CODEC, "the first video sample is not a keyframe"
                )
            # The keyframe we landed on shows after `start`, or is a recovery point a decoder
            # cannot start from (stss marking x264 intra refresh): step back and retry.
            seek_ts = int(first.dts) - 1
        else:
            raise ClipUnavailable(
                ClipReason.UNSUPPORTED_CODEC,
                "no keyframe a decoder can start from (IDR) within reach before start",
            )
        got.video = self._from_latest_keyframe(got.video, target)
        first = got.video[0]
        kf_time = float(first.pts * tb)
        shown_until = max(float((p.pts + (p.duration or 0)) * tb) for p in got.video)
        if shown_until <= start:
            raise ClipUnavailable(
                ClipReason.START_BEYOND_DURATION, f"the video ends at {shown_until:.3f}s"
            )
        if start - kf_time > max_preroll_s:
            raise ClipUnavailable(
                ClipReason.CLIP_TOO_LONG,
                f"nearest keyframe is {start - kf_time:.1f}s before start (cap {max_preroll_s}s)",
            )
        _check_continuous(got.video, tb, self._fragmented)
        if not self._audios:
            got.audio = []
        return got

    def _fragment_audio(self, got: _Packets) -> None:
        """A fragmented source's audio: from the keyframe, with the source's own times.

        Each packet takes its decode time and duration from the trun of the moof holding it
        (`fragments.py`), found by its byte offset: FFmpeg's are inferred and, after a seek,
        not always the source's. A track whose audio starts later than the keyframe while
        the source has audio there (a moof per track, the audio's stored before the video's
        and skipped by the seek) is read again from its own seek, from what the cut holds.
        """
        defaults = self._fragment_defaults()
        for moof in sorted(self._checked_moofs):
            self._moof_samples(moof, None, defaults)  # every moof the cut holds places its
            # samples inside its mdat, or the cut is declined
        kf_time = float(got.video[0].pts * self._video.time_base)
        real_end = max(float((p.pts + (p.duration or 0)) * p.time_base) for p in got.video)
        for stream in self._audios:
            packets = [p for p in got.audio if p.stream is stream]
            self._retime(packets, defaults)
            frame = statistics.median([float(p.duration * p.time_base) for p in packets] or [0])
            first = min((float(p.pts * p.time_base) for p in packets), default=math.inf)
            entries = stream.index_entries
            has_earlier = len(entries) and float(entries[0].timestamp * stream.time_base) < first
            if first > kf_time + max(frame, 0.001) + _EPS and has_earlier:
                again = self._audio_from_its_own_seek(stream, kf_time, real_end)
                self._retime(again, defaults)
                if again and float(again[0].pts * stream.time_base) < first:
                    got.audio = [p for p in got.audio if p.stream is not stream] + again

    def _fragment_defaults(self) -> dict[int, TrackDefaults]:
        moov = self.index.box("moov")
        if moov is None or self._file.gaps(moov.offset, moov.end):
            return {}
        return track_defaults(self._file.peek(moov.offset, moov.size))

    def _retime(self, packets: list[Any], defaults: dict[int, TrackDefaults]) -> None:
        """Give each packet the decode time and duration its moof's trun states."""
        if not packets or int(packets[0].stream.id) not in defaults:
            return
        moofs = sorted(o for o in self._checked_moofs if not self._file.gaps(o, o + 8))
        parsed: dict[int, dict[int, FragmentSample]] = {}
        track = int(packets[0].stream.id)
        found: list[tuple[Any, FragmentSample]] = []
        for packet in packets:
            sample = None
            at = bisect.bisect_left(moofs, packet.pos) if packet.pos is not None else 0
            for moof in reversed(moofs[max(0, at - MOOFS_BEHIND) : at]):
                if moof not in parsed:
                    parsed[moof] = self._moof_samples(moof, track, defaults)
                sample = parsed[moof].get(int(packet.pos))
                if sample is not None:
                    break
            if sample is not None:
                found.append((packet, sample))
        for n, (packet, sample) in enumerate(found):
            duration = sample.duration
            if not duration and n + 1 < len(found):  # a trun that left it to the next sample
                duration = found[n + 1][1].decode_time - sample.decode_time
            moved = float(abs(sample.decode_time - packet.dts) * packet.time_base)
            if moved > MAX_RETIME_S or float(duration * packet.time_base) > MAX_RETIME_S:
                # FFmpeg's guesses are a frame or a fragment's step off, never seconds: such
                # a trun or tfdt is not a timeline anyone plays
                raise ClipUnavailable(
                    ClipReason.MALFORMED_SOURCE,
                    f"a moof's tfdt/trun put an audio packet {moved:.1f}s from where the "
                    f"demuxer reads it, lasting {float(duration * packet.time_base):.1f}s",
                )
            packet.dts = packet.pts = sample.decode_time
            if duration > 0:
                packet.duration = duration

    def _moof_samples(
        self, moof: int, track: int | None, defaults: dict[int, TrackDefaults]
    ) -> dict[int, FragmentSample]:
        """`track`'s samples in the moof at `moof`, once its tfhd and trun are seen to place
        every sample inside the mdat that follows it (else the demuxer reads other bytes as
        them, and differently after a seek than from the start)."""
        size = int.from_bytes(self._file.peek(moof, 4), "big")
        if self._file.gaps(moof, moof + size + 8):
            return {}
        data = self._file.peek(moof, size)
        mdat = self._file.peek(moof + size, 8)
        if track is None and moof in self._sound_moofs:
            return {}
        if mdat[4:8] == b"mdat":
            mdat_end = moof + size + int.from_bytes(mdat[:4], "big")
            first, end = samples_span(data, moof, defaults)
            if first < moof + size + 8 or end > mdat_end:
                raise ClipUnavailable(
                    ClipReason.MALFORMED_SOURCE,
                    f"a trun places samples outside the mdat after its moof at {moof}",
                )
        self._sound_moofs.add(moof)
        return {} if track is None else fragment_samples(data, moof, track, defaults)

    def _audio_from_its_own_seek(self, stream: Any, since: float, until: float) -> list[Any]:
        """`stream`'s packets from its own seek to `since`, up to `until` (source seconds)."""
        tb = stream.time_base
        others = [s for s in (self._video, *self._audios) if s is not stream]
        for other in others:
            other.discard = av.stream.Discard.all
        out: list[Any] = []
        seen: set[tuple[int, int]] = set()
        try:
            self._container.seek(math.floor(since / tb), stream=stream, backward=True)
            count = 0
            for packet in self._container.demux(stream):
                count = self._tick(count, packet)
                if not _fresh(packet, {}, seen):
                    continue
                if float(packet.pts * tb) >= until:
                    break
                out.append(packet)
        finally:
            for other in others:
                other.discard = av.stream.Discard.default
        return out

    def _from_latest_keyframe(self, video: list[Any], target: int) -> list[Any]:
        """Start at the latest decodable keyframe shown at or before `target`.

        The plan may land a GOP early (an edit list shifts the index's decode times); the
        packets read from there hold the later keyframe's GOP whole, so we start from it.
        """
        best = 0
        for i, packet in enumerate(video):
            if packet.pts > target:
                continue
            if packet.is_keyframe and i and self._decodable(packet) is not False:
                best = i
        return video[best:]

    def _decodable(self, packet: Any) -> bool | None:
        """Whether a decoder can start at this keyframe (None: cannot tell for this codec)."""
        v = self._video
        extradata = v.codec_context.extradata or b""
        name = _codec_name(v)
        length_size = 4
        if name == "h264" and len(extradata) > 4 and extradata[0] == 1:
            length_size = (extradata[4] & 3) + 1
        elif name == "hevc" and len(extradata) > 21 and extradata[0] == 1:
            length_size = (extradata[21] & 3) + 1
        return random_access_nal(name, bytes(packet), length_size)

    def _demux(self, start: float, end: float, last_dts: int | None) -> _Packets:
        """Video from the keyframe to just past `end`, then audio until it covers the video.

        Once the video is complete the video stream is discarded, so finishing the audio
        does not read the video samples stored among it.
        """
        try:
            return self._demux_packets(start, end, last_dts)
        finally:
            self._video.discard = av.stream.Discard.default

    def _tick(self, count: int, packet: Any) -> int:
        """Count a demuxed packet: bounded per cut, and the deadline checked every 64."""
        self._inside_window(packet)
        count += 1
        if count > MAX_PACKETS:
            raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, "too many packets for a clip")
        if count % 64 == 0:
            self._file.check_deadline()
        return count

    def _demux_packets(self, start: float, end: float, last_dts: int | None) -> _Packets:
        v, audios = self._video, self._audios
        tb = v.time_base
        end_ts = math.ceil((end - _EPS) / tb)
        got = _Packets()
        streams = [v, *audios]
        audio_done: set[int] = set()
        video_done = False
        first_kf_dts = self._video.index_entries[0].timestamp if len(v.index_entries) else None
        max_pts: int | None = None
        real_end_s = math.inf
        count = 0
        last_dts_seen: dict[int, int] = {}
        close_dts: int | None = None  # the clip runs on to here to be closed (_closing_dts)
        for packet in self._container.demux(*streams):
            count = self._tick(count, packet)
            if not _fresh(packet, last_dts_seen, self._seen_at(got, packet)):
                continue
            if packet.stream is v:
                if video_done:
                    if float(packet.dts * tb) > real_end_s + AUDIO_MARGIN_S:
                        break  # the audio ended early or is far away: stop reading
                    continue
                if not packet.is_keyframe and self._decodable(packet):
                    packet.is_keyframe = True  # an IDR the fragment's sample flags left unmarked
                got.video_seen += 1
                if not got.video:
                    if not packet.is_keyframe:
                        continue
                    got.at_file_start = first_kf_dts is not None and packet.dts <= first_kf_dts
                if (
                    close_dts is None
                    and packet.dts >= end_ts
                    and max_pts is not None
                    and packet.pts > max_pts
                ):
                    close_dts = self._closing_dts(got.video)
                    video_done = close_dts is None
                if not video_done:
                    got.video.append(packet)
                    max_pts = packet.pts if max_pts is None else max(max_pts, packet.pts)
                    video_done = (last_dts is not None and packet.dts >= last_dts) or (
                        close_dts is not None and packet.dts >= close_dts
                    )
                if video_done:
                    real_end_s = max(float((p.pts + (p.duration or 0)) * tb) for p in got.video)
                    v.discard = av.stream.Discard.all
            else:
                got.audio.append(packet)
                shown = float(packet.pts * packet.time_base)
                if video_done and shown >= real_end_s:
                    audio_done.add(packet.stream.index)  # this track covers the video
                if video_done and shown > real_end_s + AUDIO_MARGIN_S:
                    break  # another track ended early: read no further
            if video_done and len(audio_done) == len(audios):
                break
            if got.video and float(packet.dts * packet.time_base) > end + 60:
                break  # runaway guard: never read far past the clip
        else:
            self._window_exhausted(video_done, audio_done)
        return got

    def _seen_at(self, got: _Packets, packet: Any) -> set[tuple[int, int]] | None:
        """A fragmented source's audio is told apart by where it lies, not by its times."""
        return got.audio_at if self._fragmented and packet.stream is not self._video else None

    def _inside_window(self, packet: Any) -> None:
        """A synthetic index's packet from outside the clip's window is not the source's (a
        placeholder) or not planned for: the cut is done again the whole way."""
        bounds = self._windows.get(packet.stream.index) if self._windows else None
        if bounds is not None and packet.dts is not None:
            lo, hi, _ = bounds
            if not lo <= packet.dts <= hi:
                raise _OutsideWindow(f"stream {packet.stream.index} read at {packet.dts}")

    def _window_exhausted(self, video_done: bool, audio_done: set[int]) -> None:
        """The demux ran out of a synthetic index before the clip was complete."""
        for index, (_, _, short) in self._windows.items():
            done = video_done if index == self._video.index else index in audio_done
            if short and not done:
                raise _OutsideWindow(f"stream {index} ran past its window")

    def _write(
        self, got: _Packets, start: float, end: float, out_path: Path, exact: bool
    ) -> _Written:
        v = self._video
        tb = v.time_base
        kf_time = float(got.video[0].pts * tb)
        # Leading pictures shown before the keyframe (RASL) stay hidden, and so do frames the
        # source's own edit list hides (shown before the stream's start time).
        floor = kf_time
        if v.start_time is not None and float(v.start_time * tb) > kf_time + _EPS:
            floor = float(v.start_time * tb)
        origin = floor
        if exact:  # the frame on screen at `start`: an edit list hides the frames before it
            shown = [float(p.pts * tb) for p in got.video if floor - _EPS <= float(p.pts * tb)]
            before = [t for t in shown if t <= start + _EPS]
            origin = max(before) if before else floor  # a start before the first frame
        real_start = origin
        real_end = max(float((p.pts + (p.duration or 0)) * tb) for p in got.video)
        audio = [p for p in got.audio if kf_time - _EPS <= float(p.pts * p.time_base) < real_end]
        tracks = [a for a in self._audios if any(p.stream is a for p in audio)]
        if self._fragmented:
            for track in tracks:
                _check_audio_run([p for p in audio if p.stream is track])
        index = [(b.offset, b.size) for b in self._layout.boxes if b.kind in _INDEX_BOXES]
        _check_no_shared_bytes([*got.video, *audio], index)
        self._last_sample_durations(audio)
        for p in got.video[1:]:
            if p.is_keyframe and self._decodable(p) is False:
                # A recovery point (x264 intra refresh) marked sync: the clip's stss must not
                # list it, or a reader honouring the clip's edit list starts decoding there.
                p.is_keyframe = False
        write_clip(
            out_path,
            v,
            got.video,
            tracks,
            audio,
            origin,
            pix_fmt=self._pix_fmt,
            check=lambda path: self_check(
                path,
                codec=_codec_name(v),
                shown_s=real_end - real_start,
                audio_tracks=len(tracks),
                check_deadline=self._file.check_deadline,
            ),
        )
        return _Written(
            out_path, real_start, real_end, out_path.stat().st_size, has_audio=bool(tracks)
        )

    def _last_sample_durations(self, audio: list[Any]) -> None:
        """A track's last sample lasts what the source's stts says, not what the demuxer
        reports: FFmpeg 8 gives an MP3 track's last frame its full 1152 ticks where the stts
        (and the edit list) end it at 1105, and the clip would then play the encoder's
        padding. Neither the stream's duration (mdhd, which some muxers write short of the
        stts) nor the edit list says it; the stts does. From the tables, or the moov already
        held: no read, a few table entries per track."""
        if self._fragmented or not audio:
            return
        last = self._last_samples()
        for p in audio:
            found = last.get(int(p.stream.id))
            if (
                found is not None
                and p.pos == found.offset
                and found.delta > 0
                and p.time_base == Fraction(1, found.timescale)
            ):
                p.duration = found.delta

    def _last_samples(self) -> dict[int, boxes.LastSample]:
        """Per track id, the source's last sample (offset, stts duration); parsed once."""
        if self._movie is not None:
            return {
                t.track_id: boxes.LastSample(
                    t.offset(t.samples - 1), t.duration_of(t.samples - 1), t.timescale
                )
                for t in self._movie.tracks
                if t.samples
            }
        if not hasattr(self, "_last"):
            self._last: dict[int, boxes.LastSample] = {}
            moov = self.index.box("moov")
            if moov is not None and not self._file.gaps(moov.offset, moov.end):
                self._last = boxes.last_samples(self._file.peek(moov.offset, moov.size))
        return self._last

    def _closing_dts(self, video: list[Any]) -> int | None:
        """Where the clip must end so no source frame shows before its last one ends.

        A frame's stored duration is its decode-time step (stts), not its time on screen:
        with B-frames and a variable rate, a clip cut after the last frame shown before
        `end` can hold a frame whose stored end lies past the source's next frame (stored
        later, so missing from the clip). The clip then runs on in decode order until it is
        closed (`_closure`). Times come from the index and the ctts already held.

        Returns the decode time of the last sample to include, or None: the clip is closed
        as it stands (or the index cannot tell, and the clip ends as before).
        """
        if self._fragmented or not video:
            return None
        samples = self._sample_times()
        if samples is None:
            return None
        dts, pts = samples
        entries = self._video.index_entries
        shift: int | None = None
        last = -1
        for p in video:
            i = entries.search_timestamp(p.dts, backward=True, any_frame=True)
            rel = pts(i) if i >= 0 and dts(i) == p.dts else None
            if rel is None or (shift is not None and p.pts - rel != shift):
                return None  # entries do not map to samples one to one here
            shift = p.pts - rel
            last = max(last, i)
        if shift is None:
            return None
        shown_until = max(p.pts + (p.duration or 0) for p in video) - shift
        closed = closure(dts, pts, len(entries), last, shown_until)
        return None if closed is None or closed[0] == last else dts(closed[0])

    def _sample_times(self) -> tuple[Callable[[int], int], Callable[[int], int | None]] | None:
        """(decode time, decode time + ctts offset) of the video's sample `i` (index entry i)."""
        table = self._composition_offsets()
        entries = self._video.index_entries
        if table is None or not len(entries):
            return None

        def dts(i: int) -> int:
            return int(entries[i].timestamp)

        def pts(i: int) -> int | None:
            offset = table.at(i)
            return None if offset is None else int(entries[i].timestamp) + offset

        return dts, pts

    def _composition_offsets(self) -> boxes.CompositionOffsets | None:
        """The video's ctts from the moov already held (parsed once per open; no read)."""
        if self._movie is not None:  # the synthetic index's, whose samples the entries are
            return self._ctts_synthetic
        if not hasattr(self, "_ctts"):
            self._ctts: boxes.CompositionOffsets | None = None
            moov = self.index.box("moov")
            if moov is not None and not self._file.gaps(moov.offset, moov.end):
                self._ctts = boxes.video_composition_offsets(
                    self._file.peek(moov.offset, moov.size)
                )
        return self._ctts


def _fresh(
    packet: Any, last_dts_seen: dict[int, int], seen_at: set[tuple[int, int]] | None = None
) -> bool:
    """A packet with data and times, not one read twice (a fragment re-read after a seek).

    `seen_at` (fragmented audio): a repeat is a packet from the same byte offset. Its times
    may be FFmpeg's guess (`fragments.py`), which can make the next fragment's first packet
    look like the previous one's repeat.
    """
    if packet.size == 0 or packet.pts is None or packet.dts is None:
        return False
    index = packet.stream.index
    if seen_at is not None and packet.pos is not None and packet.pos >= 0:
        key = (index, int(packet.pos))
        if key in seen_at:
            return False
        seen_at.add(key)
        return True
    if packet.dts <= last_dts_seen.get(index, -(2**62)):
        return False
    last_dts_seen[index] = packet.dts
    return True


class _OutsideWindow(Exception):
    """A cut left the samples its synthetic index holds; it is done again the whole way."""


_TABLES_MISSED = (
    _OutsideWindow, Unsupported, LookupError, ValueError, ArithmeticError, TypeError,
    struct.error, av.FFmpegError,
)  # fmt: skip


def _check_continuous(video: list[Any], tb: Fraction, fragmented: bool) -> None:
    """Consecutive video packets are spaced like frames, not seconds apart (a bad seek).

    FFmpeg cannot seek into some fragment layouts (a moof per track, fragments not starting
    on keyframes): it landed on a keyframe of a fragment it had read and then jumped to the
    target, a clip that decodes cleanly and is wrong. Fragments are checked tighter: a
    missing one is a gap of its duration.
    """
    if len(video) < 3:
        return
    steps = [float((q.dts - p.dts) * tb) for p, q in itertools.pairwise(video)]
    typical = statistics.median(steps)
    worst = max(steps)
    limit = max(0.25, 4 * typical) if fragmented else max(MAX_VIDEO_GAP_S, 10 * typical)
    if min(steps) < 0:
        raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, "video decode times go backwards")
    if worst > limit:
        raise ClipUnavailable(
            ClipReason.UNSUPPORTED_CONTAINER if fragmented else ClipReason.MALFORMED_SOURCE,
            f"the demuxer could not seek here: the video jumps {worst:.2f}s inside the clip "
            f"(frames {typical:.3f}s apart)",
        )


def _check_audio_run(packets: list[Any]) -> None:
    """Each audio packet starts where the one before it ends (decode times from the trun).

    A clip is one flat run of samples: where the source's fragments overlap (a tfdt set a
    few ms before the previous fragment's end) or leave a gap, the muxer would shorten or
    stretch the packet before the join, and the clip would play the audio other than the
    source does. Such a source is declined, not cut wrong.
    """
    ordered = sorted(packets, key=lambda p: p.dts)
    for p, q in itertools.pairwise(ordered):
        step = q.dts - (p.dts + (p.duration or 0))
        if step:
            ms = float(abs(step) * p.time_base) * 1000
            raise ClipUnavailable(
                ClipReason.UNSUPPORTED_CONTAINER,
                f"the audio's fragments {'overlap' if step < 0 else 'leave a gap'} by "
                f"{ms:.1f} ms at {float(q.dts * q.time_base):.3f}s: a clip cannot play them "
                "as the source does",
            )


_INDEX_BOXES = frozenset({"ftyp", "styp", "moov", "moof", "mfra", "sidx"})


def _check_no_shared_bytes(packets: list[Any], index: list[tuple[int, int]] | None = None) -> None:
    """No two of the clip's samples, nor a sample and an index box (`index`: offset and
    size of the moov, moofs, ...), lie on the same bytes of the source.

    No muxer writes that; a sample table or trun that says so (a size or chunk offset that
    runs one sample into the next, or into the moov) is read one way from the file's start
    and another after a seek or from our synthetic index (which renames the moov), so no
    clip of it can be the source's.
    """
    spans = sorted(
        [(int(p.pos), int(p.size)) for p in packets if p.pos is not None and p.pos >= 0]
        + list(index or ())
    )
    for (a, n), (b, _) in itertools.pairwise(spans):
        if b < a + n:
            raise ClipUnavailable(
                ClipReason.MALFORMED_SOURCE,
                f"two samples share bytes at {b} of the source (one of {n} bytes from {a})",
            )


@dataclass
class _Packets:
    video: list[Any] = field(default_factory=list)
    audio: list[Any] = field(default_factory=list)
    at_file_start: bool = False
    video_seen: int = 0
    audio_at: set[tuple[int, int]] = field(default_factory=set)  # (stream, byte offset) read


@dataclass(frozen=True)
class _Written:
    path: Path
    start: float
    end: float
    size: int
    has_audio: bool


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
