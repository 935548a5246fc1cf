"""Honest fallbacks per corpus kind (and hit), each with why; and the open defects.

ALLOWED[(kind or "*", hit or "*")] = {reason: why we genuinely cannot cut it}.
OPEN_DEFECTS[(kind, hit, mode)] = what is wrong today (xfail strict: fixing it turns it red,
then delete the line).
"""

from __future__ import annotations

BEYOND_END = {
    "start_beyond_duration": "the hit starts after the video ends: there is nothing to show",
}

ALLOWED: dict[tuple[str, str], dict[str, str]] = {
    ("audio_only", "*"): {
        "no_video_stream": "an audio-only file has no picture to clip; the caller keeps the link",
    },
    ("frag_global_sidx_broken", "*"): {
        "malformed_source": (
            "ffmpeg 5.1 wrote it with wrong sample offsets (see its recipe): no decoder can "
            "read its video, so no clip can be right"
        ),
    },
    # Cost-bound, not impossible: the small files of these kinds are cut right (read whole).
    ("frag_separate_moof_1s_large", "*"): {
        "unsupported_container": (
            "a moof per track: FFmpeg's mfra seek cannot load such a fragment, so a right clip "
            "needs the file read from the start; over 8 MiB the engine declines instead"
        ),
    },
    ("dash_skip_trailer_large", "*"): {
        "unsupported_container": (
            "a sidx per fragment and no mfra: the index is spread over the whole file, so "
            "opening it reads every fragment; over 8 MiB the engine declines instead"
        ),
    },
    ("frag_no_index", "*"): {
        "unsupported_container": (
            "fragmented with neither mfra nor sidx: finding a time means reading every moof, "
            "i.e. the whole file, which is what clipping exists to avoid"
        ),
    },
    ("frag_audio_tfdt_back", "*"): {
        "unsupported_container": (
            "each audio fragment's tfdt lies 5 ms before the previous fragment ends: the "
            "source plays overlapping audio at every join, which a clip (one flat run of "
            "samples) cannot hold without shortening a packet; the engine declines"
        ),
    },
    ("frag_every_frame", "*"): {
        "unsupported_container": (
            "ffmpeg 5.1's frag_every_frame writes the audio's last fragments with zero "
            "durations and repeated decode times (two packets at 11.30 s): the clip's audio "
            "cannot be the source's run there, so the engine declines every hit reaching it "
            "(end; sweep_07 and sweep_08 in the full run)"
        ),
    },
}

OPEN_DEFECTS: dict[tuple[str, str, str], str] = {}


def allowed_reasons(kind: str, hit: str, *, beyond_end: bool = False) -> dict[str, str]:
    """Reasons allowed for this cut; `beyond_end`: the hit starts after the video's end."""
    out: dict[str, str] = dict(BEYOND_END) if beyond_end else {}
    for key in (("*", "*"), ("*", hit), (kind, "*"), (kind, hit)):
        out.update(ALLOWED.get(key, {}))
    return out
