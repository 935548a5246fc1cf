"""The video track's codec facts read from its boxes: sample entry and configuration records,
the pixel format a vpcC declares, whether a sample is a point a decoder can start from.

Pure: bytes in, values out. A lookup that finds nothing answers None (or empty), not an error:
these facts refine a cut, and the bounds checks (`boxes.check_box`) judge the boxes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from clipsearch.clipping.boxiter import find_path, leading_boxes
from clipsearch.clipping.samples import CompositionOffsets, composition_runs

_VP9_FORMATS = {
    (8, 0): "yuv420p", (8, 1): "yuv420p", (8, 2): "yuv422p", (8, 3): "yuv444p",
    (10, 0): "yuv420p10le", (10, 1): "yuv420p10le", (10, 2): "yuv422p10le",
    (10, 3): "yuv444p10le", (12, 0): "yuv420p12le", (12, 1): "yuv420p12le",
    (12, 2): "yuv422p12le", (12, 3): "yuv444p12le",
}  # fmt: skip


def video_traks(moov: bytes) -> Iterator[tuple[int, int]]:
    """Body (start, end) of each trak of a whole moov box whose handler is `vide`."""
    for trak, trak_end in find_path(moov, 8, len(moov), ("trak",)):
        handlers = find_path(moov, trak, trak_end, ("mdia", "hdlr"))
        if handlers and moov[handlers[0][0] + 8 : handlers[0][0] + 12] == b"vide":
            yield trak, trak_end


def video_sample_entry(moov: bytes) -> tuple[str, dict[str, bytes]]:
    """The first video track's sample entry type and its child boxes (codec configuration)."""
    for trak, trak_end in video_traks(moov):
        for body, end in find_path(moov, trak, trak_end, ("mdia", "minf", "stbl", "stsd")):
            entries = leading_boxes(moov, body + 8, end)
            if not entries:
                continue
            kind, _, ebody, eend = entries[0]
            # A visual sample entry: 8 bytes of SampleEntry, 70 of VisualSampleEntry, then boxes.
            children = {k: moov[b:e] for k, _, b, e in leading_boxes(moov, ebody + 78, eend)}
            return kind, children
    return "", {}


def video_track_id(moov: bytes) -> int | None:
    """track_ID of the first video trak (tkhd), from a whole moov box's bytes."""
    for trak, trak_end in video_traks(moov):
        for body, end in find_path(moov, trak, trak_end, ("tkhd",)):
            at = body + (20 if moov[body] == 1 else 12)
            if at + 4 <= end:
                return int(struct.unpack_from(">I", moov, at)[0])
    return None


def video_composition_offsets(moov: bytes) -> CompositionOffsets | None:
    """The first video trak's ctts (None without one, or one that fails its bounds check)."""
    for trak, trak_end in video_traks(moov):
        for body, end in find_path(moov, trak, trak_end, ("mdia", "minf", "stbl", "ctts")):
            if end - body < 8:
                return None
            (count,) = struct.unpack_from(">I", moov, body + 4)
            if count == 0 or count * 8 > end - body - 8:
                return None
            return CompositionOffsets(composition_runs(moov, (body, end)))
        return None
    return None


def vpcc_pixel_format(vpcc: bytes) -> str | None:
    """The pixel format a vpcC (version 1) declares; the muxer needs it to write one back."""
    if len(vpcc) < 12 or vpcc[0] != 1:
        return None
    depth, chroma = vpcc[6] >> 4, (vpcc[6] >> 1) & 7
    return _VP9_FORMATS.get((depth, chroma))


def random_access_nal(codec: str, sample: bytes, length_size: int) -> bool | None:
    """Whether a length-prefixed H.264/HEVC sample holds an IDR (H.264) or IRAP (HEVC) slice.

    `stss` may mark recovery points (x264 intra refresh) that a decoder cannot start from;
    None for other codecs or an unparsable sample.
    """
    if codec not in ("h264", "hevc") or length_size not in (1, 2, 4):
        return None
    pos = 0
    while pos + length_size < len(sample):
        n = int.from_bytes(sample[pos : pos + length_size], "big")
        pos += length_size
        if n == 0 or pos + n > len(sample):
            return None
        found = (_h264_nal if codec == "h264" else _hevc_nal)(sample, pos, n)
        if found is not None:
            return found
        pos += n
    return None


def _h264_nal(sample: bytes, pos: int, n: int) -> bool | None:
    """True for an IDR slice; for a non-IDR slice, whether it is an I slice (it starts an
    open GOP; a P slice is a recovery point); None for a NAL that is no slice."""
    kind = sample[pos] & 0x1F
    if kind == 5:
        return True
    if kind == 1:
        return _h264_slice_type(sample[pos + 1 : pos + min(n, 17)]) in (2, 4, 7, 9)
    return None


def _hevc_nal(sample: bytes, pos: int, n: int) -> bool | None:
    """True for an IRAP slice, False for another slice, None for a NAL that is no slice."""
    kind = (sample[pos] >> 1) & 0x3F
    if 16 <= kind <= 23:
        return True
    if kind < 16:
        return False
    return None


def _h264_slice_type(header: bytes) -> int | None:
    """slice_type from the first bytes of a slice header (two Exp-Golomb codes)."""
    bits = "".join(f"{b:08b}" for b in header.replace(b"\x00\x00\x03", b"\x00\x00"))
    pos, values = 0, []
    for _ in range(2):  # first_mb_in_slice, slice_type
        zeros = 0
        while pos < len(bits) and bits[pos] == "0":
            zeros, pos = zeros + 1, pos + 1
        if pos + zeros >= len(bits) or zeros > 16:
            return None
        values.append(int(bits[pos : pos + zeros + 1], 2) - 1)
        pos += zeros + 1
    return values[1]
