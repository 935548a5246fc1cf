"""Cut [start, end] out of a remote MP4 by stream copy, reading only the index and the clip.

`ClipSource` opens a source once (index from the cache, or walked and fetched cold) and cuts
any number of clips from it; `cut_clip` is the one-shot form. Each cut plans the byte spans
the clip needs from the demuxer's index entries, fetches them in as few ranged requests as
possible, then remuxes with PyAV into a faststart MP4 written through a temp file.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av

from clipsearch.clipping.boxes import Layout, parse_sidx, parse_tfra, walk
from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.index import IndexCache, SourceIndex
from clipsearch.clipping.reader import SparseFile
from clipsearch.clipping.sources import RangeSource

DEFAULT_MAX_CLIP_S = 600.0
DEFAULT_MAX_PREROLL_S = 60.0  # keyframe snapping may start the clip at most this early
DEFAULT_MAX_INDEX_BYTES = 64 * 1024 * 1024
REORDER_MARGIN = 8  # extra video samples planned past `end` (B-frame reordering)
AUDIO_MARGIN_S = 0.5
# After a seek the demuxer replays its read order up to the keyframe, and that order takes
# samples within 1 s of decode time by file position. So the audio it reads next is what is
# stored after the keyframe (up to 1 s older: files whose audio lags in the file), not what
# is stored before it: only that is planned.
DEMUX_WINDOW_S = 1.0
# Audio is read until it passes the clip's last video frame, which B-frame reordering puts
# a few frames past `end`.
AUDIO_TAIL_FRAMES = 4
MERGE_GAP_MIN = 64 * 1024  # spans closer than this (or MERGE_GAP_SHARE of the clip) share
MERGE_GAP_SHARE = 0.05  # one request: reading a small gap is cheaper than another round trip
FRAGMENT_PEEK = 64 * 1024  # the next fragment's moof, to see the first packet past `end`
_EPS = 1e-6


@dataclass(frozen=True)
class ClipInfo:
    """What was cut: requested and real times (source timeline, seconds) and what it cost."""

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
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)


def _container_options() -> dict[str, str]:
    # Fragmented files: seek with the mfra's times instead of walking every fragment, and
    # seek the other streams to the chosen video sample (else audio's own fragment lookup
    # can move the read position one fragment earlier). The smallest probe: one packet, whose
    # bytes we blank (see `SparseFile.serving_blanks`); the sample description has the rest.
    return {
        "use_mfra_for": "pts",
        "seek_streams_individually": "0",
        "probesize": "32",
        "analyzeduration": "0",
    }


def _media_payloads(layout: Layout) -> tuple[tuple[int, int], ...]:
    """Sample data the open may probe without fetching: mdat bodies of an indexed (moov) file.

    Fragmented files are excluded: their demuxer reads each moof, which must be real bytes.
    """
    if layout.kind == "fragmented":
        return ()
    return tuple((b.offset + 16, b.end) for b in layout.boxes if b.kind == "mdat")


def _av_open(f: SparseFile, blanks: tuple[tuple[int, int], ...]) -> Any:
    """Open the demuxer; its probe reads inside `blanks` are answered with zeros."""
    try:
        with f.serving_blanks(blanks):
            return av.open(f, "r", format="mp4", container_options=_container_options())
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
    ) -> None:
        self.source = source
        self._cache = index_cache
        self._key = source.cache_key
        requests0, bytes0 = source.requests, source.bytes_read
        started = time.perf_counter()
        cached = index_cache.get(self._key) if index_cache is not None and self._key else None
        if cached is not None and source.size is not None and cached.size != source.size:
            index_cache.discard(self._key)  # type: ignore[union-attr,arg-type]
            cached = None
        self.index_cached = cached is not None
        if cached is not None:
            self.index = cached
            self._file = SparseFile(source, size=cached.size, regions=cached.spans)
            self._layout = Layout(cached.layout, cached.boxes)
            self._container = _av_open(self._file, _media_payloads(self._layout))
        else:
            self._file = SparseFile(source, size=source.size)
            self._layout = walk(self._file, max_index_bytes=max_index_bytes)
            self._container = _av_open(self._file, _media_payloads(self._layout))
            self.index = SourceIndex(
                self._file.size, self._layout.kind, self._layout.boxes, self._file.regions
            )
            if self.index.nbytes > max_index_bytes + 2 * 1024 * 1024:
                self.close()
                raise ClipUnavailable(
                    ClipReason.INDEX_TOO_LARGE, f"index spans are {self.index.nbytes} bytes"
                )
            if index_cache is not None and self._key:
                index_cache.put(self._key, self.index)
        self.open_ms = (time.perf_counter() - started) * 1000
        self._pending = (source.requests - requests0, source.bytes_read - bytes0)
        self._take_streams()

    def _take_streams(self) -> None:
        try:
            self._video = self._container.streams.video[0]
        except IndexError:
            self.close()
            raise ClipUnavailable(ClipReason.NO_VIDEO_STREAM, "the source has no video") from None
        audio = self._container.streams.audio
        self._audio = audio[0] if audio else None

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
        self._container = _av_open(self._file, ())
        self._take_streams()

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

    def _plan_moov(self, start: float, end: float) -> tuple[int, list[tuple[int, int]], int | None]:
        """(keyframe pts, byte spans, last video dts) from the demuxer's index entries.

        The last video dts is set when the next GOP starts within the reorder margin: that
        keyframe shows after everything the clip holds, so the clip ends before it and its
        bytes (the largest frame of a GOP) are not planned; the demuxer skips them too unless
        they fit FFmpeg's 32 KiB short-seek window, which it reads through instead.
        """
        v = self._video
        tb = v.time_base
        entries = v.index_entries
        if len(entries) == 0:
            raise ClipUnavailable(ClipReason.UNSUPPORTED_CONTAINER, "video index is empty")
        # Index timestamps are decode times; a keyframe shows `delay` later.
        delay = (v.start_time or 0) - entries[0].timestamp
        start_ts = math.floor(start / tb) - delay
        k = entries.search_timestamp(start_ts, backward=True, any_frame=False)
        if k < 0:
            k = entries.search_timestamp(start_ts, backward=False, any_frame=False)
            k = max(k, 0)
        j = entries.search_timestamp(math.ceil(end / tb), backward=True, any_frame=True)
        j = max(j, k)
        last = min(len(entries) - 1, j + REORDER_MARGIN)
        last_dts: int | None = None
        for i in range(j + 1, last + 1):
            if entries[i].is_keyframe:
                last, last_dts = i - 1, int(entries[i - 1].timestamp)
                break
        spans = [(e.pos, e.pos + e.size) for e in entries[k : last + 1]]
        # Seek by the keyframe's presentation time: lands on it whether the demuxer
        # compares decode or presentation times.
        keyframe_pts = int(entries[k].timestamp) + delay
        kf_time = float(keyframe_pts * tb)
        kf_dts_time = float(entries[k].timestamp * tb)
        kf_pos = entries[k].pos
        if self._audio is not None and self._audio.time_base is not None:
            a = self._audio
            atb = a.time_base
            aentries = a.index_entries
            if len(aentries):
                a0 = aentries.search_timestamp(
                    math.floor((kf_dts_time - DEMUX_WINDOW_S) / atb), backward=True, any_frame=True
                )
                a1 = aentries.search_timestamp(
                    math.ceil((end + self._audio_tail_s()) / atb), backward=True, any_frame=True
                )
                shown = math.floor(kf_time / atb)
                spans += [
                    (e.pos, e.pos + e.size)
                    for e in aentries[max(a0, 0) : a1 + 1]
                    if e.pos > kf_pos or e.timestamp >= shown
                ]
        return keyframe_pts, spans, last_dts

    def _audio_tail_s(self) -> float:
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
            for stream in (v, self._audio):
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

    def _fetch(self, spans: list[tuple[int, int]]) -> None:
        if not spans:
            return
        spans.sort()
        total = sum(b - a for a, b in spans)
        gap_ok = max(MERGE_GAP_MIN, int(total * MERGE_GAP_SHARE))
        merged = [list(spans[0])]
        for a, b in spans[1:]:
            if a - merged[-1][1] <= gap_ok:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        for a, b in merged:
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
    ) -> ClipInfo:
        """Write [start, end] of the source to `out_path` (MP4, stream copy, faststart)."""
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise ClipUnavailable(ClipReason.INVALID_RANGE, f"bad range [{start}, {end}]")
        if end - start > max_clip_s:
            raise ClipUnavailable(
                ClipReason.CLIP_TOO_LONG, f"{end - start:.1f}s is over the {max_clip_s}s cap"
            )
        duration = self.duration
        if start >= duration:
            raise ClipUnavailable(
                ClipReason.START_BEYOND_DURATION, f"start {start}s >= duration {duration:.3f}s"
            )
        end = min(end, duration)
        requests0, bytes0 = self.source.requests, self.source.bytes_read
        t0 = time.perf_counter()
        v = self._video
        tb = v.time_base
        last_dts: int | None = None
        if self._layout.kind == "fragmented":
            self._fetch(self._plan_fragmented(start, end))
            seek_ts = math.floor(start / tb)
        else:
            seek_ts, spans, last_dts = self._plan_moov(start, end)
            self._fetch(spans)
            self._reopen_if_blanked(spans)
            v = self._video
        t_fetch = time.perf_counter()
        try:
            packets = self._collect(seek_ts, start, end, max_preroll_s, last_dts)
            info = self._write(packets, start, end, Path(out_path), exact)
        except av.FFmpegError as error:
            raise ClipUnavailable(ClipReason.UNSUPPORTED_CODEC, f"remux failed: {error}") from None
        finally:
            self._file.drop_except(self.index.spans)
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
            video_codec=str(v.codec_context.name),
            codec_tag=str(v.codec_tag),
            has_audio=self._audio is not None,
            timings_ms={
                "open": round(self.open_ms, 1),
                "fetch": round((t_fetch - t0) * 1000, 1),
                "remux": round((t_done - t_fetch) * 1000, 1),
            },
        )

    def _collect(
        self, seek_ts: int, start: float, end: float, max_preroll_s: float, last_dts: int | None
    ) -> _Packets:
        """Demux from the keyframe at or before `start` to just past `end`."""
        v, a = self._video, self._audio
        tb = v.time_base
        target = math.floor((start + _EPS) / tb)
        for _attempt in range(4):
            self._container.seek(seek_ts, stream=v, backward=True, any_frame=False)
            got = self._demux(start, end, last_dts)
            first = got.video[0] if got.video else None
            if first is None:
                raise ClipUnavailable(ClipReason.START_BEYOND_DURATION, "no video at start")
            if first.pts <= target or got.at_file_start:
                break
            # The keyframe we landed on shows after `start`: step back one GOP and retry.
            seek_ts = int(first.dts) - 1
        else:
            raise ClipUnavailable(ClipReason.UNSUPPORTED_CONTAINER, "no keyframe before start")
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
        if a is None:
            got.audio = []
        return got

    def _demux(self, start: float, end: float, last_dts: int | None) -> _Packets:
        """Video from the keyframe to just past `end`, then audio until it covers the video.

        Once the video is complete the video stream is discarded, so finishing the audio
        does not read the video samples stored among it.
        """
        try:
            return self._demux_packets(start, end, last_dts)
        finally:
            self._video.discard = av.stream.Discard.default

    def _demux_packets(self, start: float, end: float, last_dts: int | None) -> _Packets:
        v, a = self._video, self._audio
        tb = v.time_base
        end_ts = math.ceil((end - _EPS) / tb)
        got = _Packets()
        streams = [v] if a is None else [v, a]
        video_done = False
        first_kf_dts = self._video.index_entries[0].timestamp if len(v.index_entries) else None
        max_pts: int | None = None
        real_end_s = math.inf
        for packet in self._container.demux(*streams):
            if packet.size == 0 or packet.pts is None or packet.dts is None:
                continue
            if packet.stream is v:
                if video_done:
                    if float(packet.dts * tb) > real_end_s + AUDIO_MARGIN_S:
                        break  # the audio ended early or is far away: stop reading
                    continue
                if not got.video:
                    if not packet.is_keyframe:
                        continue
                    got.at_file_start = first_kf_dts is not None and packet.dts <= first_kf_dts
                if packet.dts >= end_ts and max_pts is not None and packet.pts > max_pts:
                    video_done = True
                else:
                    got.video.append(packet)
                    max_pts = packet.pts if max_pts is None else max(max_pts, packet.pts)
                    video_done = last_dts is not None and packet.dts >= last_dts
                if video_done:
                    real_end_s = max(float((p.pts + (p.duration or 0)) * tb) for p in got.video)
                    v.discard = av.stream.Discard.all
            elif a is not None:
                got.audio.append(packet)
                if video_done and float(packet.pts * a.time_base) >= real_end_s:
                    break
            if video_done and a is None:
                break
            if got.video and float(packet.dts * packet.time_base) > end + 60:
                break  # runaway guard: never read far past the clip
        return got

    def _write(
        self, got: _Packets, start: float, end: float, out_path: Path, exact: bool
    ) -> _Written:
        v, a = self._video, self._audio
        tb = v.time_base
        kf_time = float(got.video[0].pts * tb)
        origin = kf_time
        if exact:  # the frame on screen at `start`: an edit list hides the frames before it
            origin = max(float(p.pts * tb) for p in got.video if float(p.pts * tb) <= start + _EPS)
        real_start = origin
        real_end = max(float((p.pts + (p.duration or 0)) * tb) for p in got.video)
        audio = [
            p
            for p in got.audio
            if a is not None
            and float(p.pts * a.time_base) >= kf_time - _EPS
            and float(p.pts * a.time_base) < real_end
        ]
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".clip-", suffix=".mp4", dir=out_path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as output:
                ov = output.add_stream_from_template(v)
                with contextlib.suppress(Exception):
                    ov.codec_tag = v.codec_tag  # hvc1 stays hvc1 (the muxer's default is hev1)
                oa = output.add_stream_from_template(a) if a is not None and audio else None
                for packets, stream, out in ((got.video, v, ov), (audio, a, oa)):
                    if out is None or stream is None:
                        continue
                    shift = round(origin / stream.time_base)
                    for p in packets:
                        p.pts -= shift
                        p.dts -= shift
                        p.stream = out
                output.mux(_interleave(got.video, audio))
            os.replace(tmp, out_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return _Written(out_path, real_start, real_end, out_path.stat().st_size)


@dataclass
class _Packets:
    video: list[Any] = field(default_factory=list)
    audio: list[Any] = field(default_factory=list)
    at_file_start: bool = False


@dataclass(frozen=True)
class _Written:
    path: Path
    start: float
    end: float
    size: int


def _interleave(video: list[Any], audio: list[Any]) -> list[Any]:
    """Packets in decode-time order across streams, as the muxer likes them."""
    both = list(video) + list(audio)
    both.sort(key=lambda p: Fraction(p.dts) * p.time_base)
    return both


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
) -> ClipInfo:
    """Open `source`, cut one clip, close. Raises ClipUnavailable with a stable reason."""
    with ClipSource(source, index_cache=index_cache, max_index_bytes=max_index_bytes) as clips:
        return clips.cut(
            start, end, out_path, exact=exact, max_clip_s=max_clip_s, max_preroll_s=max_preroll_s
        )
