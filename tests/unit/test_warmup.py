"""The first search starts the warm-up as it leaves and returns only once the warm-up is done,
so the warm-up overlaps the search's network wait and nothing else."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from typing import Any

import pytest

from clipsearch.warmup import WarmingSearchApi, Warmup


class Step:
    """A warm-up step that records its thread, blocks until released, and can fail."""

    def __init__(self, error: Exception | None = None) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()
        self.threads: list[str] = []
        self.error = error

    def __call__(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        self.release.wait(10)
        self.done.set()
        if self.error:
            raise self.error


class Api:
    """A search that answers only once told to, and what it was asked."""

    def __init__(self, error: Exception | None = None) -> None:
        self.answer = threading.Event()
        self.asked = threading.Event()
        self.calls: list[str] = []
        self.error = error

    def search(
        self, query: Any, image: bytes, deadline: float, before_send: Any = None
    ) -> list[str]:
        self.calls.append("search")
        self.asked.set()
        self.answer.wait(10)
        if self.error:
            raise self.error
        return ["hit"]

    def video_metadata(self, video_no: str, unique_id: str, deadline: float) -> str:
        self.calls.append(f"metadata {video_no} {unique_id}")
        return "metadata"

    def open_download(self, source: Any, deadline: float) -> Any:
        self.calls.append(f"download {source}")
        return nullcontext("stream")


def search_on_a_thread(
    api: WarmingSearchApi, deadline_s: float = 30
) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(api.search("query", b"image", time.monotonic() + deadline_s))
        except Exception as error:
            result.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_the_warm_up_runs_on_its_own_thread_while_the_search_is_in_flight():
    step = Step()
    api = Api()
    searcher, result = search_on_a_thread(WarmingSearchApi(api, Warmup([step])))
    # Both under way at once: the step is running while the search waits for its answer.
    assert step.entered.wait(10)
    assert api.asked.wait(10)
    assert result == []
    assert step.threads == ["warmup"]
    step.release.set()
    api.answer.set()
    searcher.join(10)
    assert result == [["hit"]]


def test_the_search_returns_only_once_the_warm_up_is_done():
    step = Step()
    api = Api()
    api.answer.set()  # the search answers at once, as the local stand-in does
    searcher, result = search_on_a_thread(WarmingSearchApi(api, Warmup([step])))
    searcher.join(0.3)
    assert searcher.is_alive()
    assert result == []
    step.release.set()
    searcher.join(10)
    assert step.done.is_set()
    assert result == [["hit"]]


def test_a_failed_search_waits_for_the_warm_up_too_and_raises_its_own_error():
    step = Step()
    api = Api(error=TimeoutError("search timed out"))
    api.answer.set()
    searcher, result = search_on_a_thread(WarmingSearchApi(api, Warmup([step])))
    searcher.join(0.3)
    assert searcher.is_alive()
    step.release.set()
    searcher.join(10)
    assert len(result) == 1
    assert isinstance(result[0], TimeoutError)


def test_the_warm_up_runs_once_and_a_failed_step_does_not_stop_the_next():
    failing, after = Step(error=RuntimeError("no credentials")), Step()
    for step in (failing, after):
        step.release.set()
    api = Api()
    api.answer.set()
    warming = WarmingSearchApi(api, Warmup([failing, after]))
    for _ in range(3):
        assert warming.search("query", b"image", time.monotonic() + 30) == ["hit"]
    assert failing.threads == ["warmup"]
    assert after.threads == ["warmup"]
    assert api.calls == ["search"] * 3


def test_the_wait_ends_at_the_events_deadline():
    step = Step()
    api = Api()
    api.answer.set()
    started = time.monotonic()
    searcher, result = search_on_a_thread(WarmingSearchApi(api, Warmup([step])), deadline_s=0.3)
    searcher.join(10)
    assert not searcher.is_alive()
    assert result == [["hit"]]
    assert time.monotonic() - started < 5
    assert not step.done.is_set()  # the search did not wait for the rest of the warm-up
    step.release.set()


def test_the_other_calls_pass_through_without_starting_the_warm_up():
    step = Step()
    api = Api()
    warming = WarmingSearchApi(api, Warmup([step]))
    assert warming.video_metadata("VI-1", "u", time.monotonic() + 30) == "metadata"
    with warming.open_download("source", time.monotonic() + 30) as stream:
        assert stream == "stream"
    assert api.calls == ["metadata VI-1 u", "download source"]
    assert not step.entered.is_set()


@pytest.mark.parametrize("searches", [1, 4])
def test_concurrent_first_searches_share_one_warm_up(searches: int):
    step = Step()
    api = Api()
    warming = WarmingSearchApi(api, Warmup([step]))
    running = [search_on_a_thread(warming) for _ in range(searches)]
    assert step.entered.wait(10)
    api.answer.set()
    step.release.set()
    for thread, result in running:
        thread.join(10)
        assert result == [["hit"]]
    assert step.threads == ["warmup"]
