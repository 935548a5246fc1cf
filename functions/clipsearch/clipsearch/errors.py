"""One exception root, split by what the trigger should do next.

A `PermanentError` ends the query with an error outcome and acknowledges the event; a
`TransientError` propagates so the trigger redelivers. Every permanent failure carries a
stable `Reason` that subscribers can branch on.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Stable reason codes of error outcomes (documented in docs/reasons.md)."""

    MISSING_VIDEO_NO = "missing_video_no"
    MISSING_PROMPT = "missing_prompt"
    INVALID_METADATA = "invalid_metadata"
    UNSUPPORTED_EXTENSION = "unsupported_extension"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    EMPTY_IMAGE = "empty_image"
    IMAGE_TOO_LARGE = "image_too_large"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED_IMAGE = "truncated_image"
    IMAGE_TYPE_MISMATCH = "image_type_mismatch"
    OBJECT_GONE = "object_gone"
    API_INVALID_REQUEST = "api_invalid_request"
    API_UNAUTHORIZED = "api_unauthorized"
    API_INSUFFICIENT_CREDITS = "api_insufficient_credits"
    API_ACCOUNT_DISABLED = "api_account_disabled"
    API_PERMISSION_DENIED = "api_permission_denied"
    API_REJECTED = "api_rejected"
    VIDEO_NOT_FOUND = "video_not_found"
    VIDEO_NOT_INDEXED = "video_not_indexed"
    VIDEO_PARSE_ERROR = "video_parse_error"
    SEARCH_UNCONFIRMED = "search_unconfirmed"
    EVENT_TOO_OLD = "event_too_old"
    RETRIES_EXHAUSTED = "retries_exhausted"
    INTERNAL_ERROR = "internal_error"
    BAD_EVENT = "bad_event"


# Reasons an operator must act on (credentials, billing); logged at ALERT severity.
OPERATOR_ALERT_REASONS = frozenset(
    {Reason.API_UNAUTHORIZED, Reason.API_INSUFFICIENT_CREDITS, Reason.API_ACCOUNT_DISABLED}
)


class ClipSearchError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(ClipSearchError):
    """The deployment's settings are unusable; raised at start-up, never per event."""


class PermanentError(ClipSearchError):
    """The query cannot succeed however often it is retried."""

    def __init__(self, reason: Reason, message: str, *, retry_once: bool = False) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        # The vendor's own client retries "0001" once as a glitch; so do we, once.
        self.retry_once = retry_once


class TransientError(ClipSearchError):
    """Worth retrying later; raising it out of the function asks the trigger to redeliver."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class AnswerLost(TransientError):
    """The request may have reached the vendor and run, but its answer did not reach us.

    A timeout after sending, a dropped connection, an HTTP 200 whose body is unusable. Harmless
    to retry for a free call; a search is billed when it runs, so a search never is.
    """


class FetchRefused(ClipSearchError):
    """This source may not be fetched for this query (e.g. over the per-query byte cap)."""


def where_raised(error: BaseException) -> str:
    """The exception's type and the module.function that raised it; never its text.

    Its text can hold a local path or, from a client library, a request's headers (the key).
    When the raising frame is not ours, the last of our frames on the way is named too.
    """
    frames: list[tuple[str, str]] = []
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        frames.append((str(frame.f_globals.get("__name__", "?")), frame.f_code.co_name))
        tb = tb.tb_next
    kind = type(error).__name__
    if not frames:
        return kind
    module, function = frames[-1]
    where = f"{kind} in {module}.{function}"
    ours = [f for f in frames if f[0].startswith("clipsearch")]
    if ours and ours[-1] != frames[-1]:
        where += f" (via {ours[-1][0]}.{ours[-1][1]})"
    return where
