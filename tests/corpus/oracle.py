"""A correctness oracle for clips: decode the clip and its source and compare what they show.

Stream copy means a clip's frames, decoded from its first keyframe, are bit-identical to the
source's frames at the same presentation times. So, with `shift` = the clip's reported start:
every clip frame at clip time t must be the source frame at t + shift (same md5 of the decoded
planes), the clip must hold every source frame in [start, end) and nothing else, its first
frame must show at 0 and the reported end must be its last frame's end (the reported times
are the clip's real presentation times), the clip must cover the hit (snapped at most to the
latest keyframe at or before it), and each audio packet (byte-identical under stream copy)
must sit within one audio frame of where the source has it relative to the video. Audio
tracks the source has must be in the clip, unless the clip's info says they were dropped.

Everything is decoded with PyAV (the FFmpeg that the engine uses), so both sides see the same
edit-list handling; frames hidden by an edit list are not part of either timeline.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import shutil
import statistics
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

TIME_TOL = 0.003  # seconds: timestamp rounding between timescales
DURATION_TOL = 0.0005  # seconds: a stream-copied packet keeps its duration in its timescale


@dataclass(frozen=True)
class Frame:
    time: float
    end: float
    digest: str
    intra: bool  # decoded as an I picture (a real keyframe, not an intra-refresh point)


@dataclass(frozen=True)
class Packet:
    time: float
    end: float
    digest: str


@dataclass(frozen=True)
class Media:
    """What a file shows: decoded video frames in display order, audio packets per track."""

    frames: tuple[Frame, ...]
    sync_times: frozenset[float]  # presentation times of packets flagged as sync samples
    audio: tuple[tuple[Packet, ...], ...]
    audio_decoded: tuple[int, ...]  # decoded frames per audio track (0: does not decode)
    codec_tag: str
    rotation: float
    stored_end: float  # where the file says its video ends: max(pts + stored duration)

    @property
    def video_end(self) -> float:
        return self.frames[-1].end if self.frames else 0.0


def _digest(frame: Any) -> str:
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    return hashlib.md5(frame.to_ndarray().tobytes()).hexdigest()


def _rotation(path: Path) -> float:
    exe = shutil.which("ffprobe")
    if exe is None:
        return 0.0
    out = subprocess.run(
        [exe, "-v", "error", "-select_streams", "v:0", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    streams = json.loads(out or "{}").get("streams", [])
    for side in streams[0].get("side_data_list", []) if streams else []:
        if "rotation" in side:
            return float(side["rotation"])
    return 0.0


def scan(path: str | Path, *, decode_audio: bool = False, rotation: bool = True) -> Media:
    """Decode the video fully and list the audio packets. Raises on an unreadable file.

    `rotation=False` skips the ffprobe call (PyAV does not expose the display matrix).
    """
    path = Path(path)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        v = container.streams.video[0]
        tb = v.time_base
        assert tb is not None, "video without a time base"
        sync: set[float] = set()
        audio_streams: list[Any] = list(container.streams.audio)
        audio: list[list[Packet]] = [[] for _ in audio_streams]
        decoders = [s.codec_context for s in audio_streams] if decode_audio else []
        decoded = [0] * len(audio_streams)
        last = last_samples(path)
        raw: list[Any] = []
        for packet in container.demux(v, *audio_streams):
            if packet.stream is v:
                if packet.pts is not None and packet.is_keyframe and packet.size:
                    sync.add(round(float(packet.pts * tb), 4))
                for frame in v.codec_context.decode(packet):
                    raw.append(frame)
            else:
                n = audio_streams.index(packet.stream)
                if packet.size and packet.pts is not None and not packet.is_discard:
                    # discarded: outside the edit list, never played
                    t = float(packet.pts * packet.time_base)
                    audio[n].append(
                        Packet(
                            t, _packet_end(packet, t, last), hashlib.md5(bytes(packet)).hexdigest()
                        )
                    )
                if decoders:
                    decoded[n] += len(decoders[n].decode(packet))
        # demux() ends each stream with an empty packet, which flushed its decoder above
        codec_tag = str(v.codec_tag)
    raw.sort(key=lambda f: f.pts)
    times = [float(f.pts * f.time_base) for f in raw]
    frames = []
    for i, f in enumerate(raw):
        # A frame shows until the next one; a packet's duration is a decode-time delta, which
        # with B-frames and a variable rate is not how long the frame is on screen.
        if i + 1 < len(raw):
            end = times[i + 1]
        elif f.duration:
            end = times[i] + float(f.duration * f.time_base)
        else:
            end = times[i] + (times[i] - times[i - 1] if i else 0.04)
        frames.append(Frame(round(times[i], 6), round(end, 6), _digest(f), int(f.pict_type) == 1))
    return Media(
        tuple(frames),
        frozenset(sync),
        tuple(tuple(sorted(a, key=lambda p: p.time)) for a in audio),
        tuple(decoded),
        codec_tag,
        _rotation(path) if rotation else 0.0,
        max(
            (times[i] + float(f.duration * f.time_base) for i, f in enumerate(raw) if f.duration),
            default=frames[-1].end if frames else 0.0,
        ),
    )


@dataclass(frozen=True)
class DeclaredTrack:
    """What one trak says about its length (seconds; `edits`: (duration, media time) pairs)."""

    handler: str
    tkhd: float
    mdhd: float
    samples: float  # sum of the stts deltas: the media's length by its own table
    edits: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Declared:
    """The durations an MP4's moov declares (what players and ffprobe's format=duration show)."""

    movie: float
    tracks: tuple[DeclaredTrack, ...]
    fragmented: bool  # an mvex: the moov's durations cover only the samples it holds


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, box end) of the boxes in data[start:end]."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            return
        yield kind, at + header, at + size
        at += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((a, b) for k, a, b in _children(data, start, end) if k == kind), None)


def _full_box_times(data: bytes, body: int, at32: int, at64: int) -> tuple[int, int]:
    """(timescale or 0, duration) of an mvhd/mdhd body: version 0 or 1 layouts."""
    if data[body] == 1:
        return struct.unpack_from(">IQ", data, body + at64)
    return struct.unpack_from(">II", data, body + at32)


def declared(path: str | Path) -> Declared:
    """Parse the moov's mvhd, and per trak tkhd, mdhd, stts and elst (ISO/IEC 14496-12)."""
    data = Path(path).read_bytes()
    moov = _child(data, 0, len(data), b"moov")
    if moov is None:
        raise ValueError("no moov")
    mvhd = _child(data, *moov, b"mvhd")
    if mvhd is None:
        raise ValueError("no mvhd")
    movie_ts, movie_duration = _full_box_times(data, mvhd[0], 12, 20)
    if not movie_ts:
        raise ValueError("mvhd timescale 0")
    tracks = []
    for kind, a, b in _children(data, *moov):
        if kind != b"trak":
            continue
        tkhd = _child(data, a, b, b"tkhd")
        mdia = _child(data, a, b, b"mdia")
        if tkhd is None or mdia is None:
            raise ValueError("a trak without tkhd or mdia")
        body = tkhd[0]
        (tkhd_duration,) = struct.unpack_from(
            ">Q" if data[body] == 1 else ">I", data, body + (28 if data[body] == 1 else 20)
        )
        mdhd = _child(data, *mdia, b"mdhd")
        hdlr = _child(data, *mdia, b"hdlr")
        if mdhd is None or hdlr is None:
            raise ValueError("a trak without mdhd or hdlr")
        media_ts, media_duration = _full_box_times(data, mdhd[0], 12, 20)
        if not media_ts:
            raise ValueError("mdhd timescale 0")
        handler = data[hdlr[0] + 8 : hdlr[0] + 12].decode("latin-1")
        minf = _child(data, *mdia, b"minf")
        stbl = _child(data, *minf, b"stbl") if minf else None
        stts = _child(data, *stbl, b"stts") if stbl else None
        total = 0
        if stts is not None:
            (count,) = struct.unpack_from(">I", data, stts[0] + 4)
            for n in range(count):
                samples, delta = struct.unpack_from(">II", data, stts[0] + 8 + 8 * n)
                total += samples * delta
        edits: list[tuple[float, float]] = []
        edts = _child(data, a, b, b"edts")
        elst = _child(data, *edts, b"elst") if edts else None
        if elst is not None:
            version = data[elst[0]]
            (count,) = struct.unpack_from(">I", data, elst[0] + 4)
            fmt, step = (">Qq", 20) if version == 1 else (">Ii", 12)
            for n in range(count):
                duration, media_time = struct.unpack_from(fmt, data, elst[0] + 8 + step * n)
                edits.append(
                    (duration / movie_ts, -1.0 if media_time < 0 else media_time / media_ts)
                )
        tracks.append(
            DeclaredTrack(
                handler,
                tkhd_duration / movie_ts,
                media_duration / media_ts,
                total / media_ts,
                tuple(edits),
            )
        )
    return Declared(
        movie_duration / movie_ts, tuple(tracks), _child(data, *moov, b"mvex") is not None
    )


