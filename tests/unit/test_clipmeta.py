"""A clip's custom metadata: what fetch writes with a clip is what a reuse reads back."""

from __future__ import annotations

import math
import random
import struct

import pytest

from clipsearch.core.clipmeta import ClipMeta, encode_clip_metadata, parse_clip_metadata

POSTER = "gs://results/clips/v/1.0-2.0.jpg"


def roundtrip(meta: ClipMeta) -> ClipMeta:
    assert meta.start is not None
    assert meta.end is not None
    assert meta.keyframe_snapped is not None
    assert meta.poster_uri is not None
    encoded = encode_clip_metadata(
        meta.start, meta.end, meta.keyframe_snapped, meta.poster_uri, meta.dropped_tracks
    )
    assert all(isinstance(v, str) for v in encoded.values())  # Cloud Storage keeps strings
    return parse_clip_metadata(encoded)


def test_the_stored_keys_keep_their_spelling() -> None:
    # Clips written by earlier releases are reused: the keys and values are a stored format.
    assert encode_clip_metadata(1.5, 7.25, True, POSTER) == {
        "clipsearch-start": "1.5",
        "clipsearch-end": "7.25",
        "clipsearch-snapped": "true",
        "clipsearch-poster": POSTER,
    }
    encoded = encode_clip_metadata(0.0, 2.0, False, POSTER, ("audio#2 (opus, eng)",))
    assert encoded["clipsearch-snapped"] == "false"
    assert encoded["clipsearch-dropped-tracks"] == "audio#2 (opus, eng)"


@pytest.mark.parametrize(
    "dropped",
    [
        (),
        ("audio#2 (opus, eng)",),
        ("video#2 (h264)", "audio#3 (aac, eng)", "audio#4 (pcm_s16le)"),
        ("audio#10 (mp3, fre)", "audio#11 (ac3)"),
    ],
)
@pytest.mark.parametrize("snapped", [True, False])
def test_round_trip_with_dropped_tracks(dropped: tuple[str, ...], snapped: bool) -> None:
    meta = ClipMeta(12.0, 18.5, snapped, POSTER, dropped)
    assert roundtrip(meta) == meta


def test_times_round_trip_exactly() -> None:
    # repr keeps every bit of a float: a reused clip reports the very same times.
    rng = random.Random(11)
    raw = [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(2000)]
    times = [t for t in raw if math.isfinite(t)]
    times += [0.1 + 0.2, 1 / 3, 5e-324, 1.7976931348623157e308, -0.0, 36000.033333333333]
    for start in times:
        meta = ClipMeta(start, start + 6.0, False, POSTER)
        back = roundtrip(meta)
        assert back == meta
        assert back.start is not None
        assert struct.pack("<d", back.start) == struct.pack("<d", start)  # -0.0 too


@pytest.mark.parametrize(
    "stored",
    [
        None,
        {},
        {"clipsearch-source": "gs://vendor/v.mp4#3"},  # a copy: no clip keys at all
        {
            "clipsearch-start": "",
            "clipsearch-end": "",
            "clipsearch-snapped": "",
            "clipsearch-poster": "",
            "clipsearch-dropped-tracks": "",
        },
    ],
)
def test_missing_or_empty_keys_read_as_unknown(stored: dict[str, str] | None) -> None:
    assert parse_clip_metadata(stored) == ClipMeta(None, None, None, None, ())


def test_each_key_is_read_on_its_own() -> None:
    meta = parse_clip_metadata({"clipsearch-start": "1.0"})
    assert meta == ClipMeta(start=1.0)
    meta = parse_clip_metadata({"clipsearch-end": "2.0", "clipsearch-poster": POSTER})
    assert meta == ClipMeta(end=2.0, poster_uri=POSTER)


@pytest.mark.parametrize("value", ["yes", "True", "TRUE", "1", "false"])
def test_snapped_is_true_only_when_it_says_true(value: str) -> None:
    assert parse_clip_metadata({"clipsearch-snapped": value}).keyframe_snapped is False


@pytest.mark.parametrize("key", ["clipsearch-start", "clipsearch-end"])
@pytest.mark.parametrize("value", ["abc", "1.0s", "1,5"])
def test_a_garbled_time_raises(key: str, value: str) -> None:
    with pytest.raises(ValueError, match="could not convert"):
        parse_clip_metadata({key: value})


def test_float_spellings_python_reads_are_accepted() -> None:
    assert parse_clip_metadata({"clipsearch-start": " 2.5 "}).start == 2.5
    assert parse_clip_metadata({"clipsearch-end": "1e1"}).end == 10.0
