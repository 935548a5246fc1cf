"""A fragmented source's own rules: moofs checked before the demuxer parses them, the seek to a
keyframe's fragment, and its audio timed by the trun of the moof that holds each packet.

`guard_fragments` runs at the open: it checks the mfra and every moof the demuxer reaches
(reads the plan did not foresee are checked through `SparseFile.on_demand`) and returns the
fragment index, parsed once per source. `Fragments` keeps which moofs passed.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import av

from clipsearch.clipping import boxes
from clipsearch.clipping.boxes import Layout, check_chain
from clipsearch.clipping.codecs import video_track_id
from clipsearch.clipping.demux import Demux, Packets, fresh
from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.fragindex import (
    first_sample,
    first_sample_times,
    has_fragments,
    mfra_is_sound,
    parse_sidx,
    parse_tfra,
    separate_moofs,
)
from clipsearch.clipping.fragments import (
    FragmentSample,
    TrackDefaults,
    fragment_samples,
    samples_span,
    track_defaults,
)
from clipsearch.clipping.index import Box
from clipsearch.clipping.plan import EPS, CutPlan, FragmentIndex, TfraPoint
from clipsearch.clipping.reader import SparseFile

MAX_FRAGMENT_STEPS = 64  # fragments looked back through for one starting with a keyframe
MOOFS_BEHIND = 4  # moofs looked back through for the one holding an audio sample (one per track)
MAX_RETIME_S = 1.0  # an audio packet's trun time this far from FFmpeg's, or this long: malformed


@dataclass
class Fragments:
    """The moofs of one source checked so far: `checked` passed `boxes.check_chain` (before
    the demuxer parsed them), `sound` place their samples inside the mdat after them."""

    file: SparseFile
    checked: set[int] = field(default_factory=set)
    sound: set[int] = field(default_factory=set)

    def check_read(self, start: int, end: int) -> None:
        """On a read the plan did not foresee: check the moofs from the nearest known box."""
        known = [o for o in self.checked if o <= start]
        if known:
            check_chain(self.file, max(known), end, self.checked)


def guard_fragments(fragments: Fragments, layout: Layout) -> FragmentIndex | None:
    """Check the mfra before FFmpeg trusts it, and every moof it will parse; the fragment
    index of a fragmented source (None for an indexed one).

    A moov that holds the first samples and announces fragments (`frag_keyframe` without
    `empty_moov`) is opened as an indexed file, FFmpeg walking its fragments from the first
    mdat on: each moof it reaches is checked the same way.
    """
    f = fragments.file
    moov = layout.first("moov")
    if layout.kind != "fragmented":
        mdat = layout.first("mdat")
        if moov and mdat and has_fragments(f.peek(moov.offset, moov.size)):
            fragments.checked.add(mdat.offset)  # an anchor for the chain
            check_chain(f, mdat.offset, f.size, fragments.checked)
            f.on_demand = fragments.check_read
        return None
    mfra = layout.first("mfra")
    if mfra is not None and not mfra_is_sound(f.peek(mfra.offset, mfra.size)):
        raise ClipUnavailable(ClipReason.MALFORMED_SOURCE, "mfra fails its bounds check")
    moof = next(b for b in layout.boxes if b.kind == "moof")
    check_chain(f, moof.offset, f.size, fragments.checked)
    tfra = parse_tfra(f.peek(mfra.offset, mfra.size)) if mfra is not None else {}
    times = _tfra_times(f, tfra, moov, moof) if mfra is not None else ""
    if moov is not None and separate_moofs(
        f.peek(moov.offset, moov.size), f.peek(moof.offset, moof.size)
    ):
        # A moof per track: FFmpeg's mfra seek does not load the target fragment (it lands
        # on a keyframe it read at the open, then jumps). It seeks right once it has walked
        # every fragment, which only a small file affords.
        if f.size > boxes.SMALL_FILE_BYTES:
            raise ClipUnavailable(
                ClipReason.UNSUPPORTED_CONTAINER,
                "fragmented with a moof per track: the demuxer cannot seek in it unread",
            )
        f.ensure(0, f.size)
        times = ""
    sidx = layout.first("sidx")
    timescale, subsegments = (
        parse_sidx(f.peek(sidx.offset, sidx.size), sidx.offset) if sidx else (0, [])
    )
    f.on_demand = fragments.check_read
    points = {track: tuple(p) for track, p in tfra.items()}
    offset = mfra.offset if mfra is not None else None
    return FragmentIndex(points, offset, timescale, tuple(subsegments), times)


def _tfra_times(
    f: SparseFile, tfra: Mapping[int, Sequence[TfraPoint]], moov: Box | None, moof: Box
) -> str:
    """Whether this muxer's tfra times are decode ("dts") or presentation ("pts") times.

    FFmpeg takes a seeked fragment's first timestamp from the tfra, as the kind it is
    told; told wrong, every clip's times shift by the B-frame delay (FFmpeg 5.1's CMAF
    writes decode times, FFmpeg 8 presentation times). The first fragment tells which.
    """
    track = video_track_id(f.peek(moov.offset, moov.size)) if moov else None
    if track is None:
        return "dts"
    points = tfra.get(track) or []
    tfra_time = next((p.time for p in points if p.moof_offset == moof.offset), None)
    times = first_sample_times(f.peek(moof.offset, moof.size), track)
    if tfra_time is None or times is None:
        return "dts"
    decode_time, offset = times
    return "pts" if offset and tfra_time == decode_time + offset else "dts"


def keyframe_seek(fragments: Fragments, plan: CutPlan, video: Any, tfra_times: str) -> int:
    """Where to seek: the latest fragment whose first video sample is a sync sample shown at
    or before the clip's start (`plan.seek_points`), else `plan.seek_ts` itself.

    FFmpeg only knows the keyframes of fragments it has read: seeking to a fragment that
    starts between keyframes (`frag_duration` cuts, separate moofs) lands on a keyframe of
    the first fragment and then jumps. Seeking to the keyframe's own fragment lets it read on
    from there, in file order.
    """
    f = fragments.file
    for checked, point in enumerate(plan.seek_points):
        if checked >= MAX_FRAGMENT_STEPS:
            break
        if not 0 < point.moof_offset < f.source_size:
            continue
        f.ensure(point.moof_offset, point.moof_offset + 16)
        check_chain(f, point.moof_offset, point.moof_offset + 1, fragments.checked)
        if point.moof_offset not in fragments.checked:
            continue  # not a moof
        header = f.peek(point.moof_offset, 8)
        moof = f.peek(point.moof_offset, int.from_bytes(header[:4], "big"))
        first = first_sample(moof, int(video.id))
        if first is None or first[2] is False:
            continue
        shown = point.time + (first[1] if tfra_times == "dts" else 0)
        if shown <= plan.seek_ts:
            return int(point.time)
    return plan.seek_ts


def fragment_audio(fragments: Fragments, demux: Demux, moov: Box | None, got: Packets) -> None:
    """A fragmented source's audio: from the keyframe, with the source's own times.

    Each packet takes its decode time and duration from the trun of the moof holding it
    (`fragments.py`), found by its byte offset: FFmpeg's are inferred and, after a seek,
    not always the source's. A track whose audio starts later than the keyframe while
    the source has audio there (a moof per track, the audio's stored before the video's
    and skipped by the seek) is read again from its own seek, from what the cut holds.
    """
    f = fragments.file
    held = moov is not None and not f.gaps(moov.offset, moov.end)
    defaults = track_defaults(f.peek(moov.offset, moov.size)) if held and moov else {}
    for moof in sorted(fragments.checked):
        _moof_samples(fragments, moof, None, defaults)  # every moof the cut holds places its
        # samples inside its mdat, or the cut is declined
    kf_time = float(got.video[0].pts * demux.streams.video.time_base)
    real_end = max(float((p.pts + (p.duration or 0)) * p.time_base) for p in got.video)
    for stream in demux.streams.audios:
        packets = [p for p in got.audio if p.stream is stream]
        _retime(fragments, packets, defaults)
        frame = statistics.median([float(p.duration * p.time_base) for p in packets] or [0])
        first = min((float(p.pts * p.time_base) for p in packets), default=math.inf)
        entries = stream.index_entries
        has_earlier = len(entries) and float(entries[0].timestamp * stream.time_base) < first
        if first > kf_time + max(frame, 0.001) + EPS and has_earlier:
            again = _audio_from_its_own_seek(demux, stream, kf_time, real_end)
            _retime(fragments, again, defaults)
            if again and float(again[0].pts * stream.time_base) < first:
                got.audio = [p for p in got.audio if p.stream is not stream] + again


def _retime(fragments: Fragments, packets: list[Any], defaults: dict[int, TrackDefaults]) -> None:
    """Give each packet the decode time and duration its moof's trun states."""
    if not packets or int(packets[0].stream.id) not in defaults:
        return
    f = fragments.file
    moofs = sorted(o for o in fragments.checked if not f.gaps(o, o + 8))
    parsed: dict[int, dict[int, FragmentSample]] = {}
    track = int(packets[0].stream.id)
    found: list[tuple[Any, FragmentSample]] = []
    for packet in packets:
        sample = None
        at = bisect.bisect_left(moofs, packet.pos) if packet.pos is not None else 0
        for moof in reversed(moofs[max(0, at - MOOFS_BEHIND) : at]):
            if moof not in parsed:
                parsed[moof] = _moof_samples(fragments, moof, track, defaults)
            sample = parsed[moof].get(int(packet.pos))
            if sample is not None:
                break
        if sample is not None:
            found.append((packet, sample))
    for n, (packet, sample) in enumerate(found):
        duration = sample.duration
        if not duration and n + 1 < len(found):  # a trun that left it to the next sample
            duration = found[n + 1][1].decode_time - sample.decode_time
        _check_retime(packet, sample, duration)
        packet.dts = packet.pts = sample.decode_time
        if duration > 0:
            packet.duration = duration


