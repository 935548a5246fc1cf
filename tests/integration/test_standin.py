"""The memories.ai stand-in against the Cloud Storage emulator: contract, faults, search."""

from __future__ import annotations

import io
import json
import logging
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import storage
from PIL import Image

from clipsearch_dev.media import VideoInfo, make_video, query_image_bytes, read_frame_code
from clipsearch_dev.standin import StandinServer
from clipsearch_dev.standin import routes as standin_routes
from clipsearch_dev.standin import server as standin_server

pytestmark = pytest.mark.integration

API_KEY = "sk-mavi-standin-test-4f1c2a9e7d"
BUCKET = "mavi-resource-test"
V60 = "VI000000000000000060"
V600 = "VI000000000000000600"
PROMPT = "find this moment"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, VideoInfo]:
    tmp = tmp_path_factory.mktemp("videos")
    return {
        V60: make_video(tmp / f"{V60}.mp4", seconds=60, width=160, height=120),
        V600: make_video(tmp / f"{V600}.mp4", seconds=600, fps=5, width=160, height=120),
    }


@pytest.fixture(scope="module")
def bucket(gcs_client: storage.Client, videos: dict[str, VideoInfo]) -> storage.Bucket:
    b = gcs_client.bucket(BUCKET)
    if not b.exists():
        b = gcs_client.create_bucket(BUCKET)
    for video_no, info in videos.items():
        b.blob(f"{video_no}.mp4").upload_from_filename(str(info.path))
    return b


@pytest.fixture(scope="module")
def module_server(
    gcs_client: storage.Client,
    bucket: storage.Bucket,
) -> Iterator[StandinServer]:
    with StandinServer(gcs_client, api_key=API_KEY, search_rate_per_s=None) as srv:
        for video_no in (V60, V600):
            srv.register_video(video_no, BUCKET, f"{video_no}.mp4")
        srv.register_video("VI_UNPARSED", BUCKET, f"{V60}.mp4", status="UNPARSE")
        srv.register_video("VI_BROKEN", BUCKET, "missing.mp4", status="PARSE_ERROR")
        yield srv


@pytest.fixture
def server(module_server: StandinServer) -> StandinServer:
    """The shared stand-in with knobs, counters and limiters back at their defaults."""
    module_server.reset()
    return module_server


def _jpeg(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="JPEG")
    return buf.getvalue()


def search(
    server: StandinServer,
    *,
    data: bytes | None = None,
    filename: str = "query.jpg",
    content_type: str | None = "image/jpeg",
    fields: dict[str, str] | None = None,
    key: str | None = API_KEY,
    timeout: float = 10.0,
) -> requests.Response:
    form = {"video_no": V60, "prompt": PROMPT, "unique_id": "default"}
    form.update(fields or {})
    body = _jpeg() if data is None else data
    part = (filename, body, content_type) if content_type else (filename, body)
    headers = {"Authorization": key} if key is not None else {}
    return requests.post(
        f"{server.base_url}/search_clips_by_image",
        headers=headers,
        files={"file": part},
        data=form,
        timeout=timeout,
    )


def envelope(resp: requests.Response) -> dict[str, Any]:
    assert resp.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) == {"code", "msg", "data", "success", "failed"}
    assert body["success"] is (body["code"] == "0000")
    assert body["failed"] is (body["code"] != "0000")
    return body


def assert_error(resp: requests.Response, code: str, msg: str | None = None) -> dict[str, Any]:
    assert resp.status_code == 200
    body = envelope(resp)
    assert body["code"] == code, body
    assert body["data"] is None
    if msg is not None:
        assert body["msg"] == msg
    return body


# -- auth -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", f"Bearer {API_KEY}", API_KEY + "x", API_KEY.upper()])
def test_search_rejects_anything_but_the_raw_key(server: StandinServer, key: str | None) -> None:
    resp = search(server, key=key)
    assert resp.status_code == 401
    assert envelope(resp)["code"] == "0401"
    assert server.stats.billed_searches == 0


