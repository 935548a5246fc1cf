"""What the stand-in did, counted for tests and benchmarks (billed searches and bytes too)."""

from __future__ import annotations

import threading
from typing import Any


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
        self._download_bytes_by_blob: dict[str, int] = {}

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

    def count_download_bytes(self, n: int, blob: str = "") -> None:
        """Bytes sent by the download endpoint: what the vendor bills."""
        with self._lock:
            self._download_bytes += n
            self._download_bytes_by_blob[blob] = self._download_bytes_by_blob.get(blob, 0) + n

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
    def download_bytes_by_blob(self) -> dict[str, int]:
        with self._lock:
            return dict(self._download_bytes_by_blob)

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
                "download_bytes_by_blob": dict(self._download_bytes_by_blob),
            }

    def reset(self) -> None:
        with self._lock:
            self._billed = 0
            self._billed_by_file.clear()
            self._searching.clear()
            self._requests.clear()
            self._responses.clear()
            self._download_bytes = 0
            self._download_bytes_by_blob.clear()
