"""The first search starts the warm-up as it leaves; the first fetch, after the search's
answer is stored, waits for it. So the warm-up overlaps the search's network wait and does
not run beside the cut."""

from __future__ import annotations

import json
import threading
import time
from contextlib import nullcontext
from typing import Any

import pytest

from clipsearch.warmup import WarmingFetcher, WarmingSearchApi, Warmup
from tests.fresh import run_fresh
from tests.unit.test_settings_and_naming import BASE


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

    def search(self, query: Any, image: bytes, deadline: float, before_send: Any = None) -> list:
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


class Fetcher:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def prefetch(self, query: Any, deadline: float, spend: Any = None) -> str:
        self.calls.append("prefetch")
        return "lookup"

    def fetch(self, query: Any, hits: list, deadline: float, spend: Any = None, lookup: Any = None):
        self.calls.append(f"fetch {hits} {lookup}")
        return ["clip"]


def on_a_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(call())
        except Exception as error:
            result.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def soon(seconds: float = 30) -> float:
    return time.monotonic() + seconds


def test_the_warm_up_runs_on_its_own_thread_while_the_search_is_in_flight():
    step = Step()
    api = Api()
    warming = WarmingSearchApi(api, Warmup([step]))
    searcher, result = on_a_thread(lambda: warming.search("query", b"image", soon()))
    # Both under way at once: the step is running while the search waits for its answer.
    assert step.entered.wait(10)
    assert api.asked.wait(10)
    assert result == []
    assert step.threads == ["warmup"]
    api.answer.set()
    searcher.join(10)
    assert result == [["hit"]]  # the search does not wait for the warm-up
    assert not step.done.is_set()
    step.release.set()


def test_the_fetch_waits_for_the_warm_up_and_then_fetches():
    step = Step()
    api, fetcher = Api(), Fetcher()
    api.answer.set()  # the search answers at once, as the local stand-in does
    warmup = Warmup([step])
    assert WarmingSearchApi(api, warmup).search("query", b"image", soon()) == ["hit"]
    warming = WarmingFetcher(fetcher, warmup)
    assert warming.prefetch("query", soon()) == "lookup"  # never waits
    fetching, result = on_a_thread(lambda: warming.fetch("query", ["hit"], soon(), None, "lk"))
    fetching.join(0.3)
    assert fetching.is_alive()
    assert fetcher.calls == ["prefetch"]
    step.release.set()
    fetching.join(10)
    assert step.done.is_set()
    assert result == [["clip"]]
    assert fetcher.calls == ["prefetch", "fetch ['hit'] lk"]


def test_a_fetch_without_a_search_does_not_wait():
    step = Step()
    fetcher = Fetcher()
    assert WarmingFetcher(fetcher, Warmup([step])).fetch("query", ["hit"], soon()) == ["clip"]
    assert not step.entered.is_set()  # hits stored by an earlier attempt: nothing to warm


@pytest.mark.parametrize(("deadline_s", "max_wait_s"), [(0.3, 30), (30, 0.3)])
def test_the_wait_ends_at_the_deadline_or_the_cap(deadline_s: float, max_wait_s: float):
    step = Step()
    api = Api()
    api.answer.set()
    warmup = Warmup([step], max_wait_s=max_wait_s)
    WarmingSearchApi(api, warmup).search("query", b"image", soon())
    started = time.monotonic()
    result = WarmingFetcher(Fetcher(), warmup).fetch("query", ["hit"], soon(deadline_s))
    assert result == ["clip"]
    assert time.monotonic() - started < 5
    assert not step.done.is_set()  # the fetch did not wait for the rest of the warm-up
    step.release.set()


def test_a_failed_search_raises_its_own_error_without_waiting():
    step = Step()
    api = Api(error=TimeoutError("search timed out"))
    api.answer.set()
    with pytest.raises(TimeoutError, match="search timed out"):
        WarmingSearchApi(api, Warmup([step])).search("query", b"image", soon())
    assert step.entered.wait(10)
    assert not step.done.is_set()
    step.release.set()


