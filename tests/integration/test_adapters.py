"""Each adapter against the real thing it adapts: fake-gcs-server, the Pub/Sub emulator, and
the search API stand-in (the one stand-in, honouring the documented contract)."""

from __future__ import annotations

import http.server
import io
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
import requests
from google.cloud import pubsub_v1, storage

from clipsearch.adapters.gcs import GcsImageReader, GcsRecordStore, GcsResultStore
from clipsearch.adapters.pubsub import PubSubPublisher
from clipsearch.adapters.search_api import HttpSearchApi, new_session
from clipsearch.clipping import ClipReason, ClipUnavailable
from clipsearch.errors import AnswerLost, ClipSearchError, PermanentError, Reason, TransientError
from clipsearch.idempotency import Claim, Idempotency, Record
from clipsearch.model import Query, QueryObject, SourceVideo
from clipsearch.ratelimit import RateLimiter
from clipsearch.retry import RetryPolicy
from clipsearch_dev.media import VideoInfo, make_video, query_image_bytes
from clipsearch_dev.standin import StandinServer
from tests.images import image_bytes
from tests.integration.conftest import PROJECT

pytestmark = pytest.mark.integration
KEY = "sk-mavi-integration-SECRET"


def far() -> float:
    """A deadline that does not bind."""
    return time.monotonic() + 600


def fresh_bucket(client: storage.Client, stem: str) -> storage.Bucket:
    return client.create_bucket(f"{stem}-{uuid.uuid4().hex[:10]}")


# -- Cloud Storage -----------------------------------------------------------------------


def test_image_read_is_pinned_to_the_event_generation(storage_client):
    bucket = fresh_bucket(storage_client, "queries")
    blob = bucket.blob("a.jpg")
    blob.upload_from_string(b"first", content_type="image/jpeg")
    first = blob.generation
    blob.upload_from_string(b"second", content_type="image/jpeg")
    reader = GcsImageReader(storage_client)
    assert reader.read_image(bucket.name, "a.jpg", blob.generation, 100) == b"second"
    with pytest.raises(PermanentError) as info:
        reader.read_image(bucket.name, "a.jpg", first, 100)
    assert info.value.reason is Reason.OBJECT_GONE
    with pytest.raises(PermanentError):
        reader.read_image(bucket.name, "never-was.jpg", 1, 100)


def test_image_read_stops_one_byte_past_the_limit(storage_client):
    bucket = fresh_bucket(storage_client, "queries")
    blob = bucket.blob("big.jpg")
    blob.upload_from_string(b"x" * 5000, content_type="image/jpeg")
    data = GcsImageReader(storage_client).read_image(bucket.name, "big.jpg", blob.generation, 1000)
    assert len(data) == 1001


def test_result_store_copies_once_per_source_generation(storage_client):
    source = fresh_bucket(storage_client, "mavi")
    results = fresh_bucket(storage_client, "results")
    src = source.blob("V1.mp4")
    src.upload_from_string(b"v" * 3000, content_type="video/mp4")
    store = GcsResultStore(storage_client, results.name)
    video = SourceVideo(source.name, "V1.mp4")
    first = store.copy_from_gcs(video, "videos/V1.mp4", 10**9)
    assert first is not None
    assert (first.size, first.reused) == (3000, False)
    assert results.blob("videos/V1.mp4").download_as_bytes() == b"v" * 3000
    again = store.copy_from_gcs(video, "videos/V1.mp4", 10**9)
    assert again is not None
    assert again.reused
    src.upload_from_string(b"w" * 10, content_type="video/mp4")  # a new generation: copy anew
    third = store.copy_from_gcs(video, "videos/V1.mp4", 10**9)
    assert third is not None
    assert (third.size, third.reused) == (10, False)
    assert store.copy_from_gcs(SourceVideo(source.name, "missing.mp4"), "videos/x", 10**9) is None


def test_result_store_streams_uploads_and_writes_json(storage_client):
    results = fresh_bucket(storage_client, "results")
    store = GcsResultStore(storage_client, results.name)
    payload = bytes(range(256)) * 40_000  # ~10 MB: more than one upload chunk
    artifact = store.upload_stream(
        "videos/x.mp4", io.BytesIO(payload), len(payload), "video/mp4", "gs://m/x.mp4"
    )
    assert artifact.size == len(payload)
    assert results.blob("videos/x.mp4").download_as_bytes() == payload
    assert store.find_copy("videos/x.mp4", "gs://m/x.mp4") is not None
    assert store.find_copy("videos/x.mp4", "gs://m/other.mp4") is None
    uri = store.write_json("r/1.json", b'{"a":1}')
    assert uri == f"gs://{results.name}/r/1.json"
    assert results.blob("r/1.json").download_as_bytes() == b'{"a":1}'


