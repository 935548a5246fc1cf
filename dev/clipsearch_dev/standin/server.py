"""A stand-in for the memories.ai v1 API, faithful to the documented contract.

It is the project's only fake: it reads videos from Cloud Storage (the emulator in tests),
really searches them (see `index.py`), enforces the documented validation rules, auth, rate
limits and credits, and lets tests inject the failures the real service is known to produce.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import math
import random
import re
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal, Self

from flask import Flask, Response, g, request
from PIL import Image
from werkzeug.serving import BaseWSGIServer, make_server

from clipsearch_dev.standin.index import VideoIndex, image_features, index_video, search

log = logging.getLogger(__name__)

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

_INJECTED_MSGS = {
    "0001": "parameter error",
    "0003": "parameter format error",
    "0401": MSG_UNAUTHORIZED,
    "0402": MSG_NO_CREDITS,
    "0403": MSG_DISABLED,
    "0409": "duplicate request not allowed",
    "0429": MSG_RATE_LIMITED,
    "9009": "permission denied",
}

Failure = int | str
Status = Literal["PARSE", "UNPARSE", "PARSE_ERROR"]


def _check_failure(spec: object) -> Failure:
    """Accept the documented failure spellings, optionally prefixed with an endpoint name."""
    if isinstance(spec, bool) or not isinstance(spec, int | str):
        raise ValueError(f"bad failure spec {spec!r}")
    if isinstance(spec, int):
        if not 100 <= spec <= 599:
            raise ValueError(f"bad HTTP status {spec}")
        return spec
    _, body = _split_target(spec)
    ok = (
        re.fullmatch(r"\d{3}|\d{4}", body) is not None
        or body in {"malformed_json", "drop_connection"}
        or re.fullmatch(r"slow:\d+(\.\d+)?", body) is not None
    )
    if not ok:
        raise ValueError(f"bad failure spec {spec!r}")
    return spec


def _split_target(spec: str) -> tuple[str | None, str]:
    head, sep, rest = spec.partition(":")
    if sep and head in {*ENDPOINTS, "search"}:
        return ("search_clips_by_image" if head == "search" else head), rest
    return None, spec


_ANSWER_LOST = frozenset({"malformed_json", "drop_connection"})


@dataclass
class Knobs:
    """Run-time behaviour switches; tests and other processes change them while it serves.

    `fail_next` entries: an HTTP status (500, or "503"), a 4-digit result code sent with HTTP
    200 ("0001", "0429", "0402"), "malformed_json", "drop_connection" or "slow:<seconds>";
    prefix with "search:", "get_metadata:" or "download:" to aim at one endpoint.
    `bill_abandoned` is the pessimistic billing model: a search runs and is billed even when
    its caller timed out, or when its answer is then dropped or garbled.
    """

    latency_s: float = 0.0
    fail_next: list[Failure] = field(default_factory=list)
    fail_rate: float = 0.0
    fail_code: Failure = 500
    fail_seed: int | None = None
    credits: int | None = None
    disabled: bool = False
    rate_per_s: float | None = 1.0
    search_burst: int = 1
    download_rate_per_min: int | None = 12
    omit_location: bool = False
    bill_abandoned: bool = False
    top_k: int = 5
    clip_seconds: float = 4.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _rng: random.Random | None = field(default=None, repr=False, compare=False)
    _rng_seed: int | None = field(default=None, repr=False, compare=False)

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "latency_s",
        "fail_next",
        "fail_rate",
        "fail_code",
        "fail_seed",
        "credits",
        "disabled",
        "rate_per_s",
        "search_burst",
        "download_rate_per_min",
        "omit_location",
        "bill_abandoned",
        "top_k",
        "clip_seconds",
    )

    def merge(self, changes: Mapping[str, Any]) -> None:
        """Apply a JSON-like mapping; all-or-nothing, unknown names are an error."""
        unknown = set(changes) - set(self._FIELDS)
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            checked[name] = self._check(name, value)
        with self._lock:
            for name, value in checked.items():
                setattr(self, name, value)
            if "fail_seed" in checked:
                self._rng = None  # re-seed: the same seed replays the same failures

    @staticmethod
    def _check(name: str, value: Any) -> Any:
        def number(v: Any, *, optional: bool = False, positive: bool = False) -> Any:
            if v is None and optional:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{name} must be a number")
            if v < 0 or (positive and v == 0):
                raise ValueError(f"{name} out of range")
            return v

        if name == "fail_next":
            if not isinstance(value, list):
                raise ValueError("fail_next must be a list")
            return [_check_failure(v) for v in value]
        if name == "fail_code":
            return _check_failure(value)
        if name in {"disabled", "omit_location", "bill_abandoned"}:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a boolean")
            return value
        if name in {"rate_per_s", "download_rate_per_min"}:
            return number(value, optional=True, positive=True)
        if name in {"credits", "fail_seed"}:
            return None if value is None else int(number(value))
        if name in {"search_burst", "top_k"}:
            return int(number(value, positive=True))
        if name == "clip_seconds":
            return number(value, positive=True)
        if name == "fail_rate" and number(value) > 1:
            raise ValueError("fail_rate must be within [0, 1]")
        return number(value)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {name: _copy(getattr(self, name)) for name in self._FIELDS}

    def take_failure(self, endpoint: str) -> str | None:
        """The failure to inject into this request, if any (queue first, then random)."""
        with self._lock:
            for i, spec in enumerate(self.fail_next):
                target, body = _split_target(spec) if isinstance(spec, str) else (None, str(spec))
                if target is None or target == endpoint:
                    del self.fail_next[i]
                    return body
            if self.fail_rate > 0:
                if self._rng is None or self._rng_seed != self.fail_seed:
                    self._rng = random.Random(self.fail_seed)
                    self._rng_seed = self.fail_seed
                if self._rng.random() < self.fail_rate:
                    return str(self.fail_code)
            return None

    def charge_credit(self) -> bool:
        """Take one credit for a billed call; False when the balance is exhausted."""
        with self._lock:
            if self.credits is None:
                return True
            if self.credits <= 0:
                return False
            self.credits -= 1
            return True

    def out_of_credits(self) -> bool:
        with self._lock:
            return self.credits is not None and self.credits <= 0


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


class Stats:
    """Thread-safe counters of what the stand-in did; read them after the fact in tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._billed = 0
        self._billed_by_file: dict[str, int] = {}
        self._searching: dict[str, int] = {}
        self._requests: dict[str, int] = {}
        self._responses: dict[str, int] = {}
        self._download_bytes = 0

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self._requests[endpoint] = self._requests.get(endpoint, 0) + 1

    def count_response(self, result: str) -> None:
        with self._lock:
            self._responses[result] = self._responses.get(result, 0) + 1

    def count_billed(self, filename: str = "") -> None:
        with self._lock:
            self._billed += 1
            self._billed_by_file[filename] = self._billed_by_file.get(filename, 0) + 1

    def search_started(self, filename: str) -> None:
        with self._lock:
            self._searching[filename] = self._searching.get(filename, 0) + 1

    def search_ended(self, filename: str) -> None:
        with self._lock:
            left = self._searching.get(filename, 0) - 1
            if left > 0:
                self._searching[filename] = left
            else:
                self._searching.pop(filename, None)

    def count_download_bytes(self, n: int) -> None:
        with self._lock:
            self._download_bytes += n

    @property
    def billed_searches(self) -> int:
        with self._lock:
            return self._billed

    @property
    def billed_by_file(self) -> dict[str, int]:
        """Billed searches per uploaded image file name (the query object's base name)."""
        with self._lock:
            return dict(self._billed_by_file)

    @property
    def searching(self) -> set[str]:
        """File names of the searches being answered right now (latency and search included):
        a caller that dies now has a search in flight."""
        with self._lock:
            return set(self._searching)

    @property
    def requests(self) -> dict[str, int]:
        """Requests per endpoint name (e.g. "search_clips_by_image", "download")."""
        with self._lock:
            return dict(self._requests)

    @property
    def responses(self) -> dict[str, int]:
        """Responses per result code ("0000", "0429", ...) or "HTTP <status>" for non-JSON."""
        with self._lock:
            return dict(self._responses)

    @property
    def download_bytes(self) -> int:
        with self._lock:
            return self._download_bytes

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "billed_searches": self._billed,
                "billed_by_file": dict(self._billed_by_file),
                "searching": sorted(self._searching),
                "requests": dict(self._requests),
                "responses": dict(self._responses),
                "download_bytes": self._download_bytes,
            }

    def reset(self) -> None:
        with self._lock:
            self._billed = 0
            self._billed_by_file.clear()
            self._searching.clear()
            self._requests.clear()
            self._responses.clear()
            self._download_bytes = 0


