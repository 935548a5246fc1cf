"""What the first event needs only once its search has answered (the clip engine's imports,
the Pub/Sub client), prepared on a thread of its own while that search waits on the network.

The warm-up starts when the first search leaves, and the first fetch waits for it, after the
search's answer is stored. Run beside the event's own work (cutting, talking to Cloud
Storage), the warm-up would compete with it for the interpreter and cost more CPU than it
saves (docs/benchmarks.md, "Cold start"); beside a network wait it is free, and against the
vendor's search, which takes seconds, it is all hidden.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager

from clipsearch.model import ClipResult, DownloadStream, Hit, Query, SourceVideo, VideoMetadata
from clipsearch.ports import Fetcher, MetadataLookup, SearchApi
from clipsearch.spend import VendorSpend

# A step that takes longer (a stalled credentials look-up, say) is left to finish beside the
# event; its own user waits for what it needs.
MAX_WAIT_S = 10.0


def importer(modules: Iterable[str]) -> Callable[[], None]:
    """A warm-up step importing `modules`. An import that fails here fails again, with its
    own error, at its use, where the event handles it; the modules after it still load."""
    names = tuple(modules)

    def load() -> None:
        for name in names:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    return load


class Warmup:
    """Steps run once, in order, on one thread; a step that raises does not stop the next
    (each step's own user meets its failure)."""

    def __init__(self, steps: Sequence[Callable[[], None]], max_wait_s: float = MAX_WAIT_S):
        self._steps = tuple(steps)
        self._max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the steps unless they were; a thread that cannot start leaves each step's
        work to its user, and the next call tries again."""
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="warmup", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                return
            self._thread = thread

    def wait(self, deadline: float) -> None:
        """Until the steps are done, `max_wait_s` has passed or the deadline (time.monotonic)
        has; at once when they were never started."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, min(self._max_wait_s, deadline - time.monotonic())))

    def _run(self) -> None:
        for step in self._steps:
            with contextlib.suppress(Exception):
                step()


class WarmingSearchApi:
    """A SearchApi whose searches start the warm-up as they leave."""

    def __init__(self, api: SearchApi, warmup: Warmup) -> None:
        self._api = api
        self._warmup = warmup

    def search(
        self,
        query: Query,
        image: bytes,
        deadline: float,
        before_send: Callable[[], None] | None = None,
    ) -> list[Hit]:
        self._warmup.start()
        return self._api.search(query, image, deadline, before_send)

    def video_metadata(self, video_no: str, unique_id: str, deadline: float) -> VideoMetadata:
        return self._api.video_metadata(video_no, unique_id, deadline)

    def open_download(
        self, source: SourceVideo, deadline: float
    ) -> AbstractContextManager[DownloadStream]:
        return self._api.open_download(source, deadline)


class WarmingFetcher:
    """A Fetcher whose fetches wait for the warm-up first."""

    def __init__(self, fetcher: Fetcher, warmup: Warmup) -> None:
        self._fetcher = fetcher
        self._warmup = warmup

    def prefetch(
        self, query: Query, deadline: float, spend: VendorSpend | None = None
    ) -> MetadataLookup | None:
        return self._fetcher.prefetch(query, deadline, spend)

    def fetch(
        self,
        query: Query,
        hits: list[Hit],
        deadline: float,
        spend: VendorSpend | None = None,
        lookup: MetadataLookup | None = None,
    ) -> list[ClipResult]:
        self._warmup.wait(deadline)
        return self._fetcher.fetch(query, hits, deadline, spend, lookup)