class Clock:
    """A settable wall clock for GcsResultStore (whole seconds: customTime keeps them exactly)."""

    def __init__(self) -> None:
        self.at = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


def custom_time(bucket: storage.Bucket, name: str) -> datetime | None:
    blob = bucket.get_blob(name)
    assert blob is not None, name
    return blob.custom_time


def test_every_artifact_is_written_with_its_custom_time(storage_client, tmp_path):
    """The lifecycle rule counts from customTime (days_since_custom_time): each way an
    artifact is made sets it, or the artifact would never be deleted."""
    source = fresh_bucket(storage_client, "mavi")
    results = fresh_bucket(storage_client, "results")
    source.blob("V1.mp4").upload_from_string(b"v" * 3000, content_type="video/mp4")
    clock = Clock()
    store = GcsResultStore(storage_client, results.name, now=clock)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"c" * 1000)
    store.upload_file("clips/a.mp4", clip, "video/mp4", {"clipsearch-start": "1.0"}, "clip")
    store.write_bytes("clips/a.jpg", b"jpeg", "image/jpeg")
    store.write_bytes("index/a", b"sidecar", "application/octet-stream")
    payload = bytes(range(256)) * 40_000  # more than one upload chunk: a resumable upload
    store.upload_stream("videos/s.mp4", io.BytesIO(payload), len(payload), "video/mp4", "gs://m/s")
    store.copy_from_gcs(SourceVideo(source.name, "V1.mp4"), "videos/V1.mp4", 10**9)
    for name in ("clips/a.mp4", "clips/a.jpg", "index/a", "videos/s.mp4", "videos/V1.mp4"):
        assert custom_time(results, name) == clock.at, name
    # fake-gcs-server drops customTime from a rewrite's body (the server-side copy above), so
    # the store patched it in afterwards; result JSON keeps none (its rule counts from creation).
    store.write_json("results/r.json", b"{}")
    assert custom_time(results, "results/r.json") is None


def test_reuse_moves_custom_time_forward_with_the_clips_poster(storage_client, tmp_path):
    """A result written on day 29 names artifacts that then live on from day 29."""
    results = fresh_bucket(storage_client, "results")
    clock = Clock()
    made = clock.at
    store = GcsResultStore(storage_client, results.name, now=clock)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"c" * 1000)
    poster_uri = f"gs://{results.name}/clips/a.jpg"
    store.write_bytes("clips/a.jpg", b"jpeg", "image/jpeg")
    meta = {"clipsearch-start": "1.0", "clipsearch-end": "2.0", "clipsearch-poster": poster_uri}
    store.upload_file("clips/a.mp4", clip, "video/mp4", meta, "clip")
    store.upload_stream("videos/v.mp4", io.BytesIO(b"v" * 10), 10, "video/mp4", "gs://m/v")
    store.write_bytes("index/v", b"sidecar", "application/octet-stream")
    names = ("clips/a.mp4", "clips/a.jpg", "videos/v.mp4", "index/v")

    def reuse_all() -> None:
        artifact = store.find_artifact("clips/a.mp4", "clip")
        assert artifact is not None
        assert (artifact.reused, artifact.start_time, artifact.poster_uri) == (
            True,
            1.0,
            poster_uri,
        )
        assert store.find_copy("videos/v.mp4", "gs://m/v") is not None
        assert store.read_bytes("index/v") == b"sidecar"

    clock.at = made + timedelta(minutes=30)  # within REFRESH_AFTER: no write
    reuse_all()
    assert [custom_time(results, n) for n in names] == [made] * 4
    clock.at = made + timedelta(days=29)
    reuse_all()
    assert [custom_time(results, n) for n in names] == [clock.at] * 4
    # The patch touched customTime only: what the clip really holds is still reported.
    assert results.get_blob("clips/a.mp4").metadata == meta
    # A copy of another source is not this query's artifact: not found, not refreshed.
    clock.at = made + timedelta(days=40)
    assert store.find_copy("videos/v.mp4", "gs://m/other") is None
    assert custom_time(results, "videos/v.mp4") == made + timedelta(days=29)
    assert store.read_bytes("index/missing") is None
    assert store.find_artifact("clips/missing.mp4", "clip") is None


