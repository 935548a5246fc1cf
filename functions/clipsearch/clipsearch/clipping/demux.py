"""The PyAV demux of one cut: from a keyframe a decoder can start at to just past `end`.

`Demux.collect` seeks, reads the video until the clip is closed (`closing.py`) and the audio
until it covers the video, and steps back to an earlier keyframe when the one it landed on
shows after `start` or cannot start a decoder. Each packet is counted against a bound and
the deadline; on a synthetic index, a packet outside its window means the tables cannot
serve the cut (`TablesCannotServe`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import av

from clipsearch.clipping.checks import check_continuous
from clipsearch.clipping.closing import closing_dts, stops_here
from clipsearch.clipping.codecs import random_access_nal
from clipsearch.clipping.errors import ClipReason, ClipUnavailable, TablesCannotServe
from clipsearch.clipping.plan import AUDIO_MARGIN_S, EPS, SEEK_ATTEMPTS
from clipsearch.clipping.samples import CompositionOffsets
from clipsearch.clipping.streams import Streams
from clipsearch.clipping.verify import codec_name

MAX_PACKETS = 200_000  # per cut: 600 s of 120 fps video plus audio, with room
RUNAWAY_S = 60  # the demux never reads this far past the clip's end
_STOP, _SKIP, _ON = "stop", "skip", "on"  # what the demux does after a packet

# The window a synthetic index holds of a stream: (first, last decode time, cut short: the
# track goes on past it in the source).
Bounds = tuple[int, int, bool]


@dataclass
class Packets:
    """What a demux read: the clip's video from its keyframe, and the audio around it."""

    video: list[Any] = field(default_factory=list)
    audio: list[Any] = field(default_factory=list)
    at_file_start: bool = False
    video_seen: int = 0
    audio_at: set[tuple[int, int]] = field(default_factory=set)  # (stream, byte offset) read


@dataclass
class _Progress:
    """Where one demux pass stands."""

    got: Packets
    end_ts: int
    first_kf_dts: int | None
    video_done: bool = False
    audio_done: set[int] = field(default_factory=set)
    max_pts: int | None = None
    real_end_s: float = math.inf
    close_dts: int | None = None  # the clip runs on to here to be closed


def decodable(video: Any, packet: Any) -> bool | None:
    """Whether a decoder can start at this keyframe (None: cannot tell for this codec)."""
    extradata = video.codec_context.extradata or b""
    name = codec_name(video)
    length_size = 4
    if name == "h264" and len(extradata) > 4 and extradata[0] == 1:
        length_size = (extradata[4] & 3) + 1
    elif name == "hevc" and len(extradata) > 21 and extradata[0] == 1:
        length_size = (extradata[21] & 3) + 1
    return random_access_nal(name, bytes(packet), length_size)


