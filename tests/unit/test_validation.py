"""The API's input rules, enforced before any read or search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipsearch.core.events import FINALIZED, parse_finalized_event
from clipsearch.core.messages import attributes, error_message
from clipsearch.core.validation import check_image_bytes, sniff_image_kind, validate_query
from clipsearch.errors import PermanentError, Reason
from clipsearch.model import QueryObject, Timings
from tests.images import image_bytes

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "finalized_event.json").read_text())
LIMIT = 20 * 1024 * 1024


def obj(name: str = "a/b.jpg", content_type: str = "image/jpeg", size: int = 100, **meta: str):
    metadata = {"video_no": "V1", "prompt": "red shirt", **meta}
    metadata = {k: v for k, v in metadata.items() if v != "<drop>"}
    return QueryObject("qb", name, 7, size, content_type, metadata, "ev", "")


def reason_of(call) -> Reason:
    with pytest.raises(PermanentError) as info:
        call()
    return info.value.reason


def validate(o: QueryObject):
    return validate_query(o, max_image_bytes=LIMIT, max_metadata_chars=2000)


def test_parses_the_storage_event_fixture():
    parsed = parse_finalized_event("e-1", FINALIZED, FIXTURE, event_time="t", trace="tr")
    assert parsed.bucket == "clipsearch-queries"
    assert parsed.name == "shots/red-shirt.jpg"
    assert parsed.generation == 1700000000000001
    assert parsed.size == 2048
    assert parsed.content_type == "image/jpeg"
    assert parsed.metadata["video_no"] == "VI625239098370850816"
    assert parsed.key == "clipsearch-queries/shots/red-shirt.jpg#1700000000000001"


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("google.cloud.storage.object.v1.deleted", FIXTURE),
        (FINALIZED, []),
        (FINALIZED, {"bucket": "b"}),
        (FINALIZED, {**FIXTURE, "generation": "x"}),
        (FINALIZED, {**FIXTURE, "metadata": ["no"]}),
    ],
)
def test_unusable_events_are_bad_event(event_type, data):
    assert reason_of(lambda: parse_finalized_event("e", event_type, data)) is Reason.BAD_EVENT


def test_valid_query_defaults_unique_id_and_strips():
    query = validate(obj(prompt="  red shirt  "))
    assert (query.video_no, query.prompt, query.unique_id, query.image_kind) == (
        "V1",
        "red shirt",
        "default",
        "jpeg",
    )


def test_metadata_keys_match_case_insensitively():
    query = validate(
        QueryObject(
            "qb",
            "x.png",
            1,
            5,
            "image/png",
            {"Video_No": "V9", "PROMPT": "p", "Unique_Id": "folder"},
            "e",
            "",
        )
    )
    assert (query.video_no, query.prompt, query.unique_id, query.image_kind) == (
        "V9",
        "p",
        "folder",
        "png",
    )


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"video_no": "<drop>"}, Reason.MISSING_VIDEO_NO),
        ({"video_no": "   "}, Reason.MISSING_VIDEO_NO),
        ({"prompt": "<drop>"}, Reason.MISSING_PROMPT),
        ({"prompt": ""}, Reason.MISSING_PROMPT),
        ({"prompt": "x" * 2001}, Reason.INVALID_METADATA),
        ({"video_no": "V" * 129}, Reason.INVALID_METADATA),
        ({"prompt": "red\x00shirt"}, Reason.INVALID_METADATA),
        ({"prompt": "red\u202eshirt"}, Reason.INVALID_METADATA),
        ({"unique_id": "a\nb"}, Reason.INVALID_METADATA),
        ({"name": "a/b.tiff"}, Reason.UNSUPPORTED_EXTENSION),
        ({"name": "a/noextension"}, Reason.UNSUPPORTED_EXTENSION),
        ({"name": "dir.jpg/noextension"}, Reason.UNSUPPORTED_EXTENSION),
        ({"content_type": "application/octet-stream"}, Reason.UNSUPPORTED_CONTENT_TYPE),
        ({"content_type": ""}, Reason.UNSUPPORTED_CONTENT_TYPE),
        ({"size": 0}, Reason.EMPTY_IMAGE),
        ({"size": LIMIT + 1}, Reason.IMAGE_TOO_LARGE),
    ],
)
def test_each_rule_has_its_reason(kwargs, reason):
    assert reason_of(lambda: validate(obj(**kwargs))) is reason


def test_non_ascii_prompt_is_accepted():
    assert validate(obj(prompt="chemise rouge, été")).prompt == "chemise rouge, été"


def test_uppercase_extension_is_accepted():
    assert validate(obj(name="A/B.JPEG")).image_kind == "jpeg"


@pytest.mark.parametrize("kind", ["jpeg", "png", "gif", "bmp", "webp"])
def test_real_images_are_recognised(kind):
    data = image_bytes(kind)
    assert sniff_image_kind(data) == kind
    query = validate(obj(name=f"x.{'jpg' if kind == 'jpeg' else kind}", size=len(data)))
    check_image_bytes(query, data, LIMIT)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("x.jpg", b"", Reason.EMPTY_IMAGE),
        ("x.jpg", b"%PDF-1.7 not an image at all", Reason.NOT_AN_IMAGE),
        ("x.jpg", image_bytes("png"), Reason.IMAGE_TYPE_MISMATCH),
        ("x.png", image_bytes("png")[:-20], Reason.TRUNCATED_IMAGE),
        ("x.jpg", image_bytes("jpeg")[:-40], Reason.TRUNCATED_IMAGE),
        ("x.bmp", image_bytes("bmp")[:-10], Reason.TRUNCATED_IMAGE),
        ("x.webp", image_bytes("webp")[:-4], Reason.TRUNCATED_IMAGE),
        ("x.gif", image_bytes("gif")[:-8], Reason.TRUNCATED_IMAGE),
        ("x.jpg", b"\xff\xd8\xff" + b"\0" * 64, Reason.TRUNCATED_IMAGE),
    ],
)
def test_bytes_must_be_a_whole_image_of_the_named_kind(name, data, reason):
    query = validate(obj(name=name))
    assert reason_of(lambda: check_image_bytes(query, data, LIMIT)) is reason


def test_bytes_over_the_limit_are_refused_even_if_the_event_said_less():
    query = validate(obj())
    data = image_bytes("jpeg")
    assert reason_of(lambda: check_image_bytes(query, data, len(data) - 1)) is (
        Reason.IMAGE_TOO_LARGE
    )


@pytest.mark.parametrize(
    "spelling",
    [
        {"x-goog-meta-video_no": "V9", "x-goog-meta-prompt": "p", "x-goog-meta-unique_id": "u"},
        {"X-Goog-Meta-Video_No": "V9", "X-GOOG-META-PROMPT": "p", "x-goog-meta-Unique_Id": "u"},
    ],
    ids=["gcloud-prefix", "prefix-any-case"],
)
def test_gsutil_header_prefix_is_stripped_from_metadata_keys(spelling):
    """`gcloud storage cp --custom-metadata=x-goog-meta-video_no=V` keeps the prefix in the key."""
    query = validate(QueryObject("qb", "x.png", 1, 5, "image/png", spelling, "e", ""))
    assert (query.video_no, query.prompt, query.unique_id) == ("V9", "p", "u")


def test_the_exact_key_wins_over_a_respelling_whatever_the_order():
    respelt = {"x-goog-meta-video_no": "OTHER", "video_no": "V1", "prompt": "p"}
    assert validate(QueryObject("qb", "x.png", 1, 5, "image/png", respelt, "e", "")).video_no == (
        "V1"
    )


@pytest.mark.parametrize(
    "metadata",
    [
        {"Video_No": "V9", "PROMPT": "p", "Unique_Id": "u"},
        {"x-goog-meta-video_no": "V9", "x-goog-meta-prompt": "p", "X-Goog-Meta-Unique_Id": "u"},
    ],
)
def test_an_error_outcome_reports_the_metadata_however_its_keys_are_spelt(metadata):
    """The error message's query section uses the same key rules as validation."""
    message = error_message(
        QueryObject("qb", "x.tiff", 1, 5, "image/tiff", metadata, "e", ""),
        None,
        Reason.UNSUPPORTED_EXTENSION,
        "m",
        Timings(0, 0, 0, 0),
        "gs://r/x",
        "t",
    )
    assert (message["query"]["video_no"], message["query"]["prompt"]) == ("V9", "p")
    assert message["query"]["unique_id"] == "u"
    assert attributes(message)["video_no"] == "V9"


def test_an_event_without_size_leaves_the_size_to_the_read():
    """python-docs-samples' and curl-made events carry no `size`: not an empty image."""
    data = {k: v for k, v in FIXTURE.items() if k != "size"}
    parsed = parse_finalized_event("e", FINALIZED, data)
    query = validate(parsed)  # no empty_image before the read
    real = image_bytes("jpeg")
    check_image_bytes(query, real, LIMIT)
    assert reason_of(lambda: check_image_bytes(query, b"", LIMIT)) is Reason.EMPTY_IMAGE
    assert reason_of(lambda: check_image_bytes(query, real, len(real) - 1)) is (
        Reason.IMAGE_TOO_LARGE
    )


def test_an_event_that_says_size_zero_is_still_refused_before_the_read():
    parsed = parse_finalized_event("e", FINALIZED, {**FIXTURE, "size": "0"})
    assert reason_of(lambda: validate(parsed)) is Reason.EMPTY_IMAGE


def test_a_negative_event_size_is_a_bad_event():
    data = {**FIXTURE, "size": "-3"}
    assert reason_of(lambda: parse_finalized_event("e", FINALIZED, data)) is Reason.BAD_EVENT
