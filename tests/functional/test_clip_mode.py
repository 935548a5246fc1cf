"""Fetch mode `clip` through the real app: only the matching seconds, or a recorded fallback."""

from __future__ import annotations

import io
import subprocess
import threading
from pathlib import Path

import av
import pytest

from clipsearch.model import Hit, SourceVideo, VideoMetadata
from clipsearch_dev.media import VideoInfo, make_video, read_frame_code
from tests.fakes import FakeSearchApi, FileSources
from tests.images import image_bytes

SRC = SourceVideo("mavi-resource", "V1.mp4")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> VideoInfo:
    return make_video(
        tmp_path_factory.mktemp("clipmode") / "v.mp4",
        seconds=40,
        fps=10,
        width=160,
        height=120,
        gop=20,
    )


def frame_codes(data: bytes) -> list[int]:
    with av.open(io.BytesIO(data)) as container:
        return [read_frame_code(frame.to_image()) for frame in container.decode(video=0)]


def test_clips_hold_exactly_the_matching_seconds(make_harness, video):
    gcs = FileSources({SRC: video.path})
    hits = [Hit(5.0, 8.0, 0.9, SRC), Hit(21.3, 24.0, 0.8, SRC)]
    h = make_harness(FakeSearchApi(hits), gcs=gcs, CLIPSEARCH_FETCH_MODE="clip")
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [message] = h.messages()
    for clip, hit in zip(message["clips"], hits, strict=True):
        artifact = clip["artifact"]
        assert artifact["mode"] == "clip"
        assert clip["fallback_reason"] is None
        assert artifact["start_time"] <= hit.start_time
        assert artifact["end_time"] >= hit.end_time - 0.1
        assert artifact["end_time"] - artifact["start_time"] < 3 + 2.0 + 0.2  # ≤ one GOP early
        stored = h.storage.objects[("results", artifact["object"])].data
        codes = frame_codes(stored)
        assert codes == list(range(codes[0], codes[0] + len(codes)))  # whole, in order
        assert codes[0] / video.fps == pytest.approx(artifact["start_time"], abs=0.01)
        assert codes[0] <= hit.start_time * video.fps
        assert codes[-1] >= hit.end_time * video.fps - 1
        assert artifact["poster_uri"].endswith(".jpg")
        poster = artifact["poster_uri"].removeprefix("gs://results/")
        assert h.storage.objects[("results", poster)].data[:3] == b"\xff\xd8\xff"
    assert len(gcs.opened) == 1  # two hits, one open of the source
    assert any(name.endswith(".idx") for _, name in h.storage.objects)


def test_a_repeat_query_reuses_clips_and_the_sidecar_index(make_harness, video):
    gcs = FileSources({SRC: video.path})
    h = make_harness(
        FakeSearchApi([Hit(5.0, 8.0, 0.9, SRC)]), gcs=gcs, CLIPSEARCH_FETCH_MODE="clip"
    )
    h.deliver("a.jpg", image_bytes())
    h.deliver("b.jpg", image_bytes())
    first, second = h.messages()
    assert second["clips"][0]["artifact"]["reused"] is True
    assert (
        second["clips"][0]["artifact"]["start_time"] == first["clips"][0]["artifact"]["start_time"]
    )
    # Another instance (cold memory, same results bucket): one ranged request for a new clip.
    gcs2 = FileSources({SRC: video.path})
    h2 = make_harness(
        FakeSearchApi([Hit(30.0, 33.0, 0.9, SRC)]), gcs=gcs2, CLIPSEARCH_FETCH_MODE="clip"
    )
    h2.storage.objects.update(h.storage.objects)
    h2.deliver("c.jpg", image_bytes())
    [message] = h2.messages()
    assert message["clips"][0]["artifact"]["mode"] == "clip"
    assert gcs2.opened[0].requests == 1


def test_exact_mode_starts_at_the_requested_second(make_harness, video):
    gcs = FileSources({SRC: video.path})
    h = make_harness(
        FakeSearchApi([Hit(6.5, 9.0, 0.9, SRC)]),
        gcs=gcs,
        CLIPSEARCH_FETCH_MODE="clip",
        CLIPSEARCH_CLIP_EXACT="true",
    )
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    artifact = message["clips"][0]["artifact"]
    assert artifact["keyframe_snapped"] is False
    assert artifact["start_time"] == pytest.approx(6.5, abs=0.11)


def test_unreadable_in_gcs_uses_the_download_route(make_harness, video):
    download = FileSources({SRC: video.path})
    h = make_harness(
        FakeSearchApi([Hit(5.0, 8.0, 0.9, SRC)]), download=download, CLIPSEARCH_FETCH_MODE="clip"
    )
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    assert message["clips"][0]["artifact"]["mode"] == "clip"
    assert len(download.opened) == 1