def test_other_endpoints_need_the_key_too(server: StandinServer) -> None:
    meta = requests.get(f"{server.base_url}/get_metadata", params={"video_no": V60}, timeout=5)
    dl = requests.get(
        f"{server.base_url}/download",
        params={"bucket": BUCKET, "blob": f"{V60}.mp4"},
        headers={"Authorization": "Bearer " + API_KEY},
        timeout=5,
    )
    assert (meta.status_code, envelope(meta)["code"]) == (401, "0401")
    assert (dl.status_code, envelope(dl)["code"]) == (401, "0401")
    assert server.stats.download_bytes == 0


# -- validation -------------------------------------------------------------------------


def test_missing_file_part_is_a_form_error(server: StandinServer) -> None:
    resp = requests.post(
        f"{server.base_url}/search_clips_by_image",
        headers={"Authorization": API_KEY},
        files={"video_no": (None, V60), "prompt": (None, PROMPT)},
        timeout=5,
    )
    assert_error(resp, "0003", standin_server.MSG_FILE_MISSING)


def test_non_multipart_body_is_a_form_error(server: StandinServer) -> None:
    resp = requests.post(
        f"{server.base_url}/search_clips_by_image",
        headers={"Authorization": API_KEY},
        data={"video_no": V60, "prompt": PROMPT},
        timeout=5,
    )
    assert_error(resp, "0003", standin_server.MSG_NOT_MULTIPART)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"data": b""}, standin_server.MSG_FILE_EMPTY),
        ({"filename": "query.txt"}, standin_server.MSG_FILE_EXTENSION),
        ({"filename": "query"}, standin_server.MSG_FILE_EXTENSION),
        ({"filename": "query.jpg.exe"}, standin_server.MSG_FILE_EXTENSION),
        ({"content_type": "text/plain"}, standin_server.MSG_FILE_CONTENT_TYPE),
        ({"content_type": None}, standin_server.MSG_FILE_CONTENT_TYPE),
        ({"data": b"\xff\xd8 not really a jpeg"}, standin_server.MSG_FILE_NOT_IMAGE),
        ({"fields": {"video_no": ""}}, standin_server.MSG_VIDEO_NO_EMPTY),
        ({"fields": {"prompt": ""}}, "The prompt parameter cannot be empty!"),
        ({"fields": {"prompt": "   "}}, "The prompt parameter cannot be empty!"),
    ],
)
def test_validation_messages(server: StandinServer, kwargs: dict[str, Any], msg: str) -> None:
    assert_error(search(server, **kwargs), "0001", msg)
    assert server.stats.billed_searches == 0


def test_missing_prompt_field_is_rejected(server: StandinServer) -> None:
    resp = requests.post(
        f"{server.base_url}/search_clips_by_image",
        headers={"Authorization": API_KEY},
        files={"file": ("q.png", _jpeg(), "image/png")},
        data={"video_no": V60},
        timeout=5,
    )
    assert_error(resp, "0001", "The prompt parameter cannot be empty!")


def test_file_over_20_mb_is_rejected_at_20_mb_plus_one(server: StandinServer) -> None:
    big = _jpeg() + b"\0" * (20 * 1024 * 1024 + 1 - len(_jpeg()))
    assert_error(search(server, data=big), "0001", standin_server.MSG_FILE_TOO_LARGE)


def test_file_of_exactly_20_mb_passes_the_size_rule(server: StandinServer) -> None:
    # JPEG decoders stop at the end-of-image marker, so trailing padding still decodes.
    exact = _jpeg() + b"\0" * (20 * 1024 * 1024 - len(_jpeg()))
    assert envelope(search(server, data=exact))["code"] == "0000"


@pytest.mark.parametrize(
    ("filename", "fmt", "ctype"),
    [
        ("Q.JPG", "JPEG", "image/jpeg"),
        ("q.jpeg", "JPEG", "image/jpeg"),
        ("q.png", "PNG", "image/png"),
        ("q.gif", "GIF", "image/gif"),
        ("q.bmp", "BMP", "image/bmp"),
        ("q.WebP", "WEBP", "image/webp"),
    ],
)
def test_every_documented_extension_is_accepted(
    server: StandinServer, filename: str, fmt: str, ctype: str
) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 90)).save(buf, format=fmt)
    resp = search(server, data=buf.getvalue(), filename=filename, content_type=ctype)
    assert envelope(resp)["code"] == "0000"


