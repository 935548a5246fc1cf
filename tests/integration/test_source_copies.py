"""The API path's clip source: one whole download per source into our bucket, then ranged reads
of our copy, against the real stand-in (in each of its profiles) and fake-gcs-server."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import storage

from clipsearch.adapters.gcs import GcsResultStore
from clipsearch.adapters.search_api import HttpSearchApi, new_session
from clipsearch.clipping import ClipReason, ClipSource, ClipUnavailable, IndexCache
from clipsearch.copies import SourceCopies
from clipsearch.core.sourcecopy import META_CHECKED, META_DURATION, META_VERSION, Route
from clipsearch.errors import Reason
from clipsearch.model import SourceVideo, VideoMetadata
from clipsearch.retry import RetryPolicy
from clipsearch_dev.media import VideoInfo, make_video
from clipsearch_dev.standin import StandinServer
from clipsearch_dev.standin.faults import PROFILES
from tests.integration.test_adapters import KEY, far, fresh_bucket

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> VideoInfo:
    return make_video(tmp_path_factory.mktemp("media") / "v.mp4", seconds=20, width=160, height=120)


@pytest.fixture
def source_bucket(storage_client: storage.Client, video: VideoInfo) -> storage.Bucket:
    bucket = fresh_bucket(storage_client, "mavi")
    bucket.blob("V1.mp4").upload_from_filename(str(video.path), content_type="video/mp4")
    return bucket


def standin(storage_client: storage.Client, profile: str = "default") -> StandinServer:
    # The documented download limit would make these tests wait; it is not what they test.
    return StandinServer(
        storage_client,
        api_key=KEY,
        search_rate_per_s=None,
        download_rate_per_min=None,
        profile=profile,
    )


def copies_for(
    server: StandinServer,
    storage_client: storage.Client,
    results: str,
    *,
    max_bytes: int = 10**9,
    ranged_above: int = 10**9,
    recheck_s: float = 3600,
    now: datetime | None = None,
) -> tuple[SourceCopies, GcsResultStore]:
    api = HttpSearchApi(
        new_session(),
        api_key=KEY,
        base_url=server.base_url,
        download_base_url=server.base_url,
        timeouts=(2, 10),
        retry=RetryPolicy(3, 30, base_delay_s=0.05, max_delay_s=0.2),
        logger=logging.getLogger("test"),
        rng=random.Random(0),
    )
    store = GcsResultStore(storage_client, results)
    copies = SourceCopies(
        api,
        store,
        prefix="clipsearch/",
        max_bytes=max_bytes,
        ranged_above_bytes=ranged_above,
        recheck_s=recheck_s,
        lease_s=60,
        max_restarts=2,
        logger=logging.getLogger("test"),
        poll_s=0.1,
        **({"now": lambda: now} if now is not None else {}),
    )
    return copies, store


def cut_one(ranged: object, tmp_path: Path) -> int:
    """Cut one clip from the source; returns its size."""
    out = tmp_path / f"clip-{time.monotonic_ns()}.mp4"
    with ClipSource(ranged, index_cache=IndexCache(0), max_index_bytes=10**8) as clip:  # type: ignore[arg-type]
        clip.cut(5.0, 8.0, out, exact=False, max_clip_s=60)
    return out.stat().st_size


@pytest.fixture
def results(storage_client: storage.Client) -> str:
    return str(fresh_bucket(storage_client, "results").name)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_one_download_per_source_then_clips_from_our_copy(
    storage_client, source_bucket, results, video, profile, tmp_path
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    size = video.path.stat().st_size
    with standin(storage_client, profile) as server:
        copies, _ = copies_for(server, storage_client, results)
        first = copies.open_range(source, far())
        assert first.route is Route.COPY
        assert (first.vendor_requests, first.vendor_bytes) == (1, size)
        cut_one(first, tmp_path)
        for _ in range(3):  # later queries, and another instance: nothing from the vendor
            for opener in (copies, copies_for(server, storage_client, results)[0]):
                again = opener.open_range(source, far())
                assert (again.vendor_requests, again.vendor_bytes) == (0, 0)
                assert again.cache_key == first.cache_key
                cut_one(again, tmp_path)
        assert server.stats.requests.get("download") == 1
        assert server.stats.download_bytes == size
    assert copies.range_honoured is PROFILES[profile].get("range_honoured", True)
    copy = storage_client.bucket(results).get_blob("clipsearch/videos/" + source.uri[5:])
    assert copy.download_as_bytes() == video.path.read_bytes()
    assert copy.custom_time is not None  # under the artifacts' retention rule


@pytest.mark.parametrize("profile", ["default", "range-ignored-chunked"])
def test_concurrent_first_sights_download_once(
    storage_client, source_bucket, results, video, profile
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    with standin(storage_client, profile) as server:
        server.knobs.merge({"latency_s": 0.5})  # all of them meet the new source at once
        instances = [copies_for(server, storage_client, results)[0] for _ in range(4)]
        keys: list[str] = []
        spent: list[int] = []
        threads = [
            threading.Thread(
                target=lambda c=c: (
                    (r := c.open_range(source, far())),
                    keys.append(r.cache_key),
                    spent.append(r.vendor_requests),
                )
            )
            for c in instances
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert server.stats.requests.get("download") == 1
        assert server.stats.download_bytes == video.path.stat().st_size
    assert len(set(keys)) == 1
    assert len(keys) == 4
    assert sorted(spent) == [0, 0, 0, 1]


@pytest.mark.parametrize("profile", ["default", "chunked"])
def test_a_body_dropped_mid_way_resumes_from_the_byte_reached(
    storage_client, source_bucket, results, video, caplog, profile
):
    caplog.set_level(logging.INFO)
    source = SourceVideo(source_bucket.name, "V1.mp4")
    size = video.path.stat().st_size
    with standin(storage_client, profile) as server:
        server.knobs.merge({"fail_next": [f"download:drop_after:{size // 3}"]})
        copies, _ = copies_for(server, storage_client, results)
        ranged = copies.open_range(source, far())
        assert (ranged.vendor_requests, ranged.vendor_bytes, ranged.restarts) == (2, size, 0)
        assert server.stats.download_bytes == size  # billed once, resumed not restarted
    sent = [r for r in caplog.records if getattr(r, "event", None) == "download_request"]
    assert len(sent) == 2  # one line per request: the log-based metric counts them
    copy = storage_client.bucket(results).get_blob("clipsearch/videos/" + source.uri[5:])
    assert copy.download_as_bytes() == video.path.read_bytes()


@pytest.mark.parametrize("profile", ["range-ignored", "range-ignored-chunked"])
def test_a_body_dropped_where_range_is_ignored_restarts_and_is_counted(
    storage_client, source_bucket, results, video, profile
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    size = video.path.stat().st_size
    with standin(storage_client, profile) as server:
        server.knobs.merge({"fail_next": [f"download:drop_after:{size // 3}"]})
        copies, _ = copies_for(server, storage_client, results)
        ranged = copies.open_range(source, far())
        assert (ranged.vendor_requests, ranged.restarts) == (2, 1)
        assert ranged.vendor_bytes == size + size // 3
        assert server.stats.download_bytes == size + size // 3
    copy = storage_client.bucket(results).get_blob("clipsearch/videos/" + source.uri[5:])
    assert copy.download_as_bytes() == video.path.read_bytes()


@pytest.mark.parametrize("profile", ["chunked", "range-ignored-chunked", "default"])
def test_the_size_cap_holds_while_streaming(storage_client, source_bucket, results, profile):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    with standin(storage_client, profile) as server:
        copies, _ = copies_for(server, storage_client, results, max_bytes=50_000)
        with pytest.raises(ClipUnavailable) as info:
            copies.open_range(source, far())
        assert info.value.reason is ClipReason.SOURCE_UNREADABLE
        assert "50000" in info.value.message
        # No Content-Length: the cap stopped the stream soon after it was passed.
        assert server.stats.download_bytes < 50_000 + 16 * 1024 * 1024
    assert list(storage_client.bucket(results).list_blobs(prefix="clipsearch/videos/")) == []


def test_a_changed_source_is_copied_again_never_cut_from_the_stale_copy(
    storage_client, source_bucket, results, video, tmp_path
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    other = make_video(tmp_path / "other.mp4", seconds=12, width=160, height=120)
    later = datetime.now(UTC) + timedelta(hours=2)
    with standin(storage_client) as server:
        copies, _ = copies_for(server, storage_client, results)
        first = copies.open_range(source, far())
        source_bucket.blob("V1.mp4").upload_from_filename(str(other.path))  # re-uploaded
        # Within the recheck interval the copy is used as confirmed; past it, one request
        # for the first byte finds the change and the file is copied again.
        recheck, _ = copies_for(server, storage_client, results, now=later)
        second = recheck.open_range(source, far())
        assert second.cache_key != first.cache_key
        assert second.size == other.path.stat().st_size
        assert second.vendor_requests == 2  # the check, then the new copy
        assert (
            server.stats.download_bytes == video.path.stat().st_size + other.path.stat().st_size + 1
        )
    copy = storage_client.bucket(results).get_blob("clipsearch/videos/" + source.uri[5:])
    assert copy.download_as_bytes() == other.path.read_bytes()


def test_an_unchanged_source_past_the_recheck_costs_one_request_for_one_byte(
    storage_client, source_bucket, results, video
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    later = datetime.now(UTC) + timedelta(hours=2)
    with standin(storage_client) as server:
        copies, _ = copies_for(server, storage_client, results)
        first = copies.open_range(source, far())
        recheck, _ = copies_for(server, storage_client, results, now=later)
        second = recheck.open_range(source, far())
        assert second.cache_key == first.cache_key
        assert (second.vendor_requests, second.vendor_bytes) == (1, 1)
        third = recheck.open_range(source, far())  # confirmed: not asked again
        assert third.vendor_requests == 0
    copy = storage_client.bucket(results).get_blob("clipsearch/videos/" + source.uri[5:])
    assert copy.metadata[META_CHECKED] == later.isoformat()


def test_a_source_over_the_copy_size_is_read_by_ranges_where_range_works(
    storage_client, source_bucket, results, video, tmp_path
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    with standin(storage_client) as server:
        copies, _ = copies_for(server, storage_client, results, ranged_above=10_000)
        ranged = copies.open_range(source, far())
        assert ranged.route is Route.RANGED
        assert ranged.vendor_requests == 1  # the first answer told the size: no copy
        # That answer's body is closed unread (what was in flight is billed: the whole of a
        # file this small); the clip then costs ranged requests for its index and samples.
        server.stats.reset()
        assert cut_one(ranged, tmp_path) > 0
        assert ranged.vendor_requests == 1 + server.stats.requests["download"] >= 2
        assert server.stats.download_bytes < video.path.stat().st_size
        again = copies.open_range(source, far())  # remembered: no new probe
        assert again.route is Route.RANGED
        assert again.vendor_requests == 0
    assert list(storage_client.bucket(results).list_blobs(prefix="clipsearch/videos/")) == []


def test_where_range_is_ignored_a_large_source_is_still_copied(
    storage_client, source_bucket, results, video
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    with standin(storage_client, "range-ignored") as server:
        copies, _ = copies_for(server, storage_client, results, ranged_above=10_000)
        ranged = copies.open_range(source, far())
        assert ranged.route is Route.COPY
        assert server.stats.download_bytes == video.path.stat().st_size


@pytest.mark.parametrize("errors", ["v1", "v2"])
def test_download_refusals_fall_back_and_out_of_balance_alerts(
    storage_client, source_bucket, results, errors, caplog
):
    with standin(storage_client) as server:
        server.knobs.merge({"download_errors": errors})
        copies, _ = copies_for(server, storage_client, results)
        with pytest.raises(ClipUnavailable) as info:
            copies.open_range(SourceVideo(source_bucket.name, "nope.mp4"), far())
        assert "Resource does not exist" in info.value.message
        server.knobs.merge({"credits": 0})
        caplog.set_level(logging.INFO)
        with pytest.raises(ClipUnavailable):
            copies.open_range(SourceVideo(source_bucket.name, "V1.mp4"), far())
    alerts = [r for r in caplog.records if r.levelname == "ALERT"]
    assert len(alerts) == 1
    assert getattr(alerts[0], "reason", None) == Reason.API_INSUFFICIENT_CREDITS.value
    assert KEY not in caplog.text


@pytest.mark.parametrize("profile", ["chunked", "default"])
def test_copy_mode_holds_the_cap_while_streaming_too(
    storage_client, source_bucket, results, profile
):
    """Copy mode's whole-video download: with no Content-Length the cap holds as it streams."""
    from clipsearch.fetch import CopyFetcher  # noqa: PLC0415
    from clipsearch.model import Hit, Query, QueryObject  # noqa: PLC0415
    from clipsearch.settings import FetchSource  # noqa: PLC0415

    source = SourceVideo(source_bucket.name, "V1.mp4")
    with standin(storage_client, profile) as server:
        copies, store = copies_for(server, storage_client, results)
        fetcher = CopyFetcher(
            copies._vendor,  # the same HttpSearchApi
            store,
            allowed_buckets=frozenset({source_bucket.name}),
            source_mode=FetchSource.API,
            prefix="clipsearch/",
            logger=logging.getLogger("test"),
            max_bytes=50_000,
        )
        query = Query(
            QueryObject("qb", "q.jpg", 1, 10, "image/jpeg", {}, "e", ""),
            "V1",
            "p",
            "default",
            "jpeg",
        )
        (clip,) = fetcher.fetch(query, [Hit(1.0, 2.0, 0.9, source)], far())
        assert clip.artifact is None
        assert "per-query fetch cap" in (clip.fetch_error or "")  # told before or while streaming
        assert server.stats.download_bytes < 50_000 + 16 * 1024 * 1024
    assert list(storage_client.bucket(results).list_blobs(prefix="clipsearch/videos/")) == []


