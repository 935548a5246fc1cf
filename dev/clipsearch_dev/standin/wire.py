"""The vendor's wire format as the stand-in speaks it: paths, messages, envelopes, ranges."""

from __future__ import annotations

import json
import math
import re
import socket
from typing import Any, Literal

from flask import Response, g, request

API_PREFIX = "/serve/api/v1"
MAX_IMAGE_BYTES = 20 * 1024 * 1024
ALLOWED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})
STATUSES = frozenset({"PARSE", "UNPARSE", "PARSE_ERROR"})
DOWNLOAD_CHUNK = 1024 * 1024
ENDPOINTS = ("search_clips_by_image", "get_metadata", "download")

# Messages the stand-in answers with; the prompt one is the vendor's documented wording.
MSG_PROMPT_EMPTY = "The prompt parameter cannot be empty!"
MSG_NOT_MULTIPART = "Current request is not a multipart request"
MSG_FILE_MISSING = "Required request part 'file' is not present"
MSG_FILE_EMPTY = "The file cannot be empty!"
MSG_FILE_EXTENSION = "Unsupported file type! Allowed: .jpg, .jpeg, .png, .gif, .bmp, .webp"
MSG_FILE_CONTENT_TYPE = "The file content type must start with image/!"
MSG_FILE_TOO_LARGE = "The file size cannot exceed 20MB!"
MSG_FILE_NOT_IMAGE = "The file is not a readable image!"
MSG_VIDEO_NO_EMPTY = "The video_no parameter cannot be empty!"
MSG_VIDEO_NOT_FOUND = "Video not found: {video_no} (unique_id={unique_id})"
MSG_VIDEO_STATUS = "Video {video_no} cannot be searched: status is {status}"
MSG_UNAUTHORIZED = "Unauthorized: invalid or missing API key"
MSG_RATE_LIMITED = "Too many requests, please retry later"
MSG_NO_CREDITS = "insufficient credits"
MSG_DISABLED = "account disabled"
MSG_DOWNLOAD_PARAMS = "bucket and blob cannot be empty"
MSG_RESOURCE_MISSING = "Resource does not exist"
MSG_INSUFFICIENT_BALANCE = "Insufficient balance"


def client_gone() -> bool:
    """True when the caller has closed its connection (e.g. its read timeout fired)."""
    sock = request.environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def search_filename() -> str | None:
    """The uploaded image's file name, to tell searches apart in the stats."""
    if not request.mimetype.startswith("multipart/form-data"):
        return None
    upload = request.files.get("file")
    return None if upload is None else (upload.filename or "")


def envelope(code: str, msg: str, data: Any = None, http: int = 200) -> Response:
    ok = code == "0000"
    body = {"code": code, "msg": msg, "data": data, "success": ok, "failed": not ok}
    g.result = code
    return Response(json.dumps(body), status=http, mimetype="application/json")


def retry_after(resp: Response, seconds: float) -> Response:
    resp.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return resp


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["bad"] | None:
    """Inclusive byte span for a single `bytes=` range; None = whole file; "bad" = 416.

    Multiple ranges and malformed headers are ignored (RFC 9110 allows serving 200).
    """
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:
        n = int(last)
        if n == 0 or size == 0:
            return "bad"
        return max(0, size - n), size - 1
    a = int(first)
    if a >= size:
        return "bad"
    b = int(last) if last else size - 1
    if b < a:
        return None
    return a, min(b, size - 1)


def admin_error(msg: str) -> Response:
    return Response(json.dumps({"error": msg}), status=400, mimetype="application/json")