def test_unknown_video_and_unique_id_scoping(server: StandinServer) -> None:
    body = assert_error(search(server, fields={"video_no": "VI404"}), "0001")
    assert "VI404" in body["msg"]
    other = assert_error(search(server, fields={"unique_id": "another-folder"}), "0001")
    assert "another-folder" in other["msg"]


@pytest.mark.parametrize(
    ("video_no", "status"), [("VI_UNPARSED", "UNPARSE"), ("VI_BROKEN", "PARSE_ERROR")]
)
def test_unsearchable_status_is_named(server: StandinServer, video_no: str, status: str) -> None:
    body = assert_error(search(server, fields={"video_no": video_no}), "0001")
    assert status in body["msg"]


def test_set_status_makes_a_video_searchable(server: StandinServer) -> None:
    try:
        server.set_status("VI_UNPARSED", "PARSE")
        assert envelope(search(server, fields={"video_no": "VI_UNPARSED"}))["code"] == "0000"
    finally:
        server.set_status("VI_UNPARSED", "UNPARSE")
    assert_error(search(server, fields={"video_no": "VI_UNPARSED"}), "0001")


# -- rate limit, credits, account ---------------------------------------------------------


def test_search_rate_limit_answers_0429_with_retry_after(server: StandinServer) -> None:
    server.knobs.rate_per_s = 1.0
    assert envelope(search(server))["code"] == "0000"
    limited = search(server)
    assert_error(limited, "0429")
    assert limited.headers["Retry-After"] == "1"
    # Invalid calls count against the limit too: it is per account, over all calls.
    assert_error(search(server, fields={"prompt": ""}), "0429")
    time.sleep(1.05)
    assert envelope(search(server))["code"] == "0000"
    assert server.stats.billed_searches == 2
    assert server.stats.responses["0429"] == 2


def test_retry_after_is_rounded_up(server: StandinServer) -> None:
    server.knobs.rate_per_s = 0.4  # a token every 2.5 s
    assert envelope(search(server))["code"] == "0000"
    assert search(server).headers["Retry-After"] == "3"


def test_credits_run_out_with_0402(server: StandinServer) -> None:
    server.knobs.credits = 2
    assert [envelope(search(server))["code"] for _ in range(3)] == ["0000", "0000", "0402"]
    assert server.knobs.credits == 0
    assert server.stats.billed_searches == 2
    dl = requests.get(
        f"{server.base_url}/download",
        params={"bucket": BUCKET, "blob": f"{V60}.mp4"},
        headers={"Authorization": API_KEY},
        timeout=5,
    )
    assert_error(dl, "0402", "Insufficient balance")


def test_disabled_account_answers_0403(server: StandinServer) -> None:
    server.knobs.disabled = True
    assert_error(search(server), "0403")


# -- injected failures ------------------------------------------------------------------


def test_injected_http_errors_are_not_json(server: StandinServer) -> None:
    server.knobs.fail_next = [503, "500"]
    first, second, third = search(server), search(server), search(server)
    assert (first.status_code, second.status_code, third.status_code) == (503, 500, 200)
    assert not first.headers["Content-Type"].startswith("application/json")
    assert server.stats.responses["HTTP 503"] == 1
    assert server.stats.billed_searches == 1


@pytest.mark.parametrize("code", ["0001", "0402", "0409", "9009"])
def test_injected_result_codes_come_with_http_200(server: StandinServer, code: str) -> None:
    server.knobs.fail_next = [code]
    assert_error(search(server), code)
    assert envelope(search(server))["code"] == "0000"


def test_injected_0429_and_http_429_carry_retry_after(server: StandinServer) -> None:
    server.knobs.fail_next = ["0429", 429]
    soft, hard = search(server), search(server)
    assert_error(soft, "0429")
    assert soft.headers["Retry-After"] == "1"
    assert hard.status_code == 429
    assert hard.headers["Retry-After"] == "1"


def test_injected_malformed_json(server: StandinServer) -> None:
    server.knobs.fail_next = ["malformed_json"]
    resp = search(server)
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)


def test_injected_dropped_connection(server: StandinServer) -> None:
    server.knobs.fail_next = ["drop_connection"]
    with pytest.raises(requests.ConnectionError):
        search(server)
    assert envelope(search(server))["code"] == "0000"  # the server itself survives


