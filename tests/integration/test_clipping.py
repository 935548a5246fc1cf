"""Clip cutting against fake-gcs-server (ranged, generation-pinned reads) and the stand-in's
download endpoint (HTTP Range): right frames, few requests, stale sources refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from google.cloud import storage

from clipsearch.adapters.ranges import GcsRangeSource, HttpRangeSource
from clipsearch.clipping import (
    ClipReason,
    ClipSource,
    ClipUnavailable,
    IndexCache,
    SourceIndex,
    cut_clip,
    poster_frame,
)
from clipsearch_dev.standin import StandinServer
from tests.unit.clipping.helpers import Frame, check_clip, decode_all, make_source

pytestmark = pytest.mark.integration
KEY = "sk-mavi-clipping-SECRET"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("clip-media")
    return {
        "moov_at_end": make_source(directory, "end", layout="moov_at_end", seconds=40),
        "fragmented": make_source(directory, "frag", layout="fragmented", seconds=40),
    }


@pytest.fixture(scope="module")
def frames(videos: dict[str, Path]) -> dict[str, list[Frame]]:
    return {name: decode_all(path) for name, path in videos.items()}


@pytest.fixture(scope="module")
def bucket(gcs_client: storage.Client, videos: dict[str, Path]) -> storage.Bucket:
    bucket = gcs_client.create_bucket(f"mavi-{uuid.uuid4().hex[:10]}")
    for name, path in videos.items():
        bucket.blob(f"v/{name}.mp4").upload_from_filename(str(path), content_type="video/mp4")
    return bucket


@pytest.mark.parametrize("layout", ["moov_at_end", "fragmented"])
def test_gcs_cold_then_cached(gcs_client, bucket, frames, layout, tmp_path):
    cache = IndexCache(32 * 1024 * 1024)
    blob = f"v/{layout}.mp4"
    cold_source = GcsRangeSource(gcs_client, bucket.name, blob)
    assert cold_source.metadata_requests == 1
    cold = cut_clip(cold_source, 20.35, 25.0, tmp_path / "a.mp4", index_cache=cache)
    check_clip(cold, frames[layout])
    assert cold.requests <= 3
    assert cold_source.cache_key == f"gs://{bucket.name}/{blob}#{cold_source.generation}"
    # A second query on the same video, another instance: the sidecar index gives 1 request.
    sidecar = cache.get(cold_source.cache_key)
    assert sidecar is not None
    other = IndexCache(32 * 1024 * 1024)
    other.put(cold_source.cache_key, SourceIndex.loads(sidecar.dumps()))
    warm_source = GcsRangeSource(
        gcs_client, bucket.name, blob, cold_source.generation, size=cold_source.size
    )
    warm = cut_clip(warm_source, 30.0, 33.0, tmp_path / "b.mp4", index_cache=other)
    check_clip(warm, frames[layout])
    assert (warm.index_cached, warm.requests, warm_source.metadata_requests) == (True, 1, 0)
    assert poster_frame(warm.path)[:2] == b"\xff\xd8"


def test_gcs_reads_are_pinned_to_the_generation(gcs_client, videos, tmp_path):
    bucket = gcs_client.create_bucket(f"mavi-{uuid.uuid4().hex[:10]}")
    blob = bucket.blob("v.mp4")
    blob.upload_from_filename(str(videos["moov_at_end"]), content_type="video/mp4")
    source = GcsRangeSource(gcs_client, bucket.name, "v.mp4")
    with ClipSource(source) as clips:
        clips.cut(5.0, 7.0, tmp_path / "1.mp4")
        blob.upload_from_string(b"overwritten", content_type="video/mp4")
        with pytest.raises(ClipUnavailable) as info:
            clips.cut(30.0, 32.0, tmp_path / "2.mp4")
    assert info.value.reason is ClipReason.SOURCE_CHANGED
    with pytest.raises(ClipUnavailable) as missing:
        GcsRangeSource(gcs_client, bucket.name, "never.mp4")
    assert missing.value.reason is ClipReason.SOURCE_UNREADABLE


@pytest.fixture(scope="module")
def standin(gcs_client, bucket) -> Iterator[StandinServer]:
    with StandinServer(
        gcs_client, api_key=KEY, download_rate_per_min=None, search_rate_per_s=None
    ) as server:
        yield server


def http_source(server: StandinServer, bucket: str, blob: str, key: str = KEY) -> HttpRangeSource:
    url = f"{server.base_url}/download?bucket={quote(bucket, safe='')}&blob={quote(blob)}"
    return HttpRangeSource(
        requests.Session(), url, {"Authorization": key}, cache_key=f"api:{bucket}/{blob}"
    )


@pytest.mark.parametrize("layout", ["moov_at_end", "fragmented"])
def test_standin_download_endpoint_with_ranges(standin, bucket, frames, layout, tmp_path):
    cache = IndexCache(32 * 1024 * 1024)
    blob = f"v/{layout}.mp4"
    standin.stats.reset()
    cold = cut_clip(
        http_source(standin, bucket.name, blob), 10.0, 14.0, tmp_path / "a.mp4", index_cache=cache
    )
    check_clip(cold, frames[layout])
    assert cold.requests <= 3
    warm = cut_clip(
        http_source(standin, bucket.name, blob), 35.0, 40.0, tmp_path / "b.mp4", index_cache=cache
    )
    check_clip(warm, frames[layout])
    assert warm.requests <= 1  # 0 when the clip lies in the cached tail
    assert standin.stats.requests["download"] == cold.requests + warm.requests
    assert standin.stats.download_bytes == cold.bytes_read + warm.bytes_read


def test_standin_refusals_do_not_leak_the_key(standin, bucket, tmp_path):
    for source in (
        http_source(standin, bucket.name, "v/moov_at_end.mp4", key="sk-mavi-WRONG"),
        http_source(standin, bucket.name, "v/none.mp4"),
    ):
        with pytest.raises(ClipUnavailable) as info:
            cut_clip(source, 1.0, 2.0, tmp_path / "x.mp4")
        assert info.value.reason is ClipReason.SOURCE_UNREADABLE
        assert not info.value.transient
        assert "sk-mavi" not in str(info.value)