def test_a_reused_clip_whose_poster_is_gone_is_still_reused(storage_client, tmp_path):
    results = fresh_bucket(storage_client, "results")
    clock = Clock()
    store = GcsResultStore(storage_client, results.name, now=clock)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"c" * 100)
    meta = {"clipsearch-poster": f"gs://{results.name}/clips/gone.jpg"}
    store.upload_file("clips/b.mp4", clip, "video/mp4", meta, "clip")
    clock.at += timedelta(days=3)
    artifact = store.find_artifact("clips/b.mp4", "clip")
    assert artifact is not None
    assert artifact.reused
    assert custom_time(results, "clips/b.mp4") == clock.at
    assert results.get_blob("clips/gone.jpg") is None  # the refresh did not create it


# -- Pub/Sub -------------------------------------------------------------------------------


def test_publisher_publishes_body_and_attributes(publisher_client, subscriber_client):
    topic = f"projects/{PROJECT}/topics/t-{uuid.uuid4().hex[:8]}"
    sub = f"projects/{PROJECT}/subscriptions/s-{uuid.uuid4().hex[:8]}"
    publisher_client.create_topic(name=topic)
    subscriber_client.create_subscription(name=sub, topic=topic)
    message_id = PubSubPublisher(publisher_client).publish(topic, b'{"x":1}', {"status": "ok"})
    assert message_id
    response = subscriber_client.pull(subscription=sub, max_messages=5, timeout=10)
    [received] = response.received_messages
    assert received.message.data == b'{"x":1}'
    assert dict(received.message.attributes) == {"status": "ok"}
    assert received.message.message_id == message_id


def test_publishing_to_a_missing_topic_is_transient(pubsub_env):
    publisher = PubSubPublisher(pubsub_v1.PublisherClient(), timeout_s=10)
    with pytest.raises(TransientError):
        publisher.publish(f"projects/{PROJECT}/topics/absent", b"{}", {})


# -- The search API, against the stand-in ------------------------------------------------


@pytest.fixture(scope="module")
def sample_video(tmp_path_factory) -> VideoInfo:
    return make_video(tmp_path_factory.mktemp("media") / "v.mp4", seconds=30, width=160, height=120)


@pytest.fixture
def standin(storage_client, sample_video) -> Iterator[StandinServer]:
    bucket = fresh_bucket(storage_client, "mavi")
    bucket.blob("V1.mp4").upload_from_filename(str(sample_video.path), content_type="video/mp4")
    with StandinServer(storage_client, api_key=KEY, search_rate_per_s=None) as server:
        server.register_video("V1", bucket.name, "V1.mp4")
        yield server


def client_for(
    server: StandinServer,
    *,
    key: str = KEY,
    attempts: int = 3,
    read_timeout: float = 10,
    budget: float = 30,
) -> HttpSearchApi:
    return HttpSearchApi(
        new_session(),
        api_key=key,
        base_url=server.base_url,
        download_base_url=server.base_url,
        timeouts=(2, read_timeout),
        retry=RetryPolicy(attempts, budget, base_delay_s=0.05, max_delay_s=0.2),
        logger=logging.getLogger("test"),
        rng=random.Random(0),
    )


def query(name: str = "q.jpg", video_no: str = "V1", prompt: str = "p") -> Query:
    content_type = "image/png" if name.endswith(".png") else "image/jpeg"
    obj = QueryObject("qb", name, 1, 10, content_type, {}, "e", "")
    return Query(obj, video_no, prompt, "default", name.rsplit(".", 1)[-1])


def test_search_finds_the_moment_of_a_frame(standin, sample_video):
    api = client_for(standin)
    hits = api.search(query(), query_image_bytes(sample_video.path, 17.0), far())
    assert hits
    assert hits[0].start_time <= 17.0 <= hits[0].end_time
    assert hits[0].source is not None
    assert hits[0].source.blob == "V1.mp4"
    assert standin.stats.billed_searches == 1


def test_wrong_key_is_unauthorized(standin):
    with pytest.raises(PermanentError) as info:
        client_for(standin, key="sk-mavi-wrong").search(query(), image_bytes(), far())
    assert info.value.reason is Reason.API_UNAUTHORIZED


