"""A clip object's custom metadata: what the clip really holds, written with it and read back.

Written when a clip is cut and read when it is reused, so a reused clip reports the same
times, keyframe snap and poster as the query that cut it. Both sides live here so the keys
and their spelling cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

START_KEY = "clipsearch-start"
END_KEY = "clipsearch-end"
SNAPPED_KEY = "clipsearch-snapped"
POSTER_KEY = "clipsearch-poster"
DROPPED_KEY = "clipsearch-dropped-tracks"  # notes for people: what of the source it leaves out
# A track name holds ", " itself ("audio#3 (aac, eng)"): split only where a new one starts.
_NEXT_TRACK = re.compile(r", (?=\w+#\d+ \()")


@dataclass(frozen=True)
class ClipMeta:
    """What a stored clip holds; None where its metadata does not say (e.g. a copy)."""

    start: float | None = None
    end: float | None = None
    keyframe_snapped: bool | None = None
    poster_uri: str | None = None
    dropped_tracks: tuple[str, ...] = ()


def encode_clip_metadata(
    start: float,
    end: float,
    keyframe_snapped: bool,
    poster_uri: str,
    dropped_tracks: Sequence[str] = (),
) -> dict[str, str]:
    """The custom metadata to store with a clip (repr keeps a float exact)."""
    metadata = {
        START_KEY: repr(start),
        END_KEY: repr(end),
        SNAPPED_KEY: "true" if keyframe_snapped else "false",
        POSTER_KEY: poster_uri,
    }
    if dropped_tracks:
        metadata[DROPPED_KEY] = ", ".join(dropped_tracks)
    return metadata


def parse_clip_metadata(metadata: Mapping[str, str] | None) -> ClipMeta:
    """A stored object's metadata read back; a missing or empty key reads as None.

    A start or end that is not a number raises ValueError (as the reader always has): only
    something other than this service writes such a clip.
    """
    meta = metadata or {}
    start, end = meta.get(START_KEY), meta.get(END_KEY)
    snapped, poster = meta.get(SNAPPED_KEY), meta.get(POSTER_KEY)
    dropped = meta.get(DROPPED_KEY)
    return ClipMeta(
        start=float(start) if start else None,
        end=float(end) if end else None,
        keyframe_snapped=snapped == "true" if snapped else None,
        poster_uri=poster or None,
        dropped_tracks=tuple(_NEXT_TRACK.split(dropped)) if dropped else (),
    )