def declared_duration_defects(path: str | Path, clip: Media) -> list[str]:
    """Where the container's declared durations disagree with its streams by over one frame.

    A player shows mvhd's duration as the clip's length (and seeks within it); tkhd, mdhd and
    the edit list say how long each track plays. Each must agree with what the streams hold:
    the video's last frame's end, each audio track's last packet's end.
    """
    try:
        moov = declared(path)
    except (ValueError, struct.error) as error:
        return [f"container durations unreadable: {error}"]
    video_frame = statistics.median(f.end - f.time for f in clip.frames) if clip.frames else 0.04
    audio_tracks = iter(clip.audio)
    defects: list[str] = []
    ends: list[float] = []
    frames: list[float] = [video_frame]
    for n, track in enumerate(moov.tracks):
        if track.handler == "vide" and not ends:
            start, end, frame, what = 0.0, clip.stored_end, video_frame, "video"
        elif track.handler == "soun":
            packets = next(audio_tracks, ())
            if not packets:
                continue
            start, end = packets[0].time, packets[-1].end
            frame, what = _audio_frame(packets), "audio"
            frames.append(frame)
        else:
            continue
        ends.append(end)
        tol = frame + TIME_TOL
        label = f"track {n + 1} ({what})"
        if abs(track.tkhd - end) > tol:
            defects.append(
                f"{label}: tkhd declares {track.tkhd:.3f}s, its stream ends at {end:.3f}s"
            )
        # mdhd is the media's own length: from its first sample's presentation time to the
        # end of its last shown, and past that by what the edit list skips at its start
        # (B-frame delay, AAC priming: samples the stream does not show)
        first = clip.frames[0].time if what == "video" and clip.frames else start
        skipped = max((t for _, t in track.edits if t >= 0), default=0.0)
        if not moov.fragmented and not -tol <= track.mdhd - (end - first) <= skipped + tol:
            defects.append(
                f"{label}: mdhd declares {track.mdhd:.3f}s, its samples span {end - first:.3f}s"
            )
        if track.edits:
            shown = sum(duration for duration, _ in track.edits)
            if abs(shown - track.tkhd) > tol:
                defects.append(
                    f"{label}: the edit list plays {shown:.3f}s, tkhd declares {track.tkhd:.3f}s"
                )
    if ends:
        longest = max(ends)
        if abs(moov.movie - longest) > max(frames) + TIME_TOL:
            defects.append(
                f"the container declares {moov.movie:.3f}s (mvhd), its streams last {longest:.3f}s"
            )
    return defects


