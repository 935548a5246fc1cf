"""Interpreting the search API's responses and result codes, exactly."""

from __future__ import annotations

import json

import pytest

from clipsearch.core import api
from clipsearch.errors import PermanentError, Reason, TransientError
from clipsearch.model import Hit, Query, QueryObject, SourceVideo

SEED = {
    "code": "0000",
    "msg": "success",
    "data": [
        {
            "start_time": 12.5,
            "end_time": 18.2,
            "score": 0.8631,
            "video_bucket": "mavi-resource",
            "video_blob": "VI576925607808602112.mp4",
        },
        {
            "start_time": 42,
            "end_time": 47.8,
            "score": 0.8124,
            "video_bucket": "mavi-resource",
            "video_blob": "VI576925607808602112.mp4",
        },
    ],
    "success": True,
    "failed": False,
}


EMPTY_PROMPT = "The prompt parameter cannot be empty!"


def body(doc) -> bytes:
    return json.dumps(doc).encode()


def envelope(code: str, msg: str = "m") -> bytes:
    return body({"code": code, "msg": msg, "data": None, "success": False, "failed": True})


def test_the_documented_example_parses_into_ranked_hits():
    hits = api.interpret_search_response(200, {}, body(SEED))
    source = SourceVideo("mavi-resource", "VI576925607808602112.mp4")
    assert hits == [Hit(12.5, 18.2, 0.8631, source), Hit(42.0, 47.8, 0.8124, source)]


def test_hits_are_sorted_by_score_and_camel_case_is_accepted():
    doc = {
        "code": "0000",
        "data": [
            {"startTime": 1, "endTime": 2, "score": 0.2},
            {"startTime": 3, "endTime": 4, "score": 0.9, "videoBucket": "b", "videoBlob": "x.mp4"},
        ],
    }
    hits = api.interpret_search_response(200, {}, body(doc))
    assert [h.start_time for h in hits] == [3.0, 1.0]
    assert hits[0].source == SourceVideo("b", "x.mp4")
    assert hits[1].source is None


def test_missing_location_and_empty_data():
    assert api.interpret_search_response(200, {}, body({"code": "0000", "data": []})) == []
    assert api.interpret_search_response(200, {}, body({"code": "0000", "data": None})) == []
    # An older page's example answers a success with `"data": {}`: no hits, not a lost answer.
    assert api.interpret_search_response(200, {}, body({"code": "0000", "data": {}})) == []


@pytest.mark.parametrize(
    ("code", "reason", "retry_once"),
    [
        ("0001", Reason.API_INVALID_REQUEST, True),
        ("0003", Reason.API_INVALID_REQUEST, False),
        ("0401", Reason.API_UNAUTHORIZED, False),
        ("0402", Reason.API_INSUFFICIENT_CREDITS, False),
        ("0403", Reason.API_ACCOUNT_DISABLED, False),
        ("9009", Reason.API_PERMISSION_DENIED, False),
        ("415", Reason.API_INVALID_REQUEST, False),
        ("7777", Reason.API_REJECTED, False),
    ],
)
def test_permanent_codes(code, reason, retry_once):
    with pytest.raises(PermanentError) as info:
        api.interpret_search_response(
            200, {}, envelope(code, "The prompt parameter cannot be empty!")
        )
    assert info.value.reason is reason
    assert info.value.retry_once is retry_once
    assert EMPTY_PROMPT in info.value.message


