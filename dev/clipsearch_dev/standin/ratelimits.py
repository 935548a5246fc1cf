"""The vendor's per-account rate limits as the stand-in enforces them."""

from __future__ import annotations

import threading
import time
from collections import deque


class TokenBucket:
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


class SlidingWindow:
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
