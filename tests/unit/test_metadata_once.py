"""One get_metadata call per query, whoever asks: its answer or its failure kept, counted."""

from __future__ import annotations

import pytest

from clipsearch.errors import PermanentError, TransientError
from clipsearch.fetch import MetadataOnce, resolve_sources
from clipsearch.model import Hit, Query, QueryObject, SourceVideo, VideoMetadata
from clipsearch.spend import VendorSpend
from tests.fakes import FakeSearchApi

SRC = SourceVideo("mavi-resource", "V1.mp4")
QUERY = Query(QueryObject("qb", "q.jpg", 1, 10, "image/jpeg", {}, "e", ""), "V1", "p", "u", "jpeg")


def test_the_answer_is_asked_once_and_counted_once():
    api = FakeSearchApi([])
    api.metadata["V1"] = VideoMetadata("V1", "PARSE", 60.0, SRC)
    spend = VendorSpend()
    lookup = MetadataOnce(api, QUERY, spend)
    # Locating a hit without a location, then checking the copy: one call between them.
    resolved = resolve_sources(
        QUERY, [Hit(1.0, 2.0, 0.9, None)], api, frozenset({SRC.bucket}), 1e12, lookup
    )
    assert resolved == [(SRC, None)]
    assert lookup(1e12).duration == 60.0
    assert api.metadata_calls == 1
    assert spend.as_log()["vendor_metadata_calls"] == 1
    assert spend.as_log()["vendor_requests"] == 0  # not a download request


@pytest.mark.parametrize("error", [TransientError("503"), PermanentError])
def test_a_failure_is_kept_for_the_event(error):
    api = FakeSearchApi([])
    spend = VendorSpend()
    lookup = MetadataOnce(api, QUERY, spend)
    if error is PermanentError:  # the fake refuses an unknown video with 0001
        expected: type[Exception] = PermanentError
    else:
        api.metadata = _Failing(error)  # type: ignore[assignment]
        expected = TransientError
    for _ in range(2):
        with pytest.raises(expected):
            lookup(1e12)
    assert api.metadata_calls == 1
    assert spend.metadata == 1


class _Failing(dict):  # type: ignore[type-arg]
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self._error = error

    def __contains__(self, key: object) -> bool:
        raise self._error


def test_started_early_it_is_still_one_call_counted_once():
    api = FakeSearchApi([])
    api.metadata["V1"] = VideoMetadata("V1", "PARSE", 60.0, SRC)
    spend = VendorSpend()
    lookup = MetadataOnce(api, QUERY, spend)
    lookup.start(1e12)
    lookup.start(1e12)  # a second start is a no-op
    assert spend.metadata == 1  # counted when started, before anyone waits for it
    assert lookup(1e12).duration == 60.0  # waits for the call begun in the background
    assert lookup(1e12).duration == 60.0
    assert api.metadata_calls == 1
    assert spend.metadata == 1