class _TokenBucket:
    """Per-account search limit: `rate` tokens per second, at most `burst` saved up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: float | None = None
        self._last = time.monotonic()

    def take(self, rate: float | None, burst: int) -> float:
        """0 when allowed, else seconds until a token will be available."""
        with self._lock:
            now = time.monotonic()
            if rate is None:
                self._last = now
                return 0.0
            tokens = float(burst) if self._tokens is None else self._tokens
            tokens = min(float(burst), tokens + (now - self._last) * rate)
            self._last = now
            if tokens >= 1.0:
                self._tokens = tokens - 1.0
                return 0.0
            self._tokens = tokens
            return (1.0 - tokens) / rate


class _SlidingWindow:
    """Download limit as the vendor words it: at most N requests in any 60 seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: deque[float] = deque()

    def take(self, per_minute: int | None) -> float:
        with self._lock:
            now = time.monotonic()
            while self._times and now - self._times[0] >= 60.0:
                self._times.popleft()
            if per_minute is not None and len(self._times) >= per_minute:
                return self._times[0] + 60.0 - now
            self._times.append(now)
            return 0.0


@dataclass(frozen=True)
class VideoMeta:
    """What `get_metadata` reports about a registered video."""

    video_no: str
    unique_id: str
    status: str
    duration: float | None
    bucket: str
    blob: str

    def as_json(self) -> dict[str, Any]:
        return {
            "video_no": self.video_no,
            "status": self.status,
            "duration": self.duration,
            "bucket": self.bucket,
            "blob": self.blob,
            "unique_id": self.unique_id,
        }