def last_samples(path: str | Path) -> dict[int, tuple[int, float]]:
    """Per track id of a non-fragmented MP4: (file offset, stts duration in seconds) of the
    track's last sample, from its stbl (stsz, stsc, stco/co64, stts). Empty when the file is
    not such an MP4 or a table is missing or does not add up.

    FFmpeg 8's mov demuxer (PyAV's) can report the last sample's duration wrong: when a
    track's edit starts more than 1 s into its media (the AAC pre-roll it then re-reads), it
    gives the last packet the full frame (1024) although the stts says 512, while FFmpeg 5.1
    reads 512 from the same file and both decode the same samples. The stts is what the file
    declares, so the oracle takes a last sample's duration from it (`_packet_end`).
    """
    try:
        data = Path(path).read_bytes()
        moov = _child(data, 0, len(data), b"moov")
        if moov is None or _child(data, *moov, b"mvex") is not None:
            return {}
        out: dict[int, tuple[int, float]] = {}
        for kind, a, b in _children(data, *moov):
            if kind != b"trak":
                continue
            found = _last_sample(data, a, b)
            if found is not None:
                out[found[0]] = found[1:]
        return out
    except (struct.error, ValueError, OSError):
        return {}


def _last_sample(data: bytes, a: int, b: int) -> tuple[int, int, float] | None:
    """(track id, file offset, stts seconds) of the last sample of the trak in data[a:b]."""
    tkhd = _child(data, a, b, b"tkhd")
    mdia = _child(data, a, b, b"mdia")
    mdhd = _child(data, *mdia, b"mdhd") if mdia else None
    minf = _child(data, *mdia, b"minf") if mdia else None
    stbl = _child(data, *minf, b"stbl") if minf else None
    if tkhd is None or mdhd is None or stbl is None:
        return None
    (track_id,) = struct.unpack_from(">I", data, tkhd[0] + (20 if data[tkhd[0]] == 1 else 12))
    timescale, _ = _full_box_times(data, mdhd[0], 12, 20)
    stts, stsz, stsc = (_child(data, *stbl, k) for k in (b"stts", b"stsz", b"stsc"))
    stco, co64 = _child(data, *stbl, b"stco"), _child(data, *stbl, b"co64")
    if not timescale or stts is None or stsz is None or stsc is None or (stco or co64) is None:
        return None
    (entries,) = struct.unpack_from(">I", data, stts[0] + 4)
    if not entries:
        return None
    _, delta = struct.unpack_from(">II", data, stts[0] + 8 + 8 * (entries - 1))
    size, count = struct.unpack_from(">II", data, stsz[0] + 4)
    if not count:
        return None
    if co64 is not None:
        (chunks,) = struct.unpack_from(">I", data, co64[0] + 4)
        offsets_at, fmt, step = co64[0] + 8, ">Q", 8
    else:
        assert stco is not None
        (chunks,) = struct.unpack_from(">I", data, stco[0] + 4)
        offsets_at, fmt, step = stco[0] + 8, ">I", 4
    (runs,) = struct.unpack_from(">I", data, stsc[0] + 4)
    if not chunks or not runs:
        return None
    (chunk_offset,) = struct.unpack_from(fmt, data, offsets_at + step * (chunks - 1))
    # the last stsc run holds the last chunk; its samples are the track's last ones
    _, per_chunk, _ = struct.unpack_from(">III", data, stsc[0] + 8 + 12 * (runs - 1))
    if not 0 < per_chunk <= count:
        return None
    before = [
        size or struct.unpack_from(">I", data, stsz[0] + 12 + 4 * i)[0]
        for i in range(count - per_chunk, count - 1)
    ]
    return track_id, chunk_offset + sum(before), delta / timescale


