"""The videos the stand-in knows, as the vendor's upload and parse steps would leave them."""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipsearch_dev.standin.index import VideoIndex, index_video

log = logging.getLogger("clipsearch_dev.standin.server")

STATUSES = frozenset({"PARSE", "UNPARSE", "PARSE_ERROR"})


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
class Video:
    meta: VideoMeta
    index: VideoIndex | None


class VideoRegistry:
    """Registered videos by (unique_id, video_no), indexed from Cloud Storage."""

    def __init__(self, storage_client: Any) -> None:
        self._storage = storage_client
        self._videos: dict[tuple[str, str], Video] = {}
        self._lock = threading.Lock()

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
        with self._lock:
            self._videos[(unique_id, video_no)] = Video(meta, index)
        log.info("registered video %s/%s status=%s", unique_id, video_no, status)
        return meta

    def replace_video(
        self, video_no: str, from_bucket: str, from_blob: str, unique_id: str = "default"
    ) -> VideoMeta:
        """Replace a registered video's file under the same video_no, as a re-upload at the
        vendor would: the object `from_bucket/from_blob` is written over the video's own blob
        (new bytes, new generation: new ETag and Last-Modified on downloads) and indexed
        again (`get_metadata` reports the new duration)."""
        video = self.get(unique_id, video_no)
        if video is None:
            raise KeyError(video_no)
        meta = video.meta
        with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
            path = Path(tmp) / "video.mp4"
            self._storage.bucket(from_bucket).blob(from_blob).download_to_filename(str(path))
            target = self._storage.bucket(meta.bucket).blob(meta.blob)
            target.upload_from_filename(str(path), content_type="video/mp4")
        log.info(
            "replaced video %s/%s with gs://%s/%s", unique_id, video_no, from_bucket, from_blob
        )
        return self.register_video(video_no, meta.bucket, meta.blob, unique_id, meta.status)

    def set_status(self, video_no: str, status: str, unique_id: str = "default") -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        with self._lock:
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

    def get(self, unique_id: str, video_no: str) -> Video | None:
        with self._lock:
            return self._videos.get((unique_id, video_no))
