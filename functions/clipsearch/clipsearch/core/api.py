"""The search API's wire contract: requests to build, responses and result codes to interpret."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clipsearch.errors import AnswerLost, PermanentError, Reason, TransientError
from clipsearch.model import Hit, Query, SourceVideo, VideoMetadata

SEARCH_PATH = "/search_clips_by_image"
METADATA_PATH = "/get_metadata"
DOWNLOAD_PATH = "/download"


@dataclass(frozen=True)
class CodeRule:
    transient: bool
    reason: Reason | None = None
    retry_once: bool = False


# The result-code table (see the API facts). v2 integer codes equal HTTP statuses.
CODE_TABLE: Mapping[str, CodeRule] = {
    "0001": CodeRule(False, Reason.API_INVALID_REQUEST, retry_once=True),
    "0003": CodeRule(False, Reason.API_INVALID_REQUEST),
    "0401": CodeRule(False, Reason.API_UNAUTHORIZED),
    "0402": CodeRule(False, Reason.API_INSUFFICIENT_CREDITS),
    "0403": CodeRule(False, Reason.API_ACCOUNT_DISABLED),
    "0409": CodeRule(True),  # "Duplicate requests are not allowed" (the vendor says no more)
    "0429": CodeRule(True),
    "9009": CodeRule(False, Reason.API_PERMISSION_DENIED),
    "400": CodeRule(False, Reason.API_INVALID_REQUEST),
    "401": CodeRule(False, Reason.API_UNAUTHORIZED),
    "402": CodeRule(False, Reason.API_INSUFFICIENT_CREDITS),
    "403": CodeRule(False, Reason.API_ACCOUNT_DISABLED),
    "409": CodeRule(True),
    "415": CodeRule(False, Reason.API_INVALID_REQUEST),
    "429": CodeRule(True),
    "500": CodeRule(True),
}
# HTTP statuses that mean "try again" whatever the body says.
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class SearchForm:
    """A multipart search request, minus the image bytes and the key."""

    url: str
    fields: tuple[tuple[str, str], ...]
    filename: str
    content_type: str


def build_search_form(base_url: str, query: Query) -> SearchForm:
    basename = query.object.name.rsplit("/", 1)[-1]
    return SearchForm(
        url=base_url + SEARCH_PATH,
        fields=(
            ("video_no", query.video_no),
            ("prompt", query.prompt),
            ("unique_id", query.unique_id),
        ),
        filename=basename,
        content_type=query.object.content_type,
    )


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP-date: rare enough to fall back to our own backoff
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _envelope(status: int, headers: Mapping[str, str], body: bytes) -> Mapping[str, Any]:
    """Return the JSON envelope of a successful call; raise the classified failure otherwise."""
    retry_after = parse_retry_after(headers)
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    code = str(doc.get("code", "")) if isinstance(doc, Mapping) else ""
    message = str(doc.get("msg", "")) if isinstance(doc, Mapping) else ""
    if status != 200:
        if code in ("", "0000"):
            code = str(status)
        if code not in CODE_TABLE:
            if status in TRANSIENT_STATUSES:
                raise TransientError(f"API answered HTTP {status}", retry_after_s=retry_after)
            raise PermanentError(Reason.API_REJECTED, f"API answered HTTP {status}")
    elif not isinstance(doc, Mapping):
        raise AnswerLost("API answered HTTP 200 with a body that is not a JSON object")
    elif code == "0000":
        return doc
    rule = CODE_TABLE.get(code)
    detail = f"API code {code}" + (f": {message}" if message else "")
    if rule is None:
        raise PermanentError(Reason.API_REJECTED, detail)
    if rule.transient:
        raise TransientError(detail, retry_after_s=retry_after)
    assert rule.reason is not None
    raise PermanentError(rule.reason, detail, retry_once=rule.retry_once)


def _field(item: Mapping[str, Any], *names: str) -> Any:
    """The API family mixes snake_case and camelCase; accept either."""
    for name in names:
        if name in item:
            return item[name]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _source(bucket: Any, blob: Any) -> SourceVideo | None:
    if isinstance(bucket, str) and bucket and isinstance(blob, str) and blob:
        return SourceVideo(bucket, blob)
    return None


def interpret_search_response(status: int, headers: Mapping[str, str], body: bytes) -> list[Hit]:
    """Typed hits, best first. An unusable success body is an answer lost: the search ran.

    A success whose `data` is `null` or `{}` (an older page's example) found nothing: no hits.
    """
    doc = _envelope(status, headers, body)
    data = doc.get("data")
    if data is None or (isinstance(data, Mapping) and not data):
        return []
    if not isinstance(data, list):
        raise AnswerLost("API success envelope has a 'data' that is not a list")
    hits = []
    for item in data:
        if not isinstance(item, Mapping):
            raise AnswerLost("API hit is not an object")
        start = _number(_field(item, "start_time", "startTime"))
        end = _number(_field(item, "end_time", "endTime"))
        score = _number(_field(item, "score"))
        if start is None or end is None or start < 0 or end < start:
            raise AnswerLost(f"API hit has unusable times: {start!r}..{end!r}")
        hits.append(
            Hit(
                start_time=start,
                end_time=end,
                score=min(max(score if score is not None else 0.0, 0.0), 1.0),
                source=_source(
                    _field(item, "video_bucket", "videoBucket"),
                    _field(item, "video_blob", "videoBlob"),
                ),
            )
        )
    return sorted(hits, key=lambda h: h.score, reverse=True)


def interpret_metadata_response(
    status: int, headers: Mapping[str, str], body: bytes, video_no: str
) -> VideoMetadata:
    doc = _envelope(status, headers, body)
    data = doc.get("data")
    if not isinstance(data, Mapping):
        raise TransientError("API metadata envelope has no 'data' object")
    return VideoMetadata(
        video_no=str(_field(data, "video_no", "videoNo") or video_no),
        status=str(_field(data, "status") or ""),
        duration=_number(_field(data, "duration")),
        source=_source(_field(data, "bucket", "video_bucket"), _field(data, "blob", "video_blob")),
    )


def interpret_download_error(status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Downloads answer errors as JSON (v1: a string code; v2: an integer code equal to the
    HTTP status); raise the classified failure for one. An "Insufficient balance" message is
    the account running out, whatever its code says: an operator alert, as for searches."""
    try:
        _envelope(status, headers, body)
    except PermanentError as error:
        if "insufficient balance" in error.message.lower():
            raise PermanentError(Reason.API_INSUFFICIENT_CREDITS, error.message) from None
        raise
    raise PermanentError(Reason.API_REJECTED, "download answered JSON instead of the file")