def _packet_end(packet: Any, t: float, last: dict[int, tuple[int, float]]) -> float:
    """Where an audio packet starting at `t` ends: its duration as the demuxer reports it,
    except a track's last sample, whose duration the stts declares (see `last_samples`)."""
    at = last.get(packet.stream.id)
    if at is not None and packet.pos == at[0]:
        return t + at[1]
    return t + float((packet.duration or 0) * packet.time_base)


def audio_packets(path: str | Path) -> tuple[tuple[Packet, ...], ...]:
    """Each audio track's packets as `scan` lists them, demuxed only (nothing decoded)."""
    last = last_samples(path)
    with av.open(str(path)) as container:
        streams = list(container.streams.audio)
        tracks: list[list[Packet]] = [[] for _ in streams]
        for packet in container.demux(*streams) if streams else ():
            if packet.size and packet.pts is not None and not packet.is_discard:
                t = float(packet.pts * packet.time_base)
                end = _packet_end(packet, t, last)
                digest = hashlib.md5(bytes(packet)).hexdigest()
                tracks[streams.index(packet.stream)].append(Packet(t, end, digest))
    return tuple(tuple(sorted(track, key=lambda p: p.time)) for track in tracks)


def packet_media(path: str | Path) -> Media:
    """What `scan` says about a file's timing, from its packets alone (nothing decoded):
    each video packet stands for the frame it holds, in presentation order."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        v = container.streams.video[0]
        shown: list[tuple[float, float]] = []
        for packet in container.demux(v):
            if packet.size and packet.pts is not None:
                t = float(packet.pts * packet.time_base)
                shown.append((t, t + float((packet.duration or 0) * packet.time_base)))
        codec_tag = str(v.codec_tag)
    shown.sort()
    frames = tuple(
        Frame(t, shown[i + 1][0] if i + 1 < len(shown) else end, "", False)
        for i, (t, end) in enumerate(shown)
    )
    audio = audio_packets(path)
    stored_end = max((end for _, end in shown), default=0.0)
    return Media(frames, frozenset(), audio, (), codec_tag, 0.0, stored_end)


def contiguous(track: tuple[Packet, ...]) -> bool:
    """Whether each packet starts where the one before it ends (within TIME_TOL)."""
    return all(abs(q.time - p.end) <= TIME_TOL for p, q in itertools.pairwise(track))


def cheap_defects(source: str | Path, clip_path: str | Path, start: float) -> list[str]:
    """The checks that decode nothing: the clip's declared durations against its streams,
    and each audio track one contiguous run of the source's packets (`start`: the clip's
    reported start). For the fuzzer, whose sources are hostile: the audio is compared only
    with a source track the demuxer reads in order as one contiguous run of distinct packets
    (a mutated table can make a file whose own reading is ambiguous: there is nothing to be
    right about)."""
    try:
        clip = packet_media(clip_path)
    except Exception as error:  # the engine's read-back passed it: worth a failure here
        return [f"clip unreadable: {type(error).__name__}: {error}"]
    defects = declared_duration_defects(clip_path, clip)
    try:
        source_audio = audio_packets(source)
    except Exception:
        return defects
    for n, packets in enumerate(clip.audio):
        track = next(
            (s for s in source_audio if {p.digest for p in packets[:3]} & {p.digest for p in s}),
            None,
        )
        if track is None or not contiguous(track):
            continue
        if len({p.digest for p in track}) != len(track):
            continue
        gap = _audio_run_defect(packets, track, start)
        if gap:
            defects.append(f"clip audio track {n}: {gap}")
    return defects


@dataclass(frozen=True)
class Verdict:
    right: bool
    why: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "right" if self.right else "wrong: " + "; ".join(self.why)


@dataclass
class _Why:
    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.items.append(text)


def _find(times: list[float], t: float, tol: float) -> int | None:
    i = bisect.bisect_left(times, t - tol)
    if i < len(times) and abs(times[i] - t) <= tol:
        return i
    return None


def _where(source: Media, digest: str) -> str:
    shown = [f.time for f in source.frames if f.digest == digest]
    return f"source shows it at {shown[0]:.3f}s" if shown else "source never shows it"


def _audio_frame(packets: tuple[Packet, ...]) -> float:
    durations = [p.end - p.time for p in packets if p.end > p.time]
    return statistics.median(durations) if durations else 0.025


def _source_track(source: Media, packets: tuple[Packet, ...]) -> tuple[Packet, ...] | None:
    """The source audio track a clip track's first packets come from."""
    digests = {p.digest for p in packets[:3]}
    return next((s for s in source.audio if digests & {p.digest for p in s}), None)