def metadata_of(copies: SourceCopies, video_no: str = "V1"):
    """A query's metadata look-up, as clipsearch.fetch.MetadataOnce gives SourceCopies."""
    api = copies._vendor  # the same HttpSearchApi

    def lookup(deadline: float) -> VideoMetadata:
        return api.video_metadata(video_no, "default", deadline)  # type: ignore[attr-defined]

    return lookup


def test_a_source_replaced_at_the_vendor_within_the_recheck_interval_is_copied_again(
    storage_client, source_bucket, results, video, tmp_path
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    other = make_video(tmp_path / "other.mp4", seconds=12, width=160, height=120)
    source_bucket.blob("staging/other.mp4").upload_from_filename(str(other.path))
    with standin(storage_client) as server:
        server.register_video("V1", source_bucket.name, "V1.mp4")
        copies, _ = copies_for(server, storage_client, results)  # recheck: 1 h, never due here
        first = copies.open_range(source, far(), video=metadata_of(copies))
        assert (first.vendor_requests, first.vendor_bytes) == (1, video.path.stat().st_size)
        steady = copies.open_range(source, far(), video=metadata_of(copies))
        assert (steady.vendor_requests, steady.vendor_bytes) == (0, 0)
        assert steady.cache_key == first.cache_key
        assert server.stats.requests.get("get_metadata") == 2  # one per query
        stored = storage_client.bucket(results).get_blob("clipsearch/videos/" + source.uri[5:])
        assert float(stored.metadata[META_DURATION]) == pytest.approx(20.0, abs=0.2)

        # The vendor replaces the file under the same video_no (same blob, new bytes).
        replaced = server.replace_video("V1", source_bucket.name, "staging/other.mp4")
        assert replaced.duration == pytest.approx(12.0, abs=0.2)
        second = copies.open_range(source, far(), video=metadata_of(copies))
        assert second.cache_key != first.cache_key  # clips get new names: none reused
        assert second.size == other.path.stat().st_size
        assert (second.vendor_requests, second.vendor_bytes) == (1, other.path.stat().st_size)
        assert cut_one(second, tmp_path) > 0
        third = copies.open_range(source, far(), video=metadata_of(copies))
        assert (third.vendor_requests, third.cache_key) == (0, second.cache_key)
        assert server.stats.requests.get("download") == 2
        assert server.stats.requests.get("get_metadata") == 4
    copy = storage_client.bucket(results).get_blob("clipsearch/videos/" + source.uri[5:])
    assert copy.download_as_bytes() == other.path.read_bytes()
    assert float(copy.metadata[META_DURATION]) == pytest.approx(12.0, abs=0.2)


def test_another_instance_meets_the_replaced_source_too(
    storage_client, source_bucket, results, video, tmp_path
):
    """What one instance learnt is not what protects the others: the copy's record is."""
    source = SourceVideo(source_bucket.name, "V1.mp4")
    other = make_video(tmp_path / "other.mp4", seconds=12, width=160, height=120)
    source_bucket.blob("staging/other.mp4").upload_from_filename(str(other.path))
    with standin(storage_client) as server:
        server.register_video("V1", source_bucket.name, "V1.mp4")
        maker, _ = copies_for(server, storage_client, results)
        first = maker.open_range(source, far(), video=metadata_of(maker))
        server.replace_video("V1", source_bucket.name, "staging/other.mp4")
        fresh, _ = copies_for(server, storage_client, results)
        second = fresh.open_range(source, far(), video=metadata_of(fresh))
        assert second.cache_key != first.cache_key
        assert second.size == other.path.stat().st_size
        assert server.stats.requests.get("download") == 2


def test_a_copy_made_without_the_record_gains_it_at_the_next_check_without_a_download(
    storage_client, source_bucket, results, video
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    with standin(storage_client) as server:
        server.register_video("V1", source_bucket.name, "V1.mp4")
        copies, _ = copies_for(server, storage_client, results)
        first = copies.open_range(source, far())  # no query to ask about: nothing recorded
        name = "clipsearch/videos/" + source.uri[5:]
        assert META_DURATION not in storage_client.bucket(results).get_blob(name).metadata
        later, _ = copies_for(server, storage_client, results)
        checked = later.open_range(source, far(), video=metadata_of(later))
        # One request for one byte: the validators agree, so the record is added, no download.
        assert (checked.vendor_requests, checked.vendor_bytes) == (1, 1)
        assert checked.cache_key == first.cache_key  # its clips keep their names
        meta = storage_client.bucket(results).get_blob(name).metadata
        assert float(meta[META_DURATION]) == pytest.approx(20.0, abs=0.2)
        assert first.cache_key.endswith("#" + meta[META_VERSION])
        again = later.open_range(source, far(), video=metadata_of(later))
        assert (again.vendor_requests, again.cache_key) == (0, first.cache_key)
        assert server.stats.download_bytes == video.path.stat().st_size + 1


def test_a_failed_metadata_call_falls_back_to_the_validator_check(
    storage_client, source_bucket, results, video, tmp_path, caplog
):
    source = SourceVideo(source_bucket.name, "V1.mp4")
    other = make_video(tmp_path / "other.mp4", seconds=12, width=160, height=120)
    source_bucket.blob("staging/other.mp4").upload_from_filename(str(other.path))
    with standin(storage_client) as server:
        server.register_video("V1", source_bucket.name, "V1.mp4")
        copies, _ = copies_for(server, storage_client, results)
        first = copies.open_range(source, far(), video=metadata_of(copies))
        server.knobs.merge({"fail_next": ["get_metadata:503"] * 3})  # every retry fails
        caplog.set_level(logging.INFO)
        unchanged = copies.open_range(source, far(), video=metadata_of(copies))
        assert (unchanged.vendor_requests, unchanged.vendor_bytes) == (1, 1)  # the one byte
        assert unchanged.cache_key == first.cache_key
        assert "get_metadata for" in caplog.text
        # Changed while the metadata endpoint fails: the validators tell, and it is copied again.
        server.replace_video("V1", source_bucket.name, "staging/other.mp4")
        server.knobs.merge({"fail_next": ["get_metadata:503"] * 3})
        changed = copies.open_range(source, far(), video=metadata_of(copies))
        assert changed.cache_key != first.cache_key
        assert changed.size == other.path.stat().st_size
        assert changed.vendor_requests == 2  # the check, then the new copy
    assert KEY not in caplog.text
