"""The event's deadline reaches every wait of the fetch stage: ranged reads, pacing, and the
clips still to cut, which end with a reason instead of the attempt being killed."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from clipsearch.adapters.gcs import GcsResultStore
from clipsearch.adapters.ranges import HttpRangeSource
from clipsearch.adapters.search_api import PacedSession
from clipsearch.clipping import ClipReason, ClipUnavailable, IndexCache
from clipsearch.errors import TransientError
from clipsearch.fetch import ClipFetcher, CopyFetcher
from clipsearch.model import Hit, Query, QueryObject, SourceVideo
from clipsearch.ratelimit import RateLimiter
from clipsearch.settings import FetchSource
from clipsearch_dev.media import make_video
from tests.fakes import FakeSearchApi, FakeStorage, FileSources

SECRET = "sk-mavi-deadline-SECRET"


class Clock:
    """time.monotonic's reading at the start, moved only by the test (the engine below
    also reads the real clock, so the two must agree)."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


class Response:
    def __init__(self, status: int, chunks: list[bytes], headers: dict[str, str]) -> None:
        self.status_code = status
        self.headers = headers
        self._chunks = chunks
        self.consumed = 0

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.consumed += 1
            yield chunk

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class Session:
    def __init__(self, *responses: Response) -> None:
        self.responses = list(responses)
        self.calls: list[dict[str, Any]] = []

    def get(self, url: str, **kwargs: Any) -> Response:
        self.calls.append(kwargs)
        return self.responses.pop(0)


def source(session: Session, clock: Clock, deadline: float | None) -> HttpRangeSource:
    return HttpRangeSource(
        session,  # type: ignore[arg-type]
        "http://127.0.0.1:1/download?bucket=b&blob=v.mp4",
        {"Authorization": SECRET},
        timeout=(5, 60),
        deadline=deadline,
        clock=clock,
    )


def ok(body: bytes, offset: int = 0, total: int = 100) -> Response:
    end = offset + len(body) - 1
    return Response(206, [body], {"Content-Range": f"bytes {offset}-{end}/{total}"})


def test_each_read_waits_at_most_until_the_deadline_and_follows_no_redirect():
    clock = Clock()
    session = Session(ok(b"abcd"))
    ranged = source(session, clock, deadline=clock.now + 2.0)
    assert ranged.read(0, 4) == b"abcd"
    [call] = session.calls
    assert call["timeout"] == (2.0, 2.0)
    assert call["allow_redirects"] is False


def test_a_read_after_the_deadline_fails_at_once_without_a_request():
    clock = Clock()
    session = Session(ok(b"abcd"))
    ranged = source(session, clock, deadline=clock.now - 0.1)
    with pytest.raises(ClipUnavailable) as info:
        ranged.read(0, 4)
    assert info.value.reason is ClipReason.DEADLINE_EXCEEDED
    assert info.value.transient is False
    assert session.calls == []


def test_a_206_body_longer_than_its_range_is_refused_while_streaming():
    clock = Clock()
    endless = Response(206, [b"x" * 4] * 1000, {"Content-Range": "bytes 0-3/100"})
    ranged = source(Session(endless), clock, deadline=None)
    with pytest.raises(ClipUnavailable) as info:
        ranged.read(0, 4)
    assert "longer than its Content-Range" in info.value.message
    assert endless.consumed == 2  # stopped at the first byte too many, not at the end
    assert SECRET not in str(info.value)


def test_a_range_wider_than_asked_is_refused_before_reading_the_body():
    wide = Response(206, [b"x" * 50], {"Content-Range": "bytes 0-49/100"})
    with pytest.raises(ClipUnavailable):
        source(Session(wide), Clock(), deadline=None).read(0, 4)
    assert wide.consumed == 0


def test_a_body_still_streaming_at_the_deadline_ends_the_clip():
    clock = Clock()

    class Slow(Response):
        def iter_content(self, chunk_size: int) -> Iterator[bytes]:
            yield b"ab"
            clock.now += 10  # the source trickles past the deadline
            yield b"cd"

    slow = Slow(206, [], {"Content-Range": "bytes 0-3/100"})
    ranged = source(Session(slow), clock, deadline=clock.now + 5)
    with pytest.raises(ClipUnavailable) as info:
        ranged.read(0, 4)
    assert info.value.reason is ClipReason.DEADLINE_EXCEEDED


def test_a_rate_slot_past_the_deadline_ends_the_read_instead_of_waiting():
    clock = Clock()
    limiter = RateLimiter(1 / 30, what="download", clock=clock, sleep=lambda s: None)
    limiter.acquire(clock.now + 100)  # the next slot is 30 s away
    paced = PacedSession(requests.Session(), limiter, clock, deadline=clock.now + 10)
    with pytest.raises(ClipUnavailable) as info:
        paced.request("GET", "http://127.0.0.1:1/never")
    assert info.value.reason is ClipReason.DEADLINE_EXCEEDED


