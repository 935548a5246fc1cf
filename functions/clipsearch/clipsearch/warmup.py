"""What the first event needs only once its search has answered (the clip engine's imports,
the Pub/Sub client), prepared on a thread of its own while that search waits on the network.

The first search returns only when the warm-up is done. Run beside the event's own work
(reading the image, cutting, talking to Cloud Storage), the warm-up would compete with it for
the interpreter and cost more CPU than it saves (docs/benchmarks.md, "Cold start"); beside a
network wait it is free, and against the vendor's search, which takes seconds, it is all
hidden.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager

from clipsearch.model import DownloadStream, Hit, Query, SourceVideo, VideoMetadata
from clipsearch.ports import SearchApi


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

    def __init__(self, steps: Sequence[Callable[[], None]]) -> None:
        self._steps = tuple(steps)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="warmup", daemon=True)
                self._thread.start()

    def wait(self, deadline: float) -> None:
        """Until the steps are done or the deadline (time.monotonic) passes."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        for step in self._steps:
            with contextlib.suppress(Exception):
                step()


class WarmingSearchApi:
    """A SearchApi whose searches start the warm-up as they leave and return once it is done
    (or the event's deadline passes), whatever the search's own result."""

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
        try:
            return self._api.search(query, image, deadline, before_send)
        finally:
            self._warmup.wait(deadline)

    def video_metadata(self, video_no: str, unique_id: str, deadline: float) -> VideoMetadata:
        return self._api.video_metadata(video_no, unique_id, deadline)

    def open_download(
        self, source: SourceVideo, deadline: float
    ) -> AbstractContextManager[DownloadStream]:
        return self._api.open_download(source, deadline)