def _check_retime(packet: Any, sample: FragmentSample, duration: int) -> None:
    """FFmpeg's guesses are a frame or a fragment's step off, never seconds: a trun or tfdt
    that says otherwise is not a timeline anyone plays."""
    moved = float(abs(sample.decode_time - packet.dts) * packet.time_base)
    if moved > MAX_RETIME_S or float(duration * packet.time_base) > MAX_RETIME_S:
        raise ClipUnavailable(
            ClipReason.MALFORMED_SOURCE,
            f"a moof's tfdt/trun put an audio packet {moved:.1f}s from where the "
            f"demuxer reads it, lasting {float(duration * packet.time_base):.1f}s",
        )


def _moof_samples(
    fragments: Fragments, moof: int, track: int | None, defaults: dict[int, TrackDefaults]
) -> dict[int, FragmentSample]:
    """`track`'s samples in the moof at `moof`, once its tfhd and trun are seen to place
    every sample inside the mdat that follows it (else the demuxer reads other bytes as
    them, and differently after a seek than from the start)."""
    f = fragments.file
    size = int.from_bytes(f.peek(moof, 4), "big")
    if f.gaps(moof, moof + size + 8):
        return {}
    data = f.peek(moof, size)
    mdat = f.peek(moof + size, 8)
    if track is None and moof in fragments.sound:
        return {}
    if mdat[4:8] == b"mdat":
        mdat_end = moof + size + int.from_bytes(mdat[:4], "big")
        first, end = samples_span(data, moof, defaults)
        if first < moof + size + 8 or end > mdat_end:
            raise ClipUnavailable(
                ClipReason.MALFORMED_SOURCE,
                f"a trun places samples outside the mdat after its moof at {moof}",
            )
    fragments.sound.add(moof)
    return {} if track is None else fragment_samples(data, moof, track, defaults)


def _audio_from_its_own_seek(demux: Demux, stream: Any, since: float, until: float) -> list[Any]:
    """`stream`'s packets from its own seek to `since`, up to `until` (source seconds)."""
    tb = stream.time_base
    others = [s for s in demux.streams.all if s is not stream]
    for other in others:
        other.discard = av.stream.Discard.all
    out: list[Any] = []
    seen: set[tuple[int, int]] = set()
    try:
        demux.container.seek(math.floor(since / tb), stream=stream, backward=True)
        count = 0
        for packet in demux.container.demux(stream):
            count = demux.tick(count, packet)
            if not fresh(packet, {}, seen):
                continue
            if float(packet.pts * tb) >= until:
                break
            out.append(packet)
    finally:
        for other in others:
            other.discard = av.stream.Discard.default
    return out