def _audio_run_defect(packets: tuple[Packet, ...], source: tuple[Packet, ...], shift: float) -> str:
    """Why the clip's audio packets are not one contiguous run of the source's ("" if they are).

    Stream copy carries each packet byte for byte with its duration: a run with a packet
    missing, repeated or reordered, or a duration changed (a gap stretched over), is not what
    the source plays, even when every packet is in sync on its own.
    """
    if not packets:
        return ""
    first = [i for i, p in enumerate(source) if p.digest == packets[0].digest]
    if not first:
        return ""  # the foreign-packet check says it
    i0 = min(first, key=lambda i: abs(source[i].time - (packets[0].time + shift)))
    run = source[i0 : i0 + len(packets)]
    for k, p in enumerate(packets):
        if k >= len(run) or run[k].digest != p.digest:
            later = [i for i, s in enumerate(source) if s.digest == packets[-1].digest]
            span = (max(later) - i0 + 1) if later else len(run)
            what = (
                f"{len(packets)} packets where the source has {span} over that span"
                if span != len(packets)
                else "packets out of the source's order"
            )
            at = source[i0 + k].time if i0 + k < len(source) else source[-1].end
            return f"not the source's contiguous run: {what} (first difference at {at:.3f}s)"
        want = run[k].end - run[k].time
        got = p.end - p.time
        # the last packet's duration may be trimmed by the muxer's final stts entry only
        # when the source's is unknown (0); otherwise it is carried as it is
        if abs(got - want) > DURATION_TOL and not (k == len(packets) - 1 and want == 0):
            return (
                f"packet at {p.time:.3f}s lasts {got * 1000:.1f} ms, the source's "
                f"{want * 1000:.1f} ms"
            )
    return ""


