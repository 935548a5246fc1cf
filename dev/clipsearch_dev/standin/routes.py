"""The stand-in's routes: the vendor's three endpoints and the admin routes that drive it.

Every API call passes the same gate (counting, latency, injected faults, auth, account state);
then the endpoint answers as the vendor's pages describe, in whichever variant the knobs pick
where the pages leave a behaviour open (clipsearch_dev.standin.faults).
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from wsgiref.handlers import format_date_time

from flask import Response, g, request
from PIL import Image

from clipsearch_dev.standin.faults import ANSWER_LOST, Knobs, inject
from clipsearch_dev.standin.index import image_features, search
from clipsearch_dev.standin.ratelimits import SlidingWindow, TokenBucket
from clipsearch_dev.standin.stats import Stats
from clipsearch_dev.standin.videos import VideoRegistry
from clipsearch_dev.standin.wire import (
    ALLOWED_EXTENSIONS,
    DOWNLOAD_CHUNK,
    MAX_IMAGE_BYTES,
    MSG_DISABLED,
    MSG_DOWNLOAD_PARAMS,
    MSG_FILE_CONTENT_TYPE,
    MSG_FILE_EMPTY,
    MSG_FILE_EXTENSION,
    MSG_FILE_MISSING,
    MSG_FILE_NOT_IMAGE,
    MSG_FILE_TOO_LARGE,
    MSG_INSUFFICIENT_BALANCE,
    MSG_NO_CREDITS,
    MSG_NOT_MULTIPART,
    MSG_PROMPT_EMPTY,
    MSG_RATE_LIMITED,
    MSG_RESOURCE_MISSING,
    MSG_UNAUTHORIZED,
    MSG_VIDEO_NO_EMPTY,
    MSG_VIDEO_NOT_FOUND,
    MSG_VIDEO_STATUS,
    admin_error,
    client_gone,
    envelope,
    parse_range,
    retry_after,
)

log = logging.getLogger("clipsearch_dev.standin.server")

# v2 download errors: the integer code is the HTTP status.
_V2_STATUS = {"0001": 400, "0402": 402, "0429": 429}


class ApiRoutes:
    """The handlers; StandinServer supplies the state they share."""

    knobs: Knobs
    stats: Stats
    videos: VideoRegistry
    _storage: Any
    _api_key: str
    _search_bucket: TokenBucket
    _download_window: SlidingWindow

    def _gate(self, endpoint: str) -> Response | None:
        """Common to every API call: counting, latency, injected failures, auth, account."""
        self.stats.count_request(endpoint)
        if self.knobs.latency_s > 0:
            time.sleep(self.knobs.latency_s)
        failure = self.knobs.take_failure(endpoint)
        if failure is not None:
            if self.knobs.bill_abandoned and failure in ANSWER_LOST:
                # Pessimistic model: the call runs (a search is billed), then its answer is
                # lost on the way back.
                g.late_failure = failure
                return None
            injected = inject(failure)
            if injected is not None:
                return injected
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._api_key.encode()):
            return envelope("0401", MSG_UNAUTHORIZED, http=401)
        if self.knobs.disabled:
            return envelope("0403", MSG_DISABLED)
        return None

    def _search(self) -> Response:
        k = self.knobs
        wait = self._search_bucket.take(k.rate_per_s, k.search_burst)
        if wait > 0:
            return retry_after(envelope("0429", MSG_RATE_LIMITED), wait)
        if not request.mimetype.startswith("multipart/form-data"):
            return envelope("0003", MSG_NOT_MULTIPART)
        upload = request.files.get("file")
        if upload is None:
            return envelope("0003", MSG_FILE_MISSING)
        data = upload.stream.read(MAX_IMAGE_BYTES + 1)
        if not data:
            return envelope("0001", MSG_FILE_EMPTY)
        if PurePosixPath(upload.filename or "").suffix.lower() not in ALLOWED_EXTENSIONS:
            return envelope("0001", MSG_FILE_EXTENSION)
        if not (upload.content_type or "").lower().startswith("image/"):
            return envelope("0001", MSG_FILE_CONTENT_TYPE)
        if len(data) > MAX_IMAGE_BYTES:
            return envelope("0001", MSG_FILE_TOO_LARGE)
        video_no = request.form.get("video_no", "").strip()
        if not video_no:
            return envelope("0001", MSG_VIDEO_NO_EMPTY)
        if not request.form.get("prompt", "").strip():
            return envelope("0001", MSG_PROMPT_EMPTY)
        unique_id = request.form.get("unique_id", "").strip() or "default"
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                query = image_features(img)
        except Exception:
            return envelope("0001", MSG_FILE_NOT_IMAGE)
        video = self.videos.get(unique_id, video_no)
        if video is None:
            msg = MSG_VIDEO_NOT_FOUND.format(video_no=video_no, unique_id=unique_id)
            return envelope("0001", msg)
        if video.meta.status != "PARSE" or video.index is None:
            msg = MSG_VIDEO_STATUS.format(video_no=video_no, status=video.meta.status)
            return envelope("0001", msg)
        if not k.bill_abandoned and client_gone():
            # Modelled assumption: a search whose caller hung up (timed out) before it ran is
            # cancelled, not billed. Set bill_abandoned=True for the pessimistic model.
            g.result = "client_gone"
            return Response("", status=499)
        if not k.charge_credit():
            return envelope("0402", MSG_NO_CREDITS)
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
        if k.search_data != "list":  # an older page's example: a success with no list
            return envelope("0000", "success", {} if k.search_data == "object" else None)
        return envelope("0000", "success", hits)

    def _get_metadata(self) -> Response:
        video_no = request.args.get("video_no", "").strip()
        if not video_no:
            return envelope("0001", MSG_VIDEO_NO_EMPTY)
        unique_id = request.args.get("unique_id", "").strip() or "default"
        video = self.videos.get(unique_id, video_no)
        if video is None:
            msg = MSG_VIDEO_NOT_FOUND.format(video_no=video_no, unique_id=unique_id)
            return envelope("0001", msg)
        return envelope("0000", "success", video.meta.as_json())

    def _download_error(self, code: str, msg: str) -> Response:
        """A download error in the form the knobs pick: v1 (a string code, HTTP 200, except
        where the gate says otherwise) or v2 (an integer code equal to the HTTP status)."""
        if self.knobs.download_errors == "v2":
            status = _V2_STATUS.get(code, 400)
            resp = envelope(code, msg, http=status)
            body = json.loads(resp.get_data())
            body["code"] = status
            resp.set_data(json.dumps(body))
            g.result = str(status)
            return resp
        return envelope(code, msg)

    def _download(self) -> Response:
        bucket_name = request.args.get("bucket", "")
        blob_name = request.args.get("blob", "")
        if not bucket_name or not blob_name:
            return self._download_error("0001", MSG_DOWNLOAD_PARAMS)
        wait = self._download_window.take(self.knobs.download_rate_per_min)
        if wait > 0:
            return retry_after(self._download_error("0429", MSG_RATE_LIMITED), wait)
        if self.knobs.out_of_credits():
            return self._download_error("0402", MSG_INSUFFICIENT_BALANCE)
        try:
            blob = self._storage.bucket(bucket_name).get_blob(blob_name)
        except Exception:
            log.exception("storage lookup failed for gs://%s/%s", bucket_name, blob_name)
            blob = None
        if blob is None:
            return self._download_error("0001", MSG_RESOURCE_MISSING)
        k = self.knobs
        size = int(blob.size or 0)
        span = parse_range(request.headers.get("Range"), size) if k.range_honoured else None
        filename = PurePosixPath(blob_name).name or "video.mp4"
        headers = {
            "Content-Disposition": f'attachment; filename="{filename}"',
            # Validators of the stored file: a new upload under the same name changes both.
            "ETag": f'"{blob.generation}"',
        }
        if blob.updated is not None:
            headers["Last-Modified"] = format_date_time(blob.updated.timestamp())
        if k.range_honoured:
            headers["Accept-Ranges"] = "bytes"
        if span == "bad":
            headers["Content-Range"] = f"bytes */{size}"
            g.result = "HTTP 416"
            return Response(b"", status=416, headers=headers, mimetype="video/mp4")
        first, last = (0, size - 1) if span is None else span
        length = max(0, last - first + 1)
        if not k.chunked:
            headers["Content-Length"] = str(length)
        status = 200
        if span is not None:
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        g.result = f"HTTP {status}"
        drop_after: int | None = g.pop("drop_after", None)
        sock = request.environ.get("werkzeug.socket")
        return Response(
            self._stream(blob, first, last, drop_after, sock) if length else iter(()),
            status=status,
            headers=headers,
            mimetype="video/mp4",
            direct_passthrough=True,
        )

    def _stream(
        self, blob: Any, first: int, last: int, drop_after: int | None, sock: Any
    ) -> Iterator[bytes]:
        """Ranged reads of DOWNLOAD_CHUNK bytes, so a huge object never sits in memory.

        Every byte sent is counted (the vendor bills bytes downloaded). With `drop_after`, the
        connection is shut after that many bytes of the body, as a network cut would.
        """
        pos = first
        sent = 0
        while pos <= last:
            end = min(last, pos + DOWNLOAD_CHUNK - 1)
            if drop_after is not None:
                end = min(end, pos + max(0, drop_after - sent) - 1)
            if end < pos:
                log.info("dropping the download body after %d bytes", sent)
                if isinstance(sock, socket.socket):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return
            chunk: bytes = blob.download_as_bytes(start=pos, end=end, checksum=None)
            if not chunk:
                return
            self.stats.count_download_bytes(len(chunk), blob.name)
            sent += len(chunk)
            yield chunk
            pos += len(chunk)

    # -- admin (no auth: for tests and the local dev stack) ------------------------------

    def _admin_knobs(self) -> Response:
        if request.method == "POST":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return admin_error("expected a JSON object")
            try:
                self.knobs.merge(body)
            except (ValueError, TypeError) as exc:
                return admin_error(str(exc))
        return Response(json.dumps(self.knobs.as_dict()), mimetype="application/json")

    def _admin_stats(self) -> Response:
        return Response(json.dumps(self.stats.as_dict()), mimetype="application/json")

    def _admin_videos(self) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return admin_error("expected a JSON object")
        try:
            meta = self.videos.register_video(
                str(body["video_no"]),
                str(body["bucket"]),
                str(body["blob"]),
                unique_id=str(body.get("unique_id") or "default"),
                status=str(body.get("status") or "PARSE"),
            )
        except KeyError as exc:
            return admin_error(f"missing field {exc}")
        except Exception as exc:
            return admin_error(f"cannot register video: {exc}")
        return Response(json.dumps(meta.as_json()), mimetype="application/json")

    def _admin_replace(self) -> Response:
        """A new file under a registered video_no: {"video_no", "bucket", "blob"} name the
        object whose bytes replace the video's (its own bucket/blob stay)."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return admin_error("expected a JSON object")
        try:
            meta = self.videos.replace_video(
                str(body["video_no"]),
                str(body["bucket"]),
                str(body["blob"]),
                unique_id=str(body.get("unique_id") or "default"),
            )
        except KeyError as exc:
            return admin_error(f"unknown video or missing field {exc}")
        except Exception as exc:
            return admin_error(f"cannot replace video: {exc}")
        return Response(json.dumps(meta.as_json()), mimetype="application/json")

    def _admin_status(self) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return admin_error("expected a JSON object")
        try:
            self.videos.set_status(
                str(body["video_no"]),
                str(body["status"]),
                unique_id=str(body.get("unique_id") or "default"),
            )
        except KeyError as exc:
            return admin_error(f"unknown video or missing field {exc}")
        except ValueError as exc:
            return admin_error(str(exc))
        return Response(json.dumps({"ok": True}), mimetype="application/json")
