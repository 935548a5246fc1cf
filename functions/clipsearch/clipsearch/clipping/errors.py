"""Why a clip could not be cut: a stable reason the caller records before falling back."""

from __future__ import annotations

from enum import StrEnum


class ClipReason(StrEnum):
    """Stable reason codes; the caller falls back to copy or reference and records one."""

    UNSUPPORTED_CONTAINER = "unsupported_container"
    UNSUPPORTED_CODEC = "unsupported_codec"
    NO_VIDEO_STREAM = "no_video_stream"
    INVALID_RANGE = "invalid_range"
    START_BEYOND_DURATION = "start_beyond_duration"
    CLIP_TOO_LONG = "clip_too_long"
    INDEX_TOO_LARGE = "index_too_large"
    SOURCE_UNREADABLE = "source_unreadable"
    SOURCE_CHANGED = "source_changed"
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the event's time ran out before this clip
    MALFORMED_SOURCE = "malformed_source"  # the source's boxes or tables fail a bounds check
    ENGINE_ERROR = "engine_error"  # anything else the engine raised (a bug or a hostile file)
    SELF_CHECK_FAILED = "self_check_failed"  # the written clip did not read back as planned


class ClipUnavailable(Exception):
    """This clip cannot be cut from this source; `reason` is stable, `message` is for humans.

    `transient` is true when the same request may succeed later (a network error or a 5xx
    while reading the source), so the caller can retry instead of falling back.
    """

    def __init__(self, reason: ClipReason, message: str, *, transient: bool = False) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.transient = transient


class TablesCannotServe(Exception):
    """The synthetic index (our tables) cannot serve this cut: it is done again with the
    demuxer parsing the whole moov. Only this falls back; any other error is a failure."""