def _dropped_audio(info: Any) -> int:
    """How many audio tracks the clip's info says were dropped (`ClipInfo.dropped_tracks`)."""
    named = getattr(info, "dropped_tracks", ()) or ()
    return sum(1 for t in named if str(t).lower().startswith("audio"))


def judge(
    source: Media,
    clip_path: str | Path,
    info: Any,
    *,
    requested: tuple[float, float],
    exact: bool = False,
) -> Verdict:
    """Is this clip (with its ClipInfo `info`) the source's [requested] moment?"""
    why = _Why()
    try:
        clip = scan(clip_path, decode_audio=True, rotation=source.rotation != 0)
    except Exception as error:
        return Verdict(False, (f"clip unreadable: {type(error).__name__}: {error}",))
    if not clip.frames:
        return Verdict(False, ("clip shows no video frames",))
    req_start, req_end = requested
    shift = float(info.start)
    src_times = [f.time for f in source.frames]
    gaps = [b - a for a, b in itertools.pairwise(src_times) if b > a]
    tol = min(TIME_TOL, min(gaps) / 4) if gaps else TIME_TOL

    # 1. every clip frame is the source's frame at the same time
    matched: list[int] = []
    mismatches: list[str] = []
    for i, f in enumerate(clip.frames):
        j = _find(src_times, f.time + shift, tol)
        if j is None:
            mismatches.append(
                f"clip frame {i} at {f.time:.3f}s maps to source {f.time + shift:.3f}s where "
                f"the source has no frame ({_where(source, f.digest)})"
            )
            continue
        matched.append(j)
        if source.frames[j].digest != f.digest:
            mismatches.append(
                f"clip frame {i} should be the source's frame at {src_times[j]:.3f}s but differs "
                f"({_where(source, f.digest)})"
            )
    if mismatches:
        why.add(f"{len(mismatches)} of {len(clip.frames)} frames wrong, first: {mismatches[0]}")

    # 2. exactly the source's frames in [start, end), first at 0, reported end = last's end
    lo = bisect.bisect_left(src_times, shift - tol)
    hi = bisect.bisect_left(src_times, float(info.end) - tol)
    expected = list(range(lo, hi))
    if not mismatches and matched != expected:
        missing = sorted(set(expected) - set(matched))
        extra = sorted(set(matched) - set(expected))
        at = f", first missing at {src_times[missing[0]]:.3f}s" if missing else ""
        why.add(
            f"clip holds {len(matched)} frames, the source has {len(expected)} in "
            f"[{shift:.3f}, {float(info.end):.3f}) (missing {len(missing)}, extra {len(extra)}"
            f"{at})"
        )
    if abs(clip.frames[0].time) > tol:
        why.add(f"clip's first frame shows at {clip.frames[0].time:.3f}s, not 0")
    # The clip's own end (its last frame's stored duration) is what a player shows; with a
    # variable rate it may end before the source's next frame, never after it (checked above:
    # a source frame before the reported end must be in the clip).
    clip_end = shift + clip.stored_end
    if abs(float(info.end) - clip_end) > tol:
        why.add(f"reported end {float(info.end):.3f}s, the clip's video ends at {clip_end:.3f}s")

    # 3. the clip covers the hit, snapped no further back than the latest keyframe
    first_t = source.frames[0].time
    video_end = source.video_end
    if req_start >= video_end - tol:
        why.add(f"hit starts at {req_start}s, after the video ends ({video_end:.3f}s)")
    else:
        need_start = max(req_start, first_t)
        if shift > need_start + tol:
            why.add(f"clip starts at {shift:.3f}s, after the hit's start {need_start:.3f}s")
        if exact:
            on_screen = [t for t in src_times if t <= need_start + tol]
            if on_screen and abs(shift - on_screen[-1]) > tol:
                why.add(f"exact start {shift:.3f}s, the frame on screen is at {on_screen[-1]:.3f}s")
        else:
            keys = [
                f.time
                for f in source.frames
                if f.intra and f.time in source.sync_times and f.time <= need_start + tol
            ]
            if keys and shift < keys[-1] - tol:
                why.add(
                    f"clip starts at {shift:.3f}s, before the latest keyframe at or before the "
                    f"hit ({keys[-1]:.3f}s)"
                )
            snapped = shift < float(info.requested_start) - 1e-6
            if bool(info.keyframe_snapped) != snapped:
                why.add(f"keyframe_snapped={info.keyframe_snapped} but start {shift:.3f}s")
        need_end = min(req_end, video_end)
        if float(info.end) < need_end - tol:
            why.add(f"clip ends at {float(info.end):.3f}s, before {need_end:.3f}s")

    # 4. audio: every track kept (or said), in sync, spanning the video
    missing_tracks = len(source.audio) - len(clip.audio)
    if missing_tracks > 0 and _dropped_audio(info) < missing_tracks:
        why.add(
            f"clip has {len(clip.audio)} of the source's {len(source.audio)} audio tracks "
            f"and its info (dropped_tracks) names {_dropped_audio(info)} dropped"
        )
    clip_video_end = clip.stored_end
    for n, packets in enumerate(clip.audio):
        if not packets:
            continue
        if clip.audio_decoded[n] == 0:
            why.add(f"clip audio track {n} does not decode")
        src_track = _source_track(source, packets)
        if src_track is None:
            why.add(f"clip audio track {n} holds no packet of the source's audio")
            continue
        frame_s = _audio_frame(src_track)
        by_digest: dict[str, list[float]] = {}
        for p in src_track:
            by_digest.setdefault(p.digest, []).append(p.time)
        worst = 0.0
        foreign = 0
        for p in packets:
            candidates = by_digest.get(p.digest)
            if not candidates:
                foreign += 1
                continue
            off = min((c - (p.time + shift) for c in candidates), key=abs)
            worst = max(worst, abs(off), key=abs)
        if foreign:
            why.add(f"clip audio track {n}: {foreign} packets are not in the source")
        if abs(worst) > frame_s + tol:
            why.add(f"clip audio track {n} is off by {worst * 1000:.0f} ms against its video")
        src_a0 = src_track[0].time - shift
        src_a1 = src_track[-1].end - shift
        want0 = max(0.0, src_a0)
        want1 = min(clip_video_end, src_a1)
        if abs(packets[0].time - want0) > frame_s + tol:
            why.add(
                f"clip audio track {n} starts at {packets[0].time:.3f}s, video at 0 "
                f"(expected {want0:.3f}s)"
            )
        if abs(packets[-1].end - want1) > frame_s + tol:
            why.add(
                f"clip audio track {n} ends at {packets[-1].end:.3f}s, expected {want1:.3f}s "
                f"(video ends at {clip_video_end:.3f}s)"
            )
    has_source_audio = any(
        s and s[0].time < shift + clip_video_end and s[-1].end > shift for s in source.audio
    )
    if has_source_audio and not any(clip.audio):
        why.add("clip has no audio; the source has audio over the clip's span")

    # 5. per audio track, one contiguous run of the source's packets, their own durations
    for n, packets in enumerate(clip.audio):
        src_track = _source_track(source, packets)
        if src_track is not None:
            gap = _audio_run_defect(packets, src_track, shift)
            if gap:
                why.add(f"clip audio track {n}: {gap}")

    # 6. the duration the container declares is its streams' (mvhd, tkhd, mdhd, elst)
    for defect in declared_duration_defects(clip_path, clip):
        why.add(defect)

    # 7. the info describes this file; what a player needs: the rotation and the codec tag
    if int(info.size) != Path(clip_path).stat().st_size:
        why.add(f"reported size {info.size}, the file has {Path(clip_path).stat().st_size} bytes")
    if abs(clip.rotation - source.rotation) > 0.5:
        why.add(f"rotation {clip.rotation} in the clip, {source.rotation} in the source")
    if clip.codec_tag != source.codec_tag:
        why.add(f"codec tag {clip.codec_tag} in the clip, {source.codec_tag} in the source")
    return Verdict(not why.items, tuple(why.items))