@pytest.mark.parametrize(
    ("hit", "env", "reason"),
    [
        (Hit(10.0, 20.0, 0.9, SRC), {"CLIPSEARCH_MAX_CLIP_S": "5"}, "clip_too_long"),
        (Hit(55.0, 58.0, 0.9, SRC), {}, "start_beyond_duration"),
    ],
)
def test_uncuttable_hits_fall_back_to_a_copy_with_the_reason(make_harness, video, hit, env, reason):
    gcs = FileSources({SRC: video.path})
    h = make_harness(FakeSearchApi([hit]), gcs=gcs, CLIPSEARCH_FETCH_MODE="clip", **env)
    h.storage.put("mavi-resource", "V1.mp4", Path(video.path).read_bytes(), generation=1)
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    clip = message["clips"][0]
    assert clip["fallback_reason"] == reason
    assert clip["artifact"]["mode"] == "copy"


def test_a_container_we_cannot_cut_falls_back_to_a_reference(make_harness, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(5000))
    h = make_harness(
        FakeSearchApi([Hit(1.0, 3.0, 0.9, SRC)]),
        gcs=FileSources({SRC: junk}),
        CLIPSEARCH_FETCH_MODE="clip",
        CLIPSEARCH_CLIP_FALLBACK="none",
    )
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [message] = h.messages()
    clip = message["clips"][0]
    assert clip["fallback_reason"] == "unsupported_container"
    assert clip["artifact"] is None
    assert clip["source"]["uri"] == SRC.uri


def test_a_track_the_clip_leaves_out_is_named_in_the_clips_notes(make_harness, tmp_path):
    # A second video track (made by the ffmpeg CLI, not by us) cannot ride along in a clip:
    # the clip must say so in its own metadata rather than drop it without a word.
    path = tmp_path / "two-video.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=12",
         "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=12",
         "-map", "0:v", "-map", "1:v", "-c:v", "libx264", "-g", "20", "-pix_fmt", "yuv420p",
         str(path)],
        check=True,
    )  # fmt: skip
    gcs = FileSources({SRC: path})
    h = make_harness(
        FakeSearchApi([Hit(4.0, 6.0, 0.9, SRC)]), gcs=gcs, CLIPSEARCH_FETCH_MODE="clip"
    )
    assert h.deliver("a.jpg", image_bytes()).status_code == 200
    [message] = h.messages()
    [clip] = message["clips"]
    assert clip["fallback_reason"] is None
    stored = h.storage.objects[("results", clip["artifact"]["object"])]
    assert "video" in stored.metadata["clipsearch-dropped-tracks"]
    with av.open(io.BytesIO(stored.data)) as container:
        assert len(container.streams.video) == 1


class _SearchAfterMetadataStarts(FakeSearchApi):
    """Its search waits (up to 5 s) for the query's get_metadata call to have begun."""

    def __init__(self, *script: list[Hit] | Exception) -> None:
        super().__init__(*script)
        self.metadata_begun = threading.Event()
        self.begun_during_search: bool | None = None

    def search(self, query, image, deadline, before_send=None):  # type: ignore[no-untyped-def]
        self.begun_during_search = self.metadata_begun.wait(5.0)
        return super().search(query, image, deadline, before_send)

    def video_metadata(self, video_no: str, unique_id: str, deadline: float) -> VideoMetadata:
        self.metadata_begun.set()
        return super().video_metadata(video_no, unique_id, deadline)


def test_on_the_api_path_the_metadata_call_runs_beside_the_search(make_harness, video):
    # Its pacer and round trip overlap the search's instead of following them (issue 21's
    # queries per minute); still one call per query, counted, and the clip is cut.
    api = _SearchAfterMetadataStarts([Hit(5.0, 8.0, 0.9, SRC)])
    api.metadata["V1"] = VideoMetadata("V1", "PARSE", video.seconds, SRC)
    h = make_harness(
        api,
        download=FileSources({SRC: video.path}),
        CLIPSEARCH_FETCH_MODE="clip",
        CLIPSEARCH_FETCH_SOURCE="api",
    )
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    assert message["clips"][0]["artifact"]["mode"] == "clip"
    assert api.begun_during_search is True
    assert api.metadata_calls == 1


def test_in_auto_mode_no_metadata_call_is_made_for_a_source_read_from_gcs(make_harness, video):
    api = _SearchAfterMetadataStarts([Hit(5.0, 8.0, 0.9, SRC)])
    h = make_harness(api, gcs=FileSources({SRC: video.path}), CLIPSEARCH_FETCH_MODE="clip")
    api.metadata_begun.set()  # do not hold the search up: only the count matters here
    h.deliver("a.jpg", image_bytes())
    [message] = h.messages()
    assert message["clips"][0]["artifact"]["mode"] == "clip"
    assert api.metadata_calls == 0
