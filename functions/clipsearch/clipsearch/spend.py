"""What one query spent at the vendor's download and metadata endpoints, for its outcome line."""

from __future__ import annotations

import threading


class VendorSpend:
    """Download-endpoint requests and bytes, whole-body restarts, and get_metadata calls
    (a separate, cheaper call: 1/s, no bytes billed) (thread-safe counters)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.restarts = 0
        self.metadata = 0

    def add(self, requests: int = 0, nbytes: int = 0, restarts: int = 0, metadata: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes += nbytes
            self.restarts += restarts
            self.metadata += metadata

    def as_log(self) -> dict[str, int]:
        """The outcome line's fields (the log-based metrics count them)."""
        with self._lock:
            return {
                "vendor_requests": self.requests,
                "vendor_bytes": self.bytes,
                "vendor_restarts": self.restarts,
                "vendor_metadata_calls": self.metadata,
            }