# -- the fetcher: the clips still to cut when time runs out end with deadline_exceeded -----

SRC = SourceVideo("mavi-resource", "V1.mp4")


def query() -> Query:
    obj = QueryObject("queries", "a.jpg", 1, 10, "image/jpeg", {}, "ev-1", "")
    return Query(obj, "V1", "p", "default", "jpeg")


@pytest.fixture(scope="module")
def video_path(tmp_path_factory) -> Path:
    info = make_video(
        tmp_path_factory.mktemp("deadline") / "v.mp4",
        seconds=20,
        fps=10,
        width=160,
        height=120,
        gop=20,
    )
    return Path(info.path)


def copier(storage: Any, clock: Clock, source_mode: FetchSource = FetchSource.AUTO) -> CopyFetcher:
    return CopyFetcher(
        FakeSearchApi([]),
        storage,
        allowed_buckets=frozenset({"mavi-resource"}),
        source_mode=source_mode,
        prefix="clipsearch/",
        logger=logging.getLogger("test"),
        max_bytes=10**10,
        clock=clock,
    )


def fetcher(storage: FakeStorage, clock: Clock, video: Path) -> ClipFetcher:
    api = FakeSearchApi([])
    log = logging.getLogger("test")
    copy = copier(storage, clock)
    return ClipFetcher(
        api,
        storage,
        FileSources({SRC: video}),
        FileSources(),
        copy,
        allowed_buckets=frozenset({"mavi-resource"}),
        source_mode=FetchSource.AUTO,
        prefix="clipsearch/",
        exact=False,
        max_clip_s=300,
        max_index_bytes=64 * 1024 * 1024,
        index_cache=IndexCache(0),
        logger=log,
        clock=clock,
    )


def test_clips_left_when_time_runs_out_end_with_a_reason(video_path):
    clock = Clock()
    storage = FakeStorage("results")
    storage.put("mavi-resource", "V1.mp4", video_path.read_bytes(), generation=1)
    upload = storage.upload_file

    def slow_upload(*args: Any, **kwargs: Any) -> Any:
        clock.now += 100  # the first clip's upload uses the event's remaining time
        return upload(*args, **kwargs)

    storage.upload_file = slow_upload  # type: ignore[method-assign]
    hits = [Hit(2.0, 4.0, 0.9, SRC), Hit(8.0, 10.0, 0.8, SRC), Hit(12.0, 13.0, 0.7, SRC)]
    clips = fetcher(storage, clock, video_path).fetch(query(), hits, deadline=clock.now + 50)
    assert clips[0].artifact is not None
    assert clips[0].artifact.mode == "clip"
    for clip in clips[1:]:
        assert clip.fallback_reason == "deadline_exceeded"
        assert clip.artifact is None  # no copy either: there is no time left for one
        assert clip.fetch_error is not None
        assert clip.fetch_error.startswith("deadline_exceeded")
    assert [c.rank for c in clips] == [1, 2, 3]
    assert storage.copies == 0


def test_no_time_left_at_all_fetches_nothing(video_path):
    clock = Clock()
    storage = FakeStorage("results")
    hits = [Hit(2.0, 4.0, 0.9, SRC)]
    [clip] = fetcher(storage, clock, video_path).fetch(query(), hits, deadline=clock.now - 1)
    assert clip.fallback_reason == "deadline_exceeded"
    assert clip.artifact is None
    assert storage.uploads == 0


# -- a trickling source: the read timeout restarts with every byte, the deadline does not ---