def fresh(
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


@dataclass(frozen=True)
class Demux:
    """One cut's demux over an opened container.

    `windows`: per stream index, the window its synthetic index holds (tables way only).
    `ctts`: the video's composition offsets, indexed like its entries, for the closing rule
    (None on a fragmented source: the clip ends where it stops).
    """

    container: Any
    streams: Streams
    check_deadline: Callable[[], None]
    fragmented: bool
    ctts: CompositionOffsets | None = None
    windows: Mapping[int, Bounds] = field(default_factory=dict)

    def collect(
        self, seek_ts: int, start: float, end: float, max_preroll_s: float, last_dts: int | None
    ) -> Packets:
        """Demux from the decodable keyframe at or before `start` to just past `end`."""
        v = self.streams.video
        tb = v.time_base
        target = math.floor((start + EPS) / tb)
        got = self._from_decodable_keyframe(seek_ts, target, start, end, last_dts)
        got.video = self._from_latest_keyframe(got.video, target)
        kf_time = float(got.video[0].pts * tb)
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
        check_continuous(got.video, tb, self.fragmented)
        if not self.streams.audios:
            got.audio = []
        return got

    def _from_decodable_keyframe(
        self, seek_ts: int, target: int, start: float, end: float, last_dts: int | None
    ) -> Packets:
        """Seek and demux, stepping back while the keyframe landed on shows after `start` or
        is a recovery point a decoder cannot start from (stss marking x264 intra refresh)."""
        v = self.streams.video
        for _attempt in range(SEEK_ATTEMPTS):
            self.container.seek(seek_ts, stream=v, backward=True, any_frame=False)
            got = self.demux(start, end, last_dts)
            first = got.video[0] if got.video else None
            if first is None and got.video_seen:
                raise ClipUnavailable(
                    ClipReason.MALFORMED_SOURCE,
                    f"no keyframe among the {got.video_seen} video samples read from the seek",
                )
            if first is None:
                raise ClipUnavailable(ClipReason.START_BEYOND_DURATION, "no video at start")
            starts = decodable(v, first) is not False
            if (first.pts <= target or got.at_file_start) and starts:
                return got
            if got.at_file_start:
                raise ClipUnavailable(
                    ClipReason.UNSUPPORTED_CODEC, "the first video sample is not a keyframe"
                )
            seek_ts = int(first.dts) - 1
        raise ClipUnavailable(
            ClipReason.UNSUPPORTED_CODEC,
            "no keyframe a decoder can start from (IDR) within reach before start",
        )

    def _from_latest_keyframe(self, video: list[Any], target: int) -> list[Any]:
        """Start at the latest decodable keyframe shown at or before `target`.

        The plan may land a GOP early (an edit list shifts the index's decode times); the
        packets read from there hold the later keyframe's GOP whole, so we start from it.
        """
        best = 0
        for i, packet in enumerate(video):
            if packet.pts > target:
                continue
            if packet.is_keyframe and i and decodable(self.streams.video, packet) is not False:
                best = i
        return video[best:]

    def tick(self, count: int, packet: Any) -> int:
        """Count a demuxed packet: bounded per cut, and the deadline checked every 64."""
        self._inside_window(packet)
        count += 1
        if count > MAX_PACKETS:
            raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, "too many packets for a clip")
        if count % 64 == 0:
            self.check_deadline()
        return count

    def demux(self, start: float, end: float, last_dts: int | None) -> Packets:
        """Video from the keyframe to just past `end`, then audio until it covers the video.

        Once the video is complete the video stream is discarded, so finishing the audio
        does not read the video samples stored among it.
        """
        v = self.streams.video
        entries = v.index_entries
        state = _Progress(
            Packets(),
            math.ceil((end - EPS) / v.time_base),
            entries[0].timestamp if len(entries) else None,
        )
        try:
            self._demux_into(state, end, last_dts)
        finally:
            v.discard = av.stream.Discard.default
        return state.got

    def _demux_into(self, state: _Progress, end: float, last_dts: int | None) -> None:
        v, audios = self.streams.video, self.streams.audios
        got, count = state.got, 0
        last_dts_seen: dict[int, int] = {}
        for packet in self.container.demux(*self.streams.all):
            count = self.tick(count, packet)
            seen_at = got.audio_at if self.fragmented and packet.stream is not v else None
            if not fresh(packet, last_dts_seen, seen_at):
                continue
            if packet.stream is v:
                step = self._video_packet(state, packet, last_dts)
            else:
                step = _audio_packet(state, packet)
            if step == _STOP:
                break
            if step == _SKIP:
                continue
            if state.video_done and len(state.audio_done) == len(audios):
                break
            if got.video and float(packet.dts * packet.time_base) > end + RUNAWAY_S:
                break  # runaway guard: never read far past the clip
        else:
            self._window_exhausted(state.video_done, state.audio_done)

    def _video_packet(self, state: _Progress, packet: Any, last_dts: int | None) -> str:
        v, got = self.streams.video, state.got
        tb = v.time_base
        if state.video_done:
            if float(packet.dts * tb) > state.real_end_s + AUDIO_MARGIN_S:
                return _STOP  # the audio ended early or is far away: stop reading
            return _SKIP
        if not packet.is_keyframe and decodable(v, packet):
            packet.is_keyframe = True  # an IDR the fragment's sample flags left unmarked
        got.video_seen += 1
        if not got.video:
            if not packet.is_keyframe:
                return _SKIP
            got.at_file_start = state.first_kf_dts is not None and packet.dts <= state.first_kf_dts
        if state.close_dts is None and stops_here(
            packet.dts, packet.pts, state.end_ts, state.max_pts
        ):
            state.close_dts = self._closing_dts(got.video)
            state.video_done = state.close_dts is None
        if not state.video_done:
            got.video.append(packet)
            state.max_pts = packet.pts if state.max_pts is None else max(state.max_pts, packet.pts)
            state.video_done = (last_dts is not None and packet.dts >= last_dts) or (
                state.close_dts is not None and packet.dts >= state.close_dts
            )
        if state.video_done:
            state.real_end_s = max(float((p.pts + (p.duration or 0)) * tb) for p in got.video)
            v.discard = av.stream.Discard.all
        return _ON

    def _closing_dts(self, video: list[Any]) -> int | None:
        if self.fragmented:
            return None
        return closing_dts(self.streams.video.index_entries, self.ctts, video)

    def _inside_window(self, packet: Any) -> None:
        """A synthetic index's packet from outside the clip's window is not the source's (a
        placeholder) or not planned for: the tables cannot serve this cut."""
        bounds = self.windows.get(packet.stream.index) if self.windows else None
        if bounds is not None and packet.dts is not None:
            lo, hi, _ = bounds
            if not lo <= packet.dts <= hi:
                raise TablesCannotServe(f"stream {packet.stream.index} read at {packet.dts}")

    def _window_exhausted(self, video_done: bool, audio_done: set[int]) -> None:
        """The demux ran out of a synthetic index before the clip was complete."""
        for index, (_, _, short) in self.windows.items():
            done = video_done if index == self.streams.video.index else index in audio_done
            if short and not done:
                raise TablesCannotServe(f"stream {index} ran past its window")


def _audio_packet(state: _Progress, packet: Any) -> str:
    state.got.audio.append(packet)
    shown = float(packet.pts * packet.time_base)
    if state.video_done and shown >= state.real_end_s:
        state.audio_done.add(packet.stream.index)  # this track covers the video
    if state.video_done and shown > state.real_end_s + AUDIO_MARGIN_S:
        return _STOP  # another track ended early: read no further
    return _ON