def test_unknown_video_is_an_invalid_request_after_one_quick_retry(standin):
    with pytest.raises(PermanentError) as info:
        client_for(standin).search(query(video_no="VI-nope"), image_bytes(), far())
    assert info.value.reason is Reason.API_INVALID_REQUEST
    assert standin.stats.requests["search_clips_by_image"] == 2
    assert standin.stats.billed_searches == 0


@pytest.mark.parametrize("failure", [503, 500, "0429"])
def test_failures_the_vendor_answered_are_retried_then_succeed(standin, sample_video, failure):
    standin.knobs.merge({"fail_next": [failure], "bill_abandoned": True})
    api = client_for(standin, read_timeout=1.5)
    hits = api.search(query(), query_image_bytes(sample_video.path, 5.0), far())
    assert hits
    assert standin.stats.billed_searches == 1


@pytest.mark.parametrize("failure", ["0409", 409])
def test_a_search_the_vendor_is_already_handling_is_never_sent_again(
    standin, sample_video, failure
):
    """0409: "Duplicate requests are not allowed" (all the vendor's pages say). Only an earlier
    send of ours can be the duplicate, and it may have run and been billed: the query ends
    search_unconfirmed."""
    standin.knobs.merge({"fail_next": [failure], "bill_abandoned": True})
    with pytest.raises(PermanentError) as info:
        client_for(standin).search(query(), query_image_bytes(sample_video.path, 5.0), far())
    assert info.value.reason is Reason.SEARCH_UNCONFIRMED
    assert "0409" in info.value.message
    assert standin.stats.requests["search_clips_by_image"] == 1


@pytest.mark.parametrize("billing", ["pessimistic", "lenient"])
@pytest.mark.parametrize("failure", ["malformed_json", "drop_connection", "slow:3"])
def test_a_search_whose_answer_is_lost_is_never_sent_again(standin, sample_video, failure, billing):
    """Pessimistic billing: the vendor ran (and billed) the search before the answer was lost."""
    standin.knobs.merge({"fail_next": [failure], "bill_abandoned": billing == "pessimistic"})
    api = client_for(standin, read_timeout=1.5)
    with pytest.raises(PermanentError) as info:
        api.search(query(), query_image_bytes(sample_video.path, 5.0), far())
    assert info.value.reason is Reason.SEARCH_UNCONFIRMED
    assert standin.stats.requests["search_clips_by_image"] == 1
    if failure.startswith("slow:"):
        time.sleep(float(failure.removeprefix("slow:")))  # let the abandoned search finish
    assert standin.stats.billed_searches == (1 if billing == "pessimistic" else 0)