@dataclass
class _Video:
    meta: VideoMeta
    index: VideoIndex | None


def _client_gone() -> bool:
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


def _search_filename() -> str | None:
    """The uploaded image's file name, to tell searches apart in the stats."""
    if not request.mimetype.startswith("multipart/form-data"):
        return None
    upload = request.files.get("file")
    return None if upload is None else (upload.filename or "")


def _envelope(code: str, msg: str, data: Any = None, http: int = 200) -> Response:
    ok = code == "0000"
    body = {"code": code, "msg": msg, "data": data, "success": ok, "failed": not ok}
    g.result = code
    return Response(json.dumps(body), status=http, mimetype="application/json")


def _retry_after(resp: Response, seconds: float) -> Response:
    resp.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return resp


def _parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["bad"] | None:
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


class StandinServer:
    """The stand-in API on 127.0.0.1 at a free port, served from a background thread."""

    def __init__(
        self,
        storage_client: Any,
        *,
        api_key: str,
        search_rate_per_s: float | None = 1.0,
        top_k: int = 5,
        clip_seconds: float = 4.0,
        download_rate_per_min: int | None = 12,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must be non-empty")
        self._storage = storage_client
        self._api_key = api_key
        self._host = host
        self._port = port
        self._knob_defaults: dict[str, Any] = {
            "rate_per_s": search_rate_per_s,
            "top_k": top_k,
            "clip_seconds": clip_seconds,
            "download_rate_per_min": download_rate_per_min,
        }
        self.knobs = Knobs(**self._knob_defaults)
        self.stats = Stats()
        self._videos: dict[tuple[str, str], _Video] = {}
        self._videos_lock = threading.Lock()
        self._search_bucket = _TokenBucket()
        self._download_window = _SlidingWindow()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    def __repr__(self) -> str:  # never show the key
        return f"StandinServer(root_url={self.root_url if self._server else None!r})"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = make_server(self._host, self._port, self.app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="standin", daemon=True
        )
        self._thread.start()
        log.info("stand-in listening on %s", self.root_url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("stand-in is not running")
        return int(self._server.server_port)

    @property
    def root_url(self) -> str:
        """Where the admin routes (/_standin/...) live."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base, like https://api.memories.ai/serve/api/v1."""
        return self.root_url + API_PREFIX

    def reset(self) -> None:
        """Knobs, counters and rate limiters back to the start; registered videos stay."""
        self.knobs.merge(Knobs(**self._knob_defaults).as_dict())
        self.stats.reset()
        self._search_bucket = _TokenBucket()
        self._download_window = _SlidingWindow()

    # -- videos ------------------------------------------------------------------------

    def register_video(
        self,
        video_no: str,
        bucket: str,
        blob: str,
        unique_id: str = "default",
        status: str = "PARSE",
    ) -> VideoMeta:
        """Read the MP4 from Cloud Storage and index it, as the vendor's parse step would."""
        if not video_no or not bucket or not blob or not unique_id:
            raise ValueError("video_no, bucket, blob and unique_id must be non-empty")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        index: VideoIndex | None = None
        try:
            index = self._index_from_storage(bucket, blob)
        except Exception:
            if status != "PARSE_ERROR":
                raise
        meta = VideoMeta(
            video_no=video_no,
            unique_id=unique_id,
            status=status,
            duration=None if index is None else round(index.duration, 3),
            bucket=bucket,
            blob=blob,
        )
        with self._videos_lock:
            self._videos[(unique_id, video_no)] = _Video(meta, index)
        log.info("registered video %s/%s status=%s", unique_id, video_no, status)
        return meta

    def set_status(self, video_no: str, status: str, unique_id: str = "default") -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        with self._videos_lock:
            video = self._videos[(unique_id, video_no)]
            if status == "PARSE" and video.index is None:
                raise ValueError("video was never indexed; it cannot become PARSE")
            meta = video.meta
            video.meta = VideoMeta(
                meta.video_no, meta.unique_id, status, meta.duration, meta.bucket, meta.blob
            )

    def _index_from_storage(self, bucket: str, blob: str) -> VideoIndex:
        with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
            path = Path(tmp) / "video.mp4"
            self._storage.bucket(bucket).blob(blob).download_to_filename(str(path))
            return index_video(path)

    def _video(self, unique_id: str, video_no: str) -> _Video | None:
        with self._videos_lock:
            return self._videos.get((unique_id, video_no))

    # -- HTTP --------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("clipsearch_dev.standin")
        # Bodies above 20 MB must reach validation (to answer 0001), but not without bound.
        app.config["MAX_CONTENT_LENGTH"] = 3 * MAX_IMAGE_BYTES

        @app.after_request
        def _count(resp: Response) -> Response:
            if request.path.startswith(API_PREFIX):
                self.stats.count_response(str(g.get("result", f"HTTP {resp.status_code}")))
            return resp

        def api(name: str) -> Callable[[Callable[[], Response]], Callable[[], Response]]:
            def wrap(handler: Callable[[], Response]) -> Callable[[], Response]:
                def view() -> Response:
                    started = time.monotonic()
                    searching = _search_filename() if name == "search_clips_by_image" else None
                    if searching is not None:
                        self.stats.search_started(searching)
                    try:
                        resp = self._gate(name) or handler()
                        late = g.pop("late_failure", None)
                        if late is not None:
                            resp = self._inject(late) or resp
                    finally:
                        if searching is not None:
                            self.stats.search_ended(searching)
                    log.info(
                        "%s -> %s in %.3fs",
                        name,
                        g.get("result", resp.status_code),
                        time.monotonic() - started,
                    )
                    return resp

                view.__name__ = f"api_{name}"
                return view

            return wrap

        app.add_url_rule(
            f"{API_PREFIX}/search_clips_by_image",
            view_func=api("search_clips_by_image")(self._search),
            methods=["POST"],
        )
        app.add_url_rule(
            f"{API_PREFIX}/get_metadata",
            view_func=api("get_metadata")(self._get_metadata),
            methods=["GET"],
        )
        app.add_url_rule(
            f"{API_PREFIX}/download",
            view_func=api("download")(self._download),
            methods=["GET"],
        )
        app.add_url_rule("/_standin/knobs", view_func=self._admin_knobs, methods=["GET", "POST"])
        app.add_url_rule("/_standin/stats", view_func=self._admin_stats, methods=["GET"])
        app.add_url_rule("/_standin/videos", view_func=self._admin_videos, methods=["POST"])
        app.add_url_rule("/_standin/status", view_func=self._admin_status, methods=["POST"])
        return app

    def _gate(self, endpoint: str) -> Response | None:
        """Common to every API call: counting, latency, injected failures, auth, account."""
        self.stats.count_request(endpoint)
        if self.knobs.latency_s > 0:
            time.sleep(self.knobs.latency_s)
        failure = self.knobs.take_failure(endpoint)
        if failure is not None:
            if self.knobs.bill_abandoned and failure in _ANSWER_LOST:
                # Pessimistic model: the call runs (a search is billed), then its answer is
                # lost on the way back.
                g.late_failure = failure
                return None
            injected = self._inject(failure)
            if injected is not None:
                return injected
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._api_key.encode()):
            return _envelope("0401", MSG_UNAUTHORIZED, http=401)
        if self.knobs.disabled:
            return _envelope("0403", MSG_DISABLED)
        return None

    def _inject(self, failure: str) -> Response | None:
        log.info("injecting failure %s", failure)
        if failure.startswith("slow:"):
            time.sleep(float(failure.removeprefix("slow:")))
            return None
        if failure == "malformed_json":
            g.result = "malformed_json"
            return Response('{"code": "0000", "msg": "succ', mimetype="application/json")
        if failure == "drop_connection":
            g.result = "drop_connection"
            sock = request.environ.get("werkzeug.socket")
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return Response("", status=500)
        if len(failure) == 4:
            resp = _envelope(failure, _INJECTED_MSGS.get(failure, "injected failure"))
            return _retry_after(resp, 1) if failure == "0429" else resp
        status = int(failure)
        if status in {401, 402, 403, 429}:
            code = f"0{status}"
            resp = _envelope(code, _INJECTED_MSGS[code], http=status)
            return _retry_after(resp, 1) if status == 429 else resp
        # Gateways answer 5xx with HTML, not the JSON envelope: clients must cope.
        return Response(
            f"<html><body><h1>{status} injected failure</h1></body></html>",
            status=status,
            mimetype="text/html",
        )

    def _search(self) -> Response:
        k = self.knobs
        wait = self._search_bucket.take(k.rate_per_s, k.search_burst)
        if wait > 0:
            return _retry_after(_envelope("0429", MSG_RATE_LIMITED), wait)
        if not request.mimetype.startswith("multipart/form-data"):
            return _envelope("0003", MSG_NOT_MULTIPART)
        upload = request.files.get("file")
        if upload is None:
            return _envelope("0003", MSG_FILE_MISSING)
        data = upload.stream.read(MAX_IMAGE_BYTES + 1)
        if not data:
            return _envelope("0001", MSG_FILE_EMPTY)
        if PurePosixPath(upload.filename or "").suffix.lower() not in ALLOWED_EXTENSIONS:
            return _envelope("0001", MSG_FILE_EXTENSION)
        if not (upload.content_type or "").lower().startswith("image/"):
            return _envelope("0001", MSG_FILE_CONTENT_TYPE)
        if len(data) > MAX_IMAGE_BYTES:
            return _envelope("0001", MSG_FILE_TOO_LARGE)
        video_no = request.form.get("video_no", "").strip()
        if not video_no:
            return _envelope("0001", MSG_VIDEO_NO_EMPTY)
        if not request.form.get("prompt", "").strip():
            return _envelope("0001", MSG_PROMPT_EMPTY)
        unique_id = request.form.get("unique_id", "").strip() or "default"
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                query = image_features(img)
        except Exception:
            return _envelope("0001", MSG_FILE_NOT_IMAGE)
        video = self._video(unique_id, video_no)
        if video is None:
            msg = MSG_VIDEO_NOT_FOUND.format(video_no=video_no, unique_id=unique_id)
            return _envelope("0001", msg)
        if video.meta.status != "PARSE" or video.index is None:
            msg = MSG_VIDEO_STATUS.format(video_no=video_no, status=video.meta.status)
            return _envelope("0001", msg)
        if not k.bill_abandoned and _client_gone():
            # Modelled assumption: a search whose caller hung up (timed out) before it ran is
            # cancelled, not billed. Set bill_abandoned=True for the pessimistic model.
            g.result = "client_gone"
            return Response("", status=499)
        if not k.charge_credit():
            return _envelope("0402", MSG_NO_CREDITS)
        clips = search(video.index, query, top_k=k.top_k, clip_seconds=k.clip_seconds)
        self.stats.count_billed(upload.filename or "")
        hits: list[dict[str, Any]] = []
        for c in clips:
            hit: dict[str, Any] = {
                "start_time": c.start_time,
                "end_time": c.end_time,
                "score": c.score,
            }
            if not k.omit_location:
                hit["video_bucket"] = video.meta.bucket
                hit["video_blob"] = video.meta.blob
            hits.append(hit)
        return _envelope("0000", "success", hits)

    def _get_metadata(self) -> Response:
        video_no = request.args.get("video_no", "").strip()
        if not video_no:
            return _envelope("0001", MSG_VIDEO_NO_EMPTY)
        unique_id = request.args.get("unique_id", "").strip() or "default"
        video = self._video(unique_id, video_no)
        if video is None:
            msg = MSG_VIDEO_NOT_FOUND.format(video_no=video_no, unique_id=unique_id)
            return _envelope("0001", msg)
        return _envelope("0000", "success", video.meta.as_json())

    def _download(self) -> Response:
        bucket_name = request.args.get("bucket", "")
        blob_name = request.args.get("blob", "")
        if not bucket_name or not blob_name:
            return _envelope("0001", MSG_DOWNLOAD_PARAMS)
        wait = self._download_window.take(self.knobs.download_rate_per_min)
        if wait > 0:
            return _retry_after(_envelope("0429", MSG_RATE_LIMITED), wait)
        if self.knobs.out_of_credits():
            return _envelope("0402", MSG_INSUFFICIENT_BALANCE)
        try:
            blob = self._storage.bucket(bucket_name).get_blob(blob_name)
        except Exception:
            log.exception("storage lookup failed for gs://%s/%s", bucket_name, blob_name)
            blob = None
        if blob is None:
            return _envelope("0001", MSG_RESOURCE_MISSING)
        size = int(blob.size or 0)
        span = _parse_range(request.headers.get("Range"), size)
        filename = PurePosixPath(blob_name).name or "video.mp4"
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
        if span == "bad":
            headers["Content-Range"] = f"bytes */{size}"
            g.result = "HTTP 416"
            return Response(b"", status=416, headers=headers, mimetype="video/mp4")
        first, last = (0, size - 1) if span is None else span
        length = max(0, last - first + 1)
        headers["Content-Length"] = str(length)
        status = 200
        if span is not None:
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        g.result = f"HTTP {status}"
        return Response(
            self._stream(blob, first, last) if length else iter(()),
            status=status,
            headers=headers,
            mimetype="video/mp4",
            direct_passthrough=True,
        )

    def _stream(self, blob: Any, first: int, last: int) -> Iterator[bytes]:
        """Ranged reads of DOWNLOAD_CHUNK bytes, so a huge object never sits in memory."""
        pos = first
        while pos <= last:
            end = min(last, pos + DOWNLOAD_CHUNK - 1)
            chunk: bytes = blob.download_as_bytes(start=pos, end=end, checksum=None)
            if not chunk:
                return
            self.stats.count_download_bytes(len(chunk))
            yield chunk
            pos += len(chunk)

    # -- admin (no auth: for tests and the local dev stack) ------------------------------

    def _admin_knobs(self) -> Response:
        if request.method == "POST":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return _admin_error("expected a JSON object")
            try:
                self.knobs.merge(body)
            except (ValueError, TypeError) as exc:
                return _admin_error(str(exc))
        return Response(json.dumps(self.knobs.as_dict()), mimetype="application/json")

    def _admin_stats(self) -> Response:
        return Response(json.dumps(self.stats.as_dict()), mimetype="application/json")

    def _admin_videos(self) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _admin_error("expected a JSON object")
        try:
            meta = self.register_video(
                str(body["video_no"]),
                str(body["bucket"]),
                str(body["blob"]),
                unique_id=str(body.get("unique_id") or "default"),
                status=str(body.get("status") or "PARSE"),
            )
        except KeyError as exc:
            return _admin_error(f"missing field {exc}")
        except Exception as exc:
            return _admin_error(f"cannot register video: {exc}")
        return Response(json.dumps(meta.as_json()), mimetype="application/json")

    def _admin_status(self) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _admin_error("expected a JSON object")
        try:
            self.set_status(
                str(body["video_no"]),
                str(body["status"]),
                unique_id=str(body.get("unique_id") or "default"),
            )
        except KeyError as exc:
            return _admin_error(f"unknown video or missing field {exc}")
        except ValueError as exc:
            return _admin_error(str(exc))
        return Response(json.dumps({"ok": True}), mimetype="application/json")


def _admin_error(msg: str) -> Response:
    return Response(json.dumps({"error": msg}), status=400, mimetype="application/json")