@pytest.fixture
def trickling_server() -> Iterator[Callable[[str], str]]:
    """A real socket answering one ranged GET with a 206 whose body then trickles (one byte
    a second, under any read timeout) or stalls; it never sends the whole range."""
    sockets: list[socket.socket] = []
    size = 300 * 1024

    def serve(listener: socket.socket, mode: str) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-%d/%d\r\n"
                b"Content-Length: %d\r\nContent-Type: video/mp4\r\n\r\n" % (size - 1, size, size)
            )
            conn.sendall(b"x" * 1000)
            for _ in range(30):
                time.sleep(1.0)
                if mode == "trickle":
                    with contextlib.suppress(OSError):
                        conn.sendall(b"x")

    def start(mode: str) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sockets.append(listener)
        threading.Thread(target=serve, args=(listener, mode), daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/download?bucket=b&blob=v.mp4"

    yield start
    for listener in sockets:
        listener.close()


@pytest.mark.parametrize("mode", ["trickle", "stall"])
def test_a_body_trickling_past_the_deadline_is_cut_off_at_the_deadline(trickling_server, mode):
    url = trickling_server(mode)
    ranged = HttpRangeSource(
        requests.Session(),
        url,
        {"Authorization": SECRET},
        timeout=(5, 60),
        deadline=time.monotonic() + 1.5,
    )
    started = time.monotonic()
    with pytest.raises(ClipUnavailable) as info:
        ranged.read(0, 300 * 1024)
    elapsed = time.monotonic() - started
    assert info.value.reason is ClipReason.DEADLINE_EXCEEDED
    assert elapsed < 3.0, f"the read ran {elapsed:.1f}s past a 1.5 s deadline"
    assert SECRET not in str(info.value)


# -- the server-side copy: each call and each step of a multi-call rewrite end at the deadline


class Blob:
    """Just enough of storage.Blob for copy_from_gcs; records what it was asked."""

    def __init__(self, owner: StubGcs, name: str) -> None:
        self.owner = owner
        self.name = name
        self.size = 10**9
        self.generation = 7
        self.metadata: dict[str, str] | None = None
        self.custom_time: Any = None

    def rewrite(self, source: Blob, token: str | None = None, **kwargs: Any) -> tuple[Any, ...]:
        self.owner.calls.append(("rewrite", kwargs["timeout"]))
        self.owner.clock.now += 10  # each rewrite call copies a part, in ten seconds
        return ("more", 0, 0)  # a huge object: the rewrite never finishes by itself

    def reload(self, **kwargs: Any) -> None:
        self.owner.calls.append(("reload", kwargs["timeout"]))


class StubGcs:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, Any]] = []

    def bucket(self, name: str) -> StubGcs:
        return self

    def blob(self, name: str, **kwargs: Any) -> Blob:
        return Blob(self, name)

    def get_blob(self, name: str, **kwargs: Any) -> Blob | None:
        self.calls.append(("get_blob", kwargs["timeout"]))
        return Blob(self, name) if name == "V1.mp4" else None


def test_a_server_side_copy_stops_at_the_deadline_between_rewrite_calls():
    clock = Clock()
    gcs = StubGcs(clock)
    store = GcsResultStore(gcs, "results")  # type: ignore[arg-type]
    with pytest.raises(TransientError) as info:
        store.copy_from_gcs(SRC, "videos/V1.mp4", 10**10, clock.now + 25, clock)
    assert "TimeoutError" in info.value.message
    rewrites = [timeout for call, timeout in gcs.calls if call == "rewrite"]
    # At 0 s, 10 s and 20 s, each waiting at most the time left; none starts past 25 s.
    assert rewrites == [(5.0, 25.0), (5.0, 15.0), (5.0, 5.0)]


def test_copy_mode_passes_the_deadline_and_ends_the_clip_out_of_time():
    clock = Clock()
    gcs = StubGcs(clock)
    store = GcsResultStore(gcs, "results")  # type: ignore[arg-type]
    real = store.copy_from_gcs

    def copy(source: SourceVideo, name: str, max_bytes: int, deadline: float | None = None) -> Any:
        assert deadline is not None
        return real(source, name, max_bytes, deadline, clock)

    store.copy_from_gcs = copy  # type: ignore[method-assign]
    [clip] = copier(store, clock, FetchSource.GCS).fetch(
        query(), [Hit(1.0, 2.0, 0.9, SRC)], deadline=clock.now + 25
    )
    assert clip.artifact is None
    assert clip.fetch_error is not None
    assert clip.fetch_error.startswith("deadline_exceeded")


class Recording(FakeStorage):
    """Keeps the deadline each look-up of the fetch stage was given."""

    def __init__(self) -> None:
        super().__init__("results")
        self.deadlines: dict[str, float | None] = {}

    def find_artifact(self, name: str, mode: str, deadline: float | None = None) -> Any:
        self.deadlines["find_artifact"] = deadline
        return super().find_artifact(name, mode, deadline)

    def read_bytes(self, name: str, deadline: float | None = None) -> bytes | None:
        self.deadlines["read_bytes"] = deadline
        return super().read_bytes(name, deadline)

    def copy_from_gcs(
        self, source: SourceVideo, name: str, max_bytes: int, deadline: float | None = None
    ) -> Any:
        self.deadlines["copy_from_gcs"] = deadline
        return None  # not readable in GCS: the API download is next

    def find_copy(self, name: str, source_id: str, deadline: float | None = None) -> Any:
        self.deadlines["find_copy"] = deadline
        return super().find_copy(name, source_id, deadline)


def test_every_look_up_of_the_fetch_stage_gets_the_deadline(video_path):
    clock = Clock()
    deadline = clock.now + 50
    clipping = Recording()
    fetcher(clipping, clock, video_path).fetch(query(), [Hit(2.0, 4.0, 0.9, SRC)], deadline)
    copying = Recording()
    copier(copying, clock).fetch(query(), [Hit(2.0, 4.0, 0.9, SRC)], deadline)
    assert clipping.deadlines == {"find_artifact": deadline, "read_bytes": deadline}
    assert copying.deadlines == {"copy_from_gcs": deadline, "find_copy": deadline}
