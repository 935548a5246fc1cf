"""The API path's rules for a source's bytes: which route, what an answer says, what changed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clipsearch.core.sourcecopy import (
    META_CHECKED,
    META_DURATION,
    META_SOURCE,
    META_VERSION,
    CopyCheck,
    Route,
    Validators,
    VendorFacts,
    changed,
    checked_at,
    comparable,
    content_version,
    copy_is_current,
    copy_version,
    facts_changed,
    facts_comparable,
    judge_copy,
    plan_route,
    read_head,
)
from clipsearch.model import SourceVideo, VideoMetadata

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


FACTS = VendorFacts(60.0, "mavi-resource", "V1.mp4")


def test_vendor_facts_round_trip_through_a_copys_metadata():
    assert VendorFacts.from_metadata(FACTS.metadata()) == FACTS
    assert VendorFacts.from_metadata({}) is None  # a copy made before the record
    assert VendorFacts.from_metadata({META_DURATION: "soon"}) is None
    only = VendorFacts(12.5)
    assert VendorFacts.from_metadata(only.metadata()) == only
    assert VendorFacts(None).metadata() == {}
    meta = VideoMetadata("V1", "PARSE", 60.0, SourceVideo("mavi-resource", "V1.mp4"))
    assert VendorFacts.of(meta) == FACTS
    assert VendorFacts.of(VideoMetadata("V1", "PARSE", None, None)) == VendorFacts(None)


@pytest.mark.parametrize(
    ("seen", "word"),
    [
        (VendorFacts(60.0, "mavi-resource", "V1.mp4"), None),
        (VendorFacts(60.04, "mavi-resource", "V1.mp4"), None),  # within the tolerance
        (VendorFacts(60.1, "mavi-resource", "V1.mp4"), "duration"),
        (VendorFacts(12.0, None, None), "duration"),
        (VendorFacts(60.0, "mavi-resource", "V1-new.mp4"), "stored at"),
        (VendorFacts(60.0, "other", "V1.mp4"), "stored at"),
        (VendorFacts(None, "mavi-resource", "V1.mp4"), None),
    ],
)
def test_the_metadata_endpoint_tells_a_changed_video(seen, word):
    why = facts_changed(FACTS, seen)
    if word is None:
        assert why is None
    else:
        assert word in (why or "")
    assert facts_comparable(FACTS, seen)


def test_facts_without_shared_fields_compare_nothing():
    assert not facts_comparable(VendorFacts(60.0), VendorFacts(None, "b", "x.mp4"))
    assert facts_changed(VendorFacts(60.0), VendorFacts(None, "b", "x.mp4")) is None


def _copy_meta(facts: VendorFacts | None = FACTS, checked: bool = True) -> dict[str, str]:
    validators = Validators(1000, '"a"', None)
    meta = {**validators.metadata(URI), META_VERSION: content_version(validators, facts)}
    if facts is not None:
        meta.update(facts.metadata())
    if checked:
        meta[META_CHECKED] = "2026-12-07T10:00:00+00:00"
    return meta


@pytest.mark.parametrize(
    ("meta", "seen", "consulted", "due", "check"),
    [
        # The query asked, and the answer agrees: cut, unless the periodic recheck is due.
        (_copy_meta(), FACTS, True, False, CopyCheck.USE),
        (_copy_meta(), FACTS, True, True, CopyCheck.RECHECK),
        # It disagrees: stale, whatever the recheck interval says.
        (_copy_meta(), VendorFacts(30.0, "mavi-resource", "V1.mp4"), True, False, CopyCheck.STALE),
        (_copy_meta(), VendorFacts(60.0, "mavi-resource", "V2.mp4"), True, True, CopyCheck.STALE),
        # It could not be told: the validators are asked (one download request for one byte).
        (_copy_meta(), None, True, False, CopyCheck.RECHECK),
        (_copy_meta(None), FACTS, True, False, CopyCheck.RECHECK),  # a copy made before
        (
            _copy_meta(VendorFacts(60.0)),
            VendorFacts(None, "b", "x"),
            True,
            False,
            CopyCheck.RECHECK,
        ),
        # No query to ask about (tools): trusted within the recheck interval, as ever.
        (_copy_meta(), None, False, False, CopyCheck.USE),
        (_copy_meta(None), None, False, True, CopyCheck.RECHECK),
    ],
)
def test_judge_copy(meta, seen, consulted, due, check):
    verdict = judge_copy(meta, seen, consulted=consulted, recheck_due=due)
    assert verdict.check is check
    assert verdict.why


def test_the_version_of_a_copy_with_facts_is_the_one_it_was_made_with():
    validators = Validators(1000, None, None)
    old, new = VendorFacts(60.0), VendorFacts(30.0)
    # Same size, no ETag or Last-Modified: the facts alone tell the two files' clips apart.
    assert content_version(validators, old) != content_version(validators, new)
    assert content_version(validators, None) == validators.version
    meta = {**validators.metadata(URI), **new.metadata()}
    meta[META_VERSION] = content_version(validators, new)
    assert copy_version(meta) == content_version(validators, new)
    # A copy made before the record keeps its validators' version (its clips' names).
    legacy = Validators(1000, None, None).metadata(URI)
    legacy[META_VERSION] = "vsomethingelse"  # e.g. written before a chunked size was known
    assert copy_version(legacy) == validators.version
    assert copy_version({META_SOURCE: URI}) is None
