"""A stand-in for the memories.ai v1 API, faithful to the documented contract.

It is the project's only fake: it reads videos from Cloud Storage (the emulator in tests),
really searches them (see `index.py`), enforces the documented validation rules, auth, rate
limits and credits, and lets tests inject the failures the real service is known to produce
and pick the variants its pages leave open. The parts: `routes.py` (the endpoints),
`ratelimits.py`, `faults.py` (knobs, injected failures, profiles), `stats.py` (what it did and
billed), `videos.py` (what it has indexed; `replace_video` / `POST /_standin/replace` puts a
new file under a registered video_no, as a re-upload at the vendor would: new bytes, new
`get_metadata` duration), `wire.py` (envelopes, messages, ranges).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Self

from flask import Flask, Response, g, request
from werkzeug.serving import BaseWSGIServer, make_server

from clipsearch_dev.standin.faults import PROFILES, Knobs, inject
from clipsearch_dev.standin.ratelimits import SlidingWindow, TokenBucket
from clipsearch_dev.standin.routes import ApiRoutes
from clipsearch_dev.standin.stats import Stats
from clipsearch_dev.standin.videos import VideoMeta, VideoRegistry
from clipsearch_dev.standin.wire import (  # noqa: F401  (re-exported for tests and tools)
    API_PREFIX,
    MAX_IMAGE_BYTES,
    MSG_DOWNLOAD_PARAMS,
    MSG_FILE_CONTENT_TYPE,
    MSG_FILE_EMPTY,
    MSG_FILE_EXTENSION,
    MSG_FILE_MISSING,
    MSG_FILE_NOT_IMAGE,
    MSG_FILE_TOO_LARGE,
    MSG_INSUFFICIENT_BALANCE,
    MSG_NOT_MULTIPART,
    MSG_PROMPT_EMPTY,
    MSG_RESOURCE_MISSING,
    MSG_VIDEO_NO_EMPTY,
    MSG_VIDEO_NOT_FOUND,
    MSG_VIDEO_STATUS,
    search_filename,
)

log = logging.getLogger(__name__)

__all__ = ["Knobs", "StandinServer", "Stats", "VideoMeta"]


class StandinServer(ApiRoutes):
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
        profile: str = "default",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`profile` names a set of knobs (faults.PROFILES) that becomes the default state."""
        if not api_key:
            raise ValueError("api_key must be non-empty")
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}")
        self._storage = storage_client
        self._api_key = api_key
        self._host = host
        self._port = port
        self._knob_defaults: dict[str, Any] = {
            "rate_per_s": search_rate_per_s,
            "top_k": top_k,
            "clip_seconds": clip_seconds,
            "download_rate_per_min": download_rate_per_min,
            **PROFILES[profile],
        }
        self.profile = profile
        self.knobs = Knobs(**self._knob_defaults)
        self.stats = Stats()
        self.videos = VideoRegistry(storage_client)
        self._search_bucket = TokenBucket()
        self._download_window = SlidingWindow()
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
        self._search_bucket = TokenBucket()
        self._download_window = SlidingWindow()

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
        return self.videos.register_video(video_no, bucket, blob, unique_id, status)

    def replace_video(
        self, video_no: str, from_bucket: str, from_blob: str, unique_id: str = "default"
    ) -> VideoMeta:
        """A new file under the same video_no (VideoRegistry.replace_video)."""
        return self.videos.replace_video(video_no, from_bucket, from_blob, unique_id)

    def set_status(self, video_no: str, status: str, unique_id: str = "default") -> None:
        self.videos.set_status(video_no, status, unique_id)

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
                    searching = search_filename() if name == "search_clips_by_image" else None
                    if searching is not None:
                        self.stats.search_started(searching)
                    try:
                        resp = self._gate(name) or handler()
                        late = g.pop("late_failure", None)
                        if late is not None:
                            resp = inject(late) or resp
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
        app.add_url_rule("/_standin/replace", view_func=self._admin_replace, methods=["POST"])
        return app
