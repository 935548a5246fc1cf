"""The API path's rules for a source's bytes: which route, what an answer says, what changed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clipsearch.core.sourcecopy import (
    META_CHECKED,
    META_SOURCE,
    Route,
    Validators,
    changed,
    checked_at,
    comparable,
    copy_is_current,
    plan_route,
    read_head,
)

URI = "gs://mavi-resource/V1.mp4"


@pytest.mark.parametrize(
    ("size", "honoured", "route"),
    [
        (100, True, Route.COPY),
        (1000, True, Route.COPY),  # at the threshold: still copied
        (1001, True, Route.RANGED),
        (10**12, False, Route.COPY),  # Range ignored: ranged reads are impossible
        (10**12, None, Route.COPY),  # not known yet
        (None, True, Route.COPY),  # size unknown (chunked 200): copied, the cap holds
    ],
)
def test_the_route_rule(size, honoured, route):
    assert plan_route(size, honoured, 1000) is route


def test_a_206_tells_the_total_and_the_start():
    head = read_head(
        206,
        {"Content-Range": "bytes 100-199/1000", "Content-Length": "100", "ETag": '"7"'},
        100,
    )
    assert head.ranged
    assert (head.start, head.length) == (100, 100)
    assert head.validators == Validators(1000, '"7"', None)


def test_a_200_is_the_whole_file_whatever_was_asked():
    head = read_head(200, {"content-length": "1000", "last-modified": "Mon"}, 500)
    assert not head.ranged
    assert head.start == 0
    assert head.validators == Validators(1000, None, "Mon")


def test_a_chunked_200_has_no_size():
    head = read_head(200, {"Transfer-Encoding": "chunked"}, 0)
    assert head.length is None
    assert head.validators.size is None


@pytest.mark.parametrize(
    ("headers", "asked"),
    [
        ({"Content-Range": "bytes 0-99/1000"}, 100),  # not where asked
        ({}, 0),  # a 206 without Content-Range
        ({"Content-Range": "bytes 0-1000/1000"}, 0),  # past its own total
        ({"Content-Range": "bytes 0-99/1000", "Content-Length": "50"}, 0),
    ],
)
def test_unusable_206_answers_are_refused(headers, asked):
    with pytest.raises(ValueError, match=r"."):
        read_head(206, headers, asked)


def test_changes_are_told_by_whatever_both_sides_know():
    copied = Validators(1000, '"a"', "Mon")
    assert changed(copied, Validators(1000, '"a"', "Mon")) is None
    assert changed(copied, Validators(1000, None, None)) is None
    assert "size" in (changed(copied, Validators(999, '"a"', "Mon")) or "")
    assert "ETag" in (changed(copied, Validators(1000, '"b"', "Mon")) or "")
    assert "Last-Modified" in (changed(copied, Validators(None, None, "Tue")) or "")
    assert not comparable(copied, Validators(None, None, None))
    assert comparable(copied, Validators(None, None, "Tue"))


def test_a_copy_is_current_only_whole_for_its_source_and_agreeing():
    meta = Validators(1000, '"a"', None).metadata(URI)
    assert copy_is_current(meta, URI, 1000, None)
    assert copy_is_current(meta, URI, 1000, Validators(1000, '"a"', None))
    assert not copy_is_current(meta, URI, 999, None)  # not the whole file
    assert not copy_is_current(meta, "gs://other/V1.mp4", 1000, None)
    assert not copy_is_current(meta, URI, 1000, Validators(1000, '"b"', None))
    assert not copy_is_current({META_SOURCE: URI}, URI, 1000, None)  # copy mode's: no validators


def test_the_version_names_the_content():
    assert Validators(1000, '"a"').version == Validators(1000, '"a"').version
    assert Validators(1000, '"a"').version != Validators(1000, '"b"').version
    meta = Validators(1000, '"a"', "Mon").metadata(URI)
    assert Validators.from_metadata(meta) == Validators(1000, '"a"', "Mon")


def test_checked_at_reads_an_aware_time_or_nothing():
    when = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert checked_at({META_CHECKED: when.isoformat()}) == when
    assert checked_at({}) is None
    assert checked_at({META_CHECKED: "yesterday"}) is None
    assert checked_at({META_CHECKED: "2026-12-07T10:00:00"}) is None  # naive