@pytest.mark.parametrize("code", ["0429", "0409", "429", "500"])
def test_transient_codes_carry_retry_after(code):
    with pytest.raises(TransientError) as info:
        api.interpret_search_response(200, {"Retry-After": "3"}, envelope(code))
    assert info.value.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (401, b"", Reason.API_UNAUTHORIZED),
        (401, envelope("0401"), Reason.API_UNAUTHORIZED),
        (402, b"", Reason.API_INSUFFICIENT_CREDITS),
        (403, b"<html>forbidden</html>", Reason.API_ACCOUNT_DISABLED),
        (404, b"not found", Reason.API_REJECTED),
        (400, envelope("0001"), Reason.API_INVALID_REQUEST),
    ],
)
def test_http_error_statuses_map_like_codes(status, payload, expected):
    with pytest.raises(PermanentError) as info:
        api.interpret_search_response(status, {}, payload)
    assert info.value.reason is expected


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_http_transient_statuses(status):
    with pytest.raises(TransientError):
        api.interpret_search_response(status, {"retry-after": "1.5"}, b"<html>oops</html>")


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"",
        body({"code": "0000", "data": {"not": "a list"}}),  # an object that is not empty
        body({"code": "0000", "data": ["x"]}),
        body({"code": "0000", "data": [{"start_time": 5, "end_time": 2, "score": 1}]}),
        body({"code": "0000", "data": [{"start_time": "nan", "end_time": 2, "score": 1}]}),
        body({"code": "0000", "data": [{"end_time": 2, "score": 1}]}),
    ],
)
def test_malformed_success_bodies_are_transient(payload):
    with pytest.raises(TransientError):
        api.interpret_search_response(200, {}, payload)


def test_scores_are_clamped_into_0_1():
    doc = {"code": "0000", "data": [{"start_time": 0, "end_time": 1, "score": 1.7}]}
    assert api.interpret_search_response(200, {}, body(doc))[0].score == 1.0


@pytest.mark.parametrize(
    ("value", "expected"), [("2", 2.0), ("0.25", 0.25), ("soon", None), ("-1", None), ("inf", None)]
)
def test_retry_after_parsing(value, expected):
    assert api.parse_retry_after({"Retry-After": value}) == expected


def test_search_form_fields():
    obj = QueryObject("qb", "dir/shot.PNG", 1, 10, "image/png", {}, "e", "")
    form = api.build_search_form("https://h/serve/api/v1", Query(obj, "V1", "p", "default", "png"))
    assert form.url == "https://h/serve/api/v1/search_clips_by_image"
    assert form.fields == (("video_no", "V1"), ("prompt", "p"), ("unique_id", "default"))
    assert (form.filename, form.content_type) == ("shot.PNG", "image/png")


def test_metadata_response():
    doc = {
        "code": "0000",
        "data": {
            "video_no": "V1",
            "status": "PARSE",
            "duration": 61.5,
            "bucket": "mavi-resource",
            "blob": "V1.mp4",
        },
    }
    meta = api.interpret_metadata_response(200, {}, body(doc), "V1")
    assert (meta.status, meta.duration, meta.source) == (
        "PARSE",
        61.5,
        SourceVideo("mavi-resource", "V1.mp4"),
    )


def test_download_error_json_is_classified():
    with pytest.raises(PermanentError) as info:
        api.interpret_download_error(200, {}, envelope("0001", "Resource does not exist"))
    assert "Resource does not exist" in info.value.message


@pytest.mark.parametrize(
    ("status", "doc", "expected"),
    [
        # v2: integer codes equal to the HTTP status they come with.
        (404, {"code": 404, "msg": "Resource does not exist"}, Reason.API_REJECTED),
        (400, {"code": 400, "msg": "bucket and blob cannot be empty"}, Reason.API_INVALID_REQUEST),
        (402, {"code": 402, "msg": "Insufficient balance"}, Reason.API_INSUFFICIENT_CREDITS),
        (200, {"code": 402, "msg": "Insufficient balance"}, Reason.API_INSUFFICIENT_CREDITS),
        # v1: however it is coded, running out of balance is the account's credits.
        (200, {"code": "0001", "msg": "Insufficient balance"}, Reason.API_INSUFFICIENT_CREDITS),
        (200, {"code": "0402", "msg": "Insufficient balance"}, Reason.API_INSUFFICIENT_CREDITS),
    ],
)
def test_download_errors_v1_and_v2(status, doc, expected):
    with pytest.raises(PermanentError) as info:
        api.interpret_download_error(status, {}, body(doc))
    assert info.value.reason is expected


@pytest.mark.parametrize("status", [429, 500])
def test_v2_transient_download_errors(status):
    with pytest.raises(TransientError):
        api.interpret_download_error(status, {}, body({"code": status, "msg": "busy"}))