def test_injected_slowness_and_latency(server: StandinServer) -> None:
    server.knobs.fail_next = ["slow:0.6"]
    with pytest.raises(requests.Timeout):
        search(server, timeout=0.3)
    server.knobs.latency_s = 0.3
    started = time.monotonic()
    assert envelope(search(server))["code"] == "0000"
    assert time.monotonic() - started >= 0.3


def test_targeted_failure_waits_for_its_endpoint(server: StandinServer) -> None:
    server.knobs.fail_next = ["download:503"]
    assert envelope(search(server))["code"] == "0000"
    dl = requests.get(
        f"{server.base_url}/download",
        params={"bucket": BUCKET, "blob": f"{V60}.mp4"},
        headers={"Authorization": API_KEY, "Range": "bytes=0-9"},
        timeout=5,
    )
    assert dl.status_code == 503
    assert server.knobs.fail_next == []


def test_random_failures_replay_with_the_same_seed(server: StandinServer) -> None:
    def pattern() -> list[int]:
        server.knobs.merge({"fail_rate": 0.5, "fail_code": 502, "fail_seed": 7})
        return [search(server).status_code for _ in range(12)]

    first = pattern()
    assert set(first) == {200, 502}
    assert pattern() == first


def test_invalid_knobs_are_refused_whole(server: StandinServer) -> None:
    with pytest.raises(ValueError):
        server.knobs.merge({"latency_s": 1.0, "no_such_knob": 1})
    with pytest.raises(ValueError):
        server.knobs.merge({"fail_next": ["explode"]})
    assert server.knobs.latency_s == 0.0


# -- search quality ---------------------------------------------------------------------


def _assert_finds(
    server: StandinServer, info: VideoInfo, video_no: str, t: float, fmt: str
) -> None:
    image = query_image_bytes(info.path, t, fmt=fmt)
    assert read_frame_code(Image.open(io.BytesIO(image))) == math.floor(t * info.fps + 1e-9)
    suffix = "jpg" if fmt == "JPEG" else "png"
    resp = search(
        server,
        data=image,
        filename=f"query.{suffix}",
        content_type=f"image/{suffix.replace('jpg', 'jpeg')}",
        fields={"video_no": video_no},
    )
    body = envelope(resp)
    assert body["code"] == "0000", body
    hits = body["data"]
    assert 1 <= len(hits) <= 5
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    for h in hits:
        assert set(h) == {"start_time", "end_time", "score", "video_bucket", "video_blob"}
        assert 0 < h["score"] <= 1
        assert 0 <= h["start_time"] < h["end_time"] <= info.seconds + 0.1
        assert (h["video_bucket"], h["video_blob"]) == (BUCKET, f"{video_no}.mp4")
    top = hits[0]
    assert top["start_time"] <= t <= top["end_time"], (t, hits)


def test_search_finds_the_moment_in_a_minute_of_video(
    server: StandinServer, videos: dict[str, VideoInfo]
) -> None:
    rng = random.Random(20240601)
    for i in range(10):
        t = round(rng.uniform(0, 59.9), 2)
        _assert_finds(server, videos[V60], V60, t, "JPEG" if i % 2 else "PNG")
    assert server.stats.billed_searches == 10


def test_search_finds_the_moment_in_ten_minutes_of_video(
    server: StandinServer, videos: dict[str, VideoInfo]
) -> None:
    for t in (3.3, 187.6, 421.0, 599.5):
        _assert_finds(server, videos[V600], V600, t, "JPEG")


def test_omit_location_drops_bucket_and_blob(server: StandinServer) -> None:
    server.knobs.omit_location = True
    hits = envelope(search(server))["data"]
    assert hits
    assert all(set(h) == {"start_time", "end_time", "score"} for h in hits)


def test_top_k_and_clip_length_follow_the_knobs(
    server: StandinServer, videos: dict[str, VideoInfo]
) -> None:
    server.knobs.merge({"top_k": 2, "clip_seconds": 2.0})
    image = query_image_bytes(videos[V60].path, 30.0)
    hits = envelope(search(server, data=image))["data"]
    assert len(hits) == 2
    assert all(h["end_time"] - h["start_time"] <= 3 * 2.0 + 0.2 for h in hits)
    assert hits[0]["start_time"] <= 30.0 <= hits[0]["end_time"]