def test_the_warm_up_runs_once_and_a_failed_step_does_not_stop_the_next():
    failing, after = Step(error=RuntimeError("no credentials")), Step()
    for step in (failing, after):
        step.release.set()
    api = Api()
    api.answer.set()
    warmup = Warmup([failing, after])
    warming, fetcher = WarmingSearchApi(api, warmup), WarmingFetcher(Fetcher(), warmup)
    for _ in range(3):
        assert warming.search("query", b"image", soon()) == ["hit"]
        assert fetcher.fetch("query", ["hit"], soon()) == ["clip"]
    assert failing.threads == ["warmup"]
    assert after.threads == ["warmup"]
    assert api.calls == ["search"] * 3


def test_a_thread_that_cannot_start_leaves_the_work_to_its_users_and_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
):
    step = Step()
    step.release.set()
    api = Api()
    api.answer.set()
    warmup = Warmup([step])
    warming, fetcher = WarmingSearchApi(api, warmup), WarmingFetcher(Fetcher(), warmup)
    real_start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        if thread.name == "warmup":
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert warming.search("query", b"image", soon()) == ["hit"]
    assert fetcher.fetch("query", ["hit"], soon()) == ["clip"]  # neither raises nor waits
    assert step.threads == []
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert warming.search("query", b"image", soon()) == ["hit"]
    assert fetcher.fetch("query", ["hit"], soon()) == ["clip"]
    assert step.threads == ["warmup"]


def test_the_other_calls_pass_through_without_starting_the_warm_up():
    step = Step()
    api = Api()
    warming = WarmingSearchApi(api, Warmup([step]))
    assert warming.video_metadata("VI-1", "u", soon()) == "metadata"
    with warming.open_download("source", soon()) as stream:
        assert stream == "stream"
    assert api.calls == ["metadata VI-1 u", "download source"]
    assert not step.entered.is_set()


@pytest.mark.parametrize("searches", [1, 4])
def test_concurrent_first_searches_share_one_warm_up(searches: int):
    step = Step()
    api = Api()
    warmup = Warmup([step])
    warming, fetcher = WarmingSearchApi(api, warmup), WarmingFetcher(Fetcher(), warmup)
    running = [
        on_a_thread(
            lambda: (warming.search("query", b"image", soon()), fetcher.fetch("q", [], soon()))
        )
        for _ in range(searches)
    ]
    assert step.entered.wait(10)
    api.answer.set()
    step.release.set()
    for thread, result in running:
        thread.join(10)
        assert result == [(["hit"], ["clip"])]
    assert step.threads == ["warmup"]


# The composition root's wiring, in a new interpreter (the engine not yet imported): the
# search starts loading the engine and building the publisher; the fetch finds both ready.
WIRING = """
import json, sys, threading, time
from clipsearch.adapters.pubsub import LazyPublisher
from clipsearch.bootstrap import with_warmup
from clipsearch.settings import Settings

built = []
publisher = LazyPublisher(lambda: built.append(threading.current_thread().name) or object())
seen = {}

class Api:
    def search(self, query, image, deadline, before_send=None):
        return ["hit"]

class Fetcher:
    def prefetch(self, query, deadline, spend=None):
        return None
    def fetch(self, query, hits, deadline, spend=None, lookup=None):
        seen["engine_at_fetch"] = "clipsearch.clipping.cutter" in sys.modules
        seen["built_at_fetch"] = list(built)
        return []

api, fetcher = with_warmup(Settings.from_env(json.loads(sys.argv[1])), Api(), Fetcher(), publisher)
seen["engine_before_search"] = "clipsearch.clipping.cutter" in sys.modules
api.search("query", b"image", time.monotonic() + 60)
fetcher.fetch("query", ["hit"], time.monotonic() + 60)
print(json.dumps(seen))
"""


@pytest.mark.parametrize(("mode", "engine"), [("clip", True), ("copy", False)])
def test_the_composition_root_prepares_the_engine_and_the_publisher_during_the_first_search(
    mode: str, engine: bool
):
    env = {**BASE, "CLIPSEARCH_FETCH_MODE": mode}
    assert run_fresh(WIRING, json.dumps(env)) == {
        "engine_before_search": False,
        "engine_at_fetch": engine,  # loaded in clip mode only
        "built_at_fetch": ["warmup"],
    }