def test_a_search_that_never_connects_is_retried(standin):
    """Nothing listens on the port: the vendor cannot have run it, so retrying is safe."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the client connects
    retried = []
    api = HttpSearchApi(
        new_session(),
        api_key=KEY,
        base_url=f"http://127.0.0.1:{port}/serve/api/v1",
        download_base_url=standin.base_url,
        timeouts=(2, 10),
        retry=RetryPolicy(3, 30, base_delay_s=0.01, max_delay_s=0.02),
        logger=logging.getLogger("test"),
        sleep=retried.append,
    )
    with pytest.raises(TransientError) as info:
        api.search(query(), image_bytes(), far())
    assert not isinstance(info.value, AnswerLost)
    assert len(retried) == 2  # three attempts


def test_persistent_transient_failure_gives_up_within_attempts(standin):
    standin.knobs.merge({"fail_next": [503, 503, 503, 503]})
    with pytest.raises(TransientError):
        client_for(standin, attempts=3).search(query(), image_bytes(), far())
    assert standin.stats.requests["search_clips_by_image"] == 3


def test_rate_limit_is_honoured_by_backing_off(standin, sample_video):
    standin.knobs.merge({"rate_per_s": 2.0})
    api = client_for(standin, attempts=6)
    image = query_image_bytes(sample_video.path, 3.0)
    for _ in range(3):
        assert api.search(query(), image, far())
    assert standin.stats.billed_searches == 3
    assert standin.stats.responses.get("0429", 0) >= 1


def test_credits_and_disabled_account_are_permanent(standin):
    standin.knobs.merge({"credits": 0})
    with pytest.raises(PermanentError) as info:
        client_for(standin).search(query(), image_bytes(), far())
    assert info.value.reason is Reason.API_INSUFFICIENT_CREDITS
    standin.knobs.merge({"credits": None, "disabled": True})
    with pytest.raises(PermanentError) as info:
        client_for(standin).search(query(), image_bytes(), far())
    assert info.value.reason is Reason.API_ACCOUNT_DISABLED


def test_video_metadata_and_download(standin, sample_video):
    api = client_for(standin)
    meta = api.video_metadata("V1", "default", far())
    assert meta.status == "PARSE"
    assert meta.source is not None
    with api.open_download(meta.source, far()) as download:
        data = download.stream.read()
    assert data == Path(sample_video.path).read_bytes()
    assert download.size == len(data)
    with (
        pytest.raises(PermanentError),
        api.open_download(SourceVideo(meta.source.bucket, "nope"), far()),
    ):
        pass


def test_key_never_logged_by_the_client(standin, caplog):
    caplog.set_level(logging.DEBUG)
    standin.knobs.merge({"fail_next": [503]})
    client_for(standin).search(query(), image_bytes(), far())
    assert KEY not in caplog.text
    assert "503" in caplog.text


def test_requests_session_pools_connections(standin):
    session = new_session()
    adapter = session.get_adapter("http://127.0.0.1")
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert session.verify is True


# -- Redirects: the key goes to the configured host and nowhere else ----------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with a redirect to `target`, or (as the target) records it."""

    target: str | None = None
    seen: ClassVar[list[dict[str, str]]] = []

    def _answer(self) -> None:
        if self.target is not None:
            self.send_response(302)
            self.send_header("Location", self.target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).seen.append(dict(self.headers))
        body = b'{"code":"0000","msg":"ok","data":{}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self._answer()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A server redirecting everything to another one that records what reaches it."""
    seen: list[dict[str, str]] = []
    target_handler = type("Target", (_Recorder,), {"target": None, "seen": seen})
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), target_handler)
    target_url = f"http://127.0.0.1:{target.server_address[1]}"
    front_handler = type("Front", (_Recorder,), {"target": target_url, "seen": []})
    front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), front_handler)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (target, front)]
    for t in threads:
        t.start()
    try:
        yield f"http://127.0.0.1:{front.server_address[1]}/serve/api/v1", seen
    finally:
        for s in (front, target):
            s.shutdown()
            s.server_close()


def plain_client(base: str) -> HttpSearchApi:
    """A client of a local server that is not the stand-in: one try, short timeouts."""
    return HttpSearchApi(
        new_session(),
        api_key=KEY,
        base_url=base,
        download_base_url=base,
        timeouts=(2, 5),
        retry=RetryPolicy(1, 5),
        logger=logging.getLogger("test"),
    )


def test_api_calls_never_follow_a_redirect(redirecting):
    base, seen = redirecting
    api = plain_client(base)
    with pytest.raises(PermanentError):
        api.search(query(), image_bytes(), far())
    with pytest.raises(ClipSearchError):
        api.video_metadata("V1", "default", far())
    with pytest.raises(ClipSearchError), api.open_download(SourceVideo("b", "v.mp4"), far()):
        pass
    with pytest.raises(ClipUnavailable):
        api.open_range(SourceVideo("b", "v.mp4"), far()).read(0, 10)
    assert seen == []  # nothing, and so no key, reached the redirect's target


def test_ranged_reads_through_the_api_end_at_the_deadline(standin, sample_video):
    api = client_for(standin)
    meta = api.video_metadata("V1", "default", far())
    assert meta.source is not None
    ranged = api.open_range(meta.source, time.monotonic() + 30)
    assert len(ranged.read(0, 1000)) == 1000
    late = api.open_range(meta.source, time.monotonic() - 1)
    before = standin.stats.requests.get("download", 0)
    with pytest.raises(ClipUnavailable) as info:
        late.read(0, 1000)
    assert info.value.reason is ClipReason.DEADLINE_EXCEEDED
    assert standin.stats.requests.get("download", 0) == before


# -- The idempotency record: what the "search sent" state costs ---------------------------