# -- metadata -----------------------------------------------------------------------------


def _get(server: StandinServer, path: str, **params: str) -> requests.Response:
    return requests.get(
        f"{server.base_url}/{path}", params=params, headers={"Authorization": API_KEY}, timeout=10
    )


def test_metadata_of_a_known_video(server: StandinServer) -> None:
    body = envelope(_get(server, "get_metadata", video_no=V60, unique_id="default"))
    assert body["code"] == "0000"
    assert body["data"] == {
        "video_no": V60,
        "status": "PARSE",
        "duration": 60.0,
        "bucket": BUCKET,
        "blob": f"{V60}.mp4",
        "unique_id": "default",
    }
    unparsed = envelope(_get(server, "get_metadata", video_no="VI_UNPARSED"))["data"]
    assert unparsed["status"] == "UNPARSE"


def test_metadata_of_an_unknown_video(server: StandinServer) -> None:
    assert_error(_get(server, "get_metadata", video_no="VI404"), "0001")
    assert_error(_get(server, "get_metadata", video_no=V60, unique_id="elsewhere"), "0001")
    assert_error(_get(server, "get_metadata"), "0001")


# -- download -----------------------------------------------------------------------------


def _download(server: StandinServer, rng: str | None = None, **params: str) -> requests.Response:
    headers = {"Authorization": API_KEY}
    if rng is not None:
        headers["Range"] = rng
    query = {"bucket": BUCKET, "blob": f"{V60}.mp4", **params}
    return requests.get(f"{server.base_url}/download", params=query, headers=headers, timeout=10)


def test_download_whole_file(server: StandinServer, videos: dict[str, VideoInfo]) -> None:
    server.knobs.download_rate_per_min = None
    expected = Path(videos[V60].path).read_bytes()
    resp = _download(server)
    assert resp.status_code == 200
    assert resp.content == expected
    assert resp.headers["Content-Type"] == "video/mp4"
    assert resp.headers["Content-Length"] == str(len(expected))
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert f"{V60}.mp4" in resp.headers["Content-Disposition"]
    assert server.stats.download_bytes == len(expected)


def test_download_streams_in_chunks(
    server: StandinServer, videos: dict[str, VideoInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    server.knobs.download_rate_per_min = None
    monkeypatch.setattr(standin_routes, "DOWNLOAD_CHUNK", 64 * 1024)
    expected = Path(videos[V600].path).read_bytes()
    assert len(expected) > 3 * 64 * 1024
    resp = _download(server, rng=f"bytes=1000-{len(expected) - 1000}", blob=f"{V600}.mp4")
    assert resp.status_code == 206
    assert resp.content == expected[1000 : len(expected) - 999]


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=10-19", 10, 19), ("bytes=100-", 100, None), ("bytes=-100", -100, None)],
)
def test_download_single_range(
    server: StandinServer,
    videos: dict[str, VideoInfo],
    header: str,
    first: int,
    last: int | None,
) -> None:
    expected = Path(videos[V60].path).read_bytes()
    size = len(expected)
    resp = _download(server, rng=header)
    assert resp.status_code == 206
    want = expected[first : None if last is None else last + 1]
    start = first % size
    assert resp.content == want
    assert resp.headers["Content-Range"] == f"bytes {start}-{start + len(want) - 1}/{size}"
    assert resp.headers["Content-Length"] == str(len(want))
    assert server.stats.download_bytes == len(want)


def test_download_range_past_the_end_is_clamped_or_416(
    server: StandinServer, videos: dict[str, VideoInfo]
) -> None:
    server.knobs.download_rate_per_min = None
    size = Path(videos[V60].path).stat().st_size
    clamped = _download(server, rng=f"bytes={size - 5}-{size + 500}")
    assert clamped.status_code == 206
    assert len(clamped.content) == 5
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        resp = _download(server, rng=header)
        assert resp.status_code == 416, header
        assert resp.headers["Content-Range"] == f"bytes */{size}"


def test_download_errors_are_json(server: StandinServer) -> None:
    server.knobs.download_rate_per_min = None
    assert_error(_download(server, bucket=""), "0001")
    assert_error(_download(server, blob=""), "0001")
    assert_error(_download(server, blob="VI404.mp4"), "0001", "Resource does not exist")
    assert_error(_download(server, bucket="no-such-bucket"), "0001", "Resource does not exist")


def test_download_rate_limit(server: StandinServer) -> None:
    server.knobs.download_rate_per_min = 2
    assert _download(server, rng="bytes=0-0").status_code == 206
    assert _download(server, rng="bytes=0-0").status_code == 206
    limited = _download(server, rng="bytes=0-0")
    assert_error(limited, "0429")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


# -- what the vendor's pages leave open ----------------------------------------------------


def test_range_ignored_answers_200_with_the_whole_file(
    server: StandinServer, videos: dict[str, VideoInfo]
) -> None:
    server.knobs.merge({"download_rate_per_min": None, "range_honoured": False})
    expected = Path(videos[V60].path).read_bytes()
    resp = _download(server, rng="bytes=10-19")
    assert resp.status_code == 200
    assert resp.content == expected
    assert "Content-Range" not in resp.headers
    assert "Accept-Ranges" not in resp.headers
    assert server.stats.download_bytes == len(expected)  # billed for all of it


def test_chunked_bodies_carry_no_length(
    server: StandinServer, videos: dict[str, VideoInfo]
) -> None:
    server.knobs.merge({"download_rate_per_min": None, "chunked": True})
    expected = Path(videos[V60].path).read_bytes()
    resp = _download(server)
    assert resp.status_code == 200
    assert "Content-Length" not in resp.headers
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    assert resp.content == expected
    ranged = _download(server, rng="bytes=100-199")
    assert ranged.status_code == 206
    assert "Content-Length" not in ranged.headers
    assert ranged.content == expected[100:200]


def test_downloads_carry_validators_of_the_stored_file(server: StandinServer) -> None:
    server.knobs.download_rate_per_min = None
    first = _download(server, rng="bytes=0-0")
    again = _download(server, rng="bytes=0-0")
    assert first.headers["ETag"] == again.headers["ETag"]
    assert first.headers["Last-Modified"]


def test_a_body_can_be_cut_after_n_bytes(server: StandinServer) -> None:
    server.knobs.merge({"download_rate_per_min": None, "fail_next": ["download:drop_after:1000"]})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _download(server).content  # noqa: B018
    assert server.stats.download_bytes == 1000
    assert _download(server, rng="bytes=0-9").status_code == 206  # once only


@pytest.mark.parametrize(("shape", "data"), [("object", {}), ("null", None)])
def test_search_data_can_be_an_empty_object_or_null(
    server: StandinServer, shape: str, data: Any
) -> None:
    server.knobs.merge({"search_data": shape})
    body = envelope(search(server))
    assert body["code"] == "0000"
    assert body["data"] == data
    assert server.stats.billed_searches == 1


def test_v2_download_errors_use_the_http_status_as_code(server: StandinServer) -> None:
    server.knobs.merge({"download_rate_per_min": None, "download_errors": "v2"})
    missing = _download(server, blob="VI404.mp4")
    assert missing.status_code == 400
    assert missing.json()["code"] == 400
    assert missing.json()["msg"] == "Resource does not exist"
    server.knobs.merge({"credits": 0})
    broke = _download(server)
    assert broke.status_code == 402
    assert broke.json() == {
        "code": 402,
        "msg": "Insufficient balance",
        "data": None,
        "success": False,
        "failed": True,
    }


def test_profiles_set_the_defaults_reset_returns_to(gcs_client) -> None:
    with StandinServer(gcs_client, api_key=API_KEY, profile="range-ignored-chunked") as srv:
        assert srv.knobs.range_honoured is False
        assert srv.knobs.chunked is True
        srv.knobs.merge({"range_honoured": True})
        srv.reset()
        assert srv.knobs.range_honoured is False
    with pytest.raises(ValueError, match="profile"):
        StandinServer(gcs_client, api_key=API_KEY, profile="nope")


# -- admin routes -------------------------------------------------------------------------


def test_admin_routes_drive_the_stand_in_from_another_process(
    server: StandinServer,
) -> None:
    root = server.root_url
    ok = requests.post(
        f"{root}/_standin/knobs", json={"credits": 1, "fail_next": ["0001"]}, timeout=5
    )
    assert ok.status_code == 200
    assert ok.json()["credits"] == 1
    assert server.knobs.fail_next == ["0001"]
    bad = requests.post(f"{root}/_standin/knobs", json={"nope": 1}, timeout=5)
    assert bad.status_code == 400

    reg = requests.post(
        f"{root}/_standin/videos",
        json={"video_no": "VI_ADMIN", "bucket": BUCKET, "blob": f"{V60}.mp4", "unique_id": "u1"},
        timeout=30,
    )
    assert reg.status_code == 200
    assert reg.json()["status"] == "PARSE"
    missing = requests.post(
        f"{root}/_standin/videos",
        json={"video_no": "VI_X", "bucket": BUCKET, "blob": "absent.mp4"},
        timeout=30,
    )
    assert missing.status_code == 400

    assert_error(search(server, fields={"video_no": "VI_ADMIN", "unique_id": "u1"}), "0001")
    body = envelope(search(server, fields={"video_no": "VI_ADMIN", "unique_id": "u1"}))
    assert body["code"] == "0000"
    assert_error(search(server, fields={"video_no": "VI_ADMIN", "unique_id": "u1"}), "0402")

    status = requests.post(
        f"{root}/_standin/status",
        json={"video_no": "VI_ADMIN", "unique_id": "u1", "status": "PARSE_ERROR"},
        timeout=5,
    )
    assert status.status_code == 200
    meta = _get(server, "get_metadata", video_no="VI_ADMIN", unique_id="u1")
    assert envelope(meta)["data"]["status"] == "PARSE_ERROR"

    stats = requests.get(f"{root}/_standin/stats", timeout=5).json()
    assert stats["billed_searches"] == 1
    assert stats["requests"]["search_clips_by_image"] == 3
    assert stats["responses"] == {"0001": 1, "0000": 2, "0402": 1}


# -- secrets ------------------------------------------------------------------------------


def test_api_key_never_reaches_the_logs(
    server: StandinServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.knobs.fail_next = ["search:0429"]
    search(server)
    search(server)
    search(server, key=API_KEY + "-wrong")
    search(server, key=f"Bearer {API_KEY}")
    _get(server, "get_metadata", video_no=V60)
    _download(server, rng="bytes=0-99")
    _download(server, blob="VI404.mp4")
    assert "search_clips_by_image" in caplog.text  # the requests were logged...
    assert API_KEY not in caplog.text  # ...without the key
    assert API_KEY not in repr(server)


def test_a_video_replaced_under_the_same_video_no(
    server: StandinServer, bucket: storage.Bucket, videos: dict[str, VideoInfo]
) -> None:
    """A re-upload at the vendor: new bytes under the same blob, a new duration reported."""
    server.knobs.download_rate_per_min = None
    bucket.blob("VI_REPLACE.mp4").upload_from_filename(str(videos[V60].path))
    server.register_video("VI_REPLACE", BUCKET, "VI_REPLACE.mp4")
    before = _download(server, blob="VI_REPLACE.mp4")
    assert envelope(_get(server, "get_metadata", video_no="VI_REPLACE"))["data"][
        "duration"
    ] == pytest.approx(60, abs=0.2)
    replaced = requests.post(
        f"{server.root_url}/_standin/replace",
        json={"video_no": "VI_REPLACE", "bucket": BUCKET, "blob": f"{V600}.mp4"},
        timeout=60,
    )
    assert replaced.status_code == 200
    assert replaced.json()["blob"] == "VI_REPLACE.mp4"  # the video's own location stays
    data = envelope(_get(server, "get_metadata", video_no="VI_REPLACE"))["data"]
    assert data["duration"] == pytest.approx(600, abs=0.2)
    after = _download(server, blob="VI_REPLACE.mp4")
    assert after.content == Path(videos[V600].path).read_bytes()
    assert after.headers["ETag"] != before.headers["ETag"]
    unknown = requests.post(
        f"{server.root_url}/_standin/replace",
        json={"video_no": "VI_NOBODY", "bucket": BUCKET, "blob": f"{V600}.mp4"},
        timeout=10,
    )
    assert unknown.status_code == 400