def test_the_search_sent_state_is_one_compare_and_swap_write(storage_client):
    """Writes the record as a query does; prints what the extra write costs on this stack."""
    bucket = fresh_bucket(storage_client, "results")
    store = GcsRecordStore(storage_client, bucket.name, "clipsearch/records/")
    idempotency = Idempotency(store, lease_s=540)
    timings = []
    for i in range(30):
        claim = idempotency.claim(f"queries/q{i}.jpg#1", time.time())
        assert isinstance(claim, Claim)
        started = time.perf_counter()
        sent = idempotency.mark_search_sent(claim, time.time())
        timings.append((time.perf_counter() - started) * 1000)
        with pytest.raises(TransientError):  # an attempt holding the older generation: refused
            idempotency.store_hits(claim, [])
        assert idempotency.store_hits(sent, []).record.search_sent_at is not None
    record, _ = store.read("queries/q0.jpg#1")
    assert record.search_sent_at is not None
    assert record.hits == ()  # the answer is stored over the mark, which stays
    timings.sort()
    print(
        f"\nsearch_sent write on fake-gcs-server: median {timings[15]:.1f} ms,"
        f" max {timings[-1]:.1f} ms"
    )


def test_a_record_write_that_landed_is_ours_when_its_retry_gets_412(storage_client):
    """The client retries a write whose response was lost; the retry's precondition then fails
    (412) against the write that landed. An identical record is our own write, not a takeover."""
    bucket = fresh_bucket(storage_client, "results")
    store = GcsRecordStore(storage_client, bucket.name, "clipsearch/records/")
    key = "queries/q.jpg#1"
    first = Record(lease_until=time.time() + 540, created_at=time.time())
    created = store.create(key, first)
    assert created is not None
    assert store.create(key, first) == created  # the create's retry: ours
    assert store.create(key, replace(first, attempts=2)) is None  # someone else's
    mine = replace(first, hits=())
    landed = store.replace(key, mine, created)
    assert landed is not None
    assert store.replace(key, mine, created) == landed  # the replace's retry: ours
    assert store.replace(key, replace(first, attempts=2), created) is None  # taken over
    assert store.read(key) == (mine, landed)


class _Dropping(http.server.BaseHTTPRequestHandler):
    """Promises 100,000 bytes of video, sends 100, then drops the connection or trickles one
    byte a second (under any read timeout, which restarts with every byte)."""

    trickle = False

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 100)
        self.wfile.flush()
        for _ in range(30 if self.trickle else 0):
            time.sleep(1.0)
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                break
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("trickle", [False, True])
def test_a_download_dropped_or_trickling_mid_body_is_a_transient_failure(storage_client, trickle):
    handler = type("Handler", (_Dropping,), {"trickle": trickle})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/serve/api/v1"
    api = plain_client(base)
    store = GcsResultStore(storage_client, fresh_bucket(storage_client, "results").name)
    deadline = time.monotonic() + 2.0
    try:
        with (
            pytest.raises(TransientError) as info,
            api.open_download(SourceVideo("b", "v.mp4"), deadline) as download,
        ):
            store.upload_stream(
                "videos/v.mp4",
                download.stream,
                download.size,
                download.content_type,
                "gs://b/v.mp4",
                deadline=deadline,
            )
        late = time.monotonic() - deadline
    finally:
        server.shutdown()
        server.server_close()
    assert "streaming gs://b/v.mp4" in info.value.message
    assert KEY not in info.value.message
    assert late < 1.0, f"the download ran {late:.1f}s past the event's deadline"


class _CountingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(1000.0, what="test")
        self.acquired = 0

    def acquire(self, deadline: float) -> float:
        self.acquired += 1
        return super().acquire(deadline)


def test_every_metadata_look_up_waits_for_its_own_rate_slot(standin):
    """get_metadata has its own documented limit (status look-ups, 1/s): it is paced too."""
    limiter = _CountingLimiter()
    api = HttpSearchApi(
        new_session(),
        api_key=KEY,
        base_url=standin.base_url,
        download_base_url=standin.base_url,
        timeouts=(2, 10),
        retry=RetryPolicy(3, 30, base_delay_s=0.05, max_delay_s=0.2),
        logger=logging.getLogger("test"),
        metadata_limiter=limiter,
    )
    standin.knobs.merge({"fail_next": ["get_metadata:503"]})
    assert api.video_metadata("V1", "default", far()).status == "PARSE"
    assert limiter.acquired == 2  # the retry waited for a slot as well


@pytest.mark.parametrize("shape", ["object", "null"])
def test_a_success_without_a_list_of_hits_is_zero_hits(standin, sample_video, shape):
    """An older page's example answers `"data": {}`: a search that found nothing, billed once."""
    standin.knobs.merge({"search_data": shape})
    hits = client_for(standin).search(query(), query_image_bytes(sample_video.path, 5.0), far())
    assert hits == []
    assert standin.stats.billed_searches == 1
