from __future__ import annotations

import pytest

from clipsearch.core.naming import (
    MAX_NAME_BYTES,
    clip_name,
    fit_name,
    index_name,
    is_safe_blob_name,
    record_name,
    result_name,
    video_copy_name,
)
from clipsearch.errors import ConfigError
from clipsearch.settings import SETTINGS, FetchMode, FetchSource, Settings

BASE = {
    "CLIPSEARCH_API_KEY": "sk-mavi-unit-secret",
    "CLIPSEARCH_RESULTS_BUCKET": "results",
    "CLIPSEARCH_QUERY_BUCKET": "queries",
    "CLIPSEARCH_RESULTS_TOPIC": "projects/p/topics/results",
}


def test_defaults():
    s = Settings.from_env(BASE)
    assert s.api_base_url == "https://api.memories.ai/serve/api/v1"
    assert s.download_base_url == s.api_base_url
    assert s.errors_topic == s.results_topic
    assert s.fetch_mode is FetchMode.CLIP
    assert s.clip_fallback is FetchMode.COPY
    assert s.clip_exact is False
    assert s.fetch_source is FetchSource.AUTO
    assert s.source_buckets == frozenset({"mavi-resource"})
    assert s.max_image_bytes == 20 * 1024 * 1024
    assert "sk-mavi-unit-secret" not in repr(s)


def test_every_setting_is_read():
    names = {s.env for s in SETTINGS}
    assert all(n.startswith("CLIPSEARCH_") for n in names)
    assert len(names) == len(SETTINGS)


@pytest.mark.parametrize(
    "override",
    [
        {"CLIPSEARCH_API_KEY": ""},
        {"CLIPSEARCH_RESULTS_TOPIC": "results"},
        {"CLIPSEARCH_FETCH_MODE": "teleport"},
        {"CLIPSEARCH_CLIP_FALLBACK": "clip"},
        {"CLIPSEARCH_CLIP_EXACT": "maybe"},
        {"CLIPSEARCH_MAX_CLIP_S": "0"},
        {"CLIPSEARCH_RETRY_ATTEMPTS": "0"},
        {"CLIPSEARCH_READ_TIMEOUT_S": "soon"},
        {"CLIPSEARCH_MAX_IMAGE_BYTES": str(21 * 1024 * 1024)},
        # outputs in the query bucket with every object triggering: a loop
        {"CLIPSEARCH_RESULTS_BUCKET": "queries"},
        {"CLIPSEARCH_RESULTS_BUCKET": "queries", "CLIPSEARCH_INCLUDE_PREFIXES": "a/,clipsearch/x"},
        {
            "CLIPSEARCH_RESULTS_BUCKET": "queries",
            "CLIPSEARCH_INCLUDE_PREFIXES": "",
            "CLIPSEARCH_RESULTS_PREFIX": "out/",
        },
        {
            "CLIPSEARCH_RESULTS_BUCKET": "queries",
            "CLIPSEARCH_INCLUDE_PREFIXES": "o",
            "CLIPSEARCH_RESULTS_PREFIX": "out/",
        },
    ],
)
def test_refused_configurations(override):
    with pytest.raises(ConfigError):
        Settings.from_env({**BASE, **override})


def test_shared_bucket_with_disjoint_prefixes_is_allowed_and_outputs_are_out_of_scope():
    s = Settings.from_env(
        {**BASE, "CLIPSEARCH_RESULTS_BUCKET": "queries", "CLIPSEARCH_INCLUDE_PREFIXES": "in/"}
    )
    assert s.in_scope("queries", "in/a.jpg")
    assert not s.in_scope("queries", "clipsearch/results/x.json")
    assert not s.in_scope("queries", "other/a.jpg")


def test_scope_prefixes():
    s = Settings.from_env(
        {
            **BASE,
            "CLIPSEARCH_INCLUDE_PREFIXES": "a/, b/",
            "CLIPSEARCH_EXCLUDE_PREFIXES": "a/private/",
        }
    )
    assert s.in_scope("queries", "a/x.jpg")
    assert s.in_scope("queries", "b/x.jpg")
    assert not s.in_scope("queries", "a/private/x.jpg")
    assert not s.in_scope("queries", "c/x.jpg")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("VI1.mp4", True),
        ("dir/VI1.mp4", True),
        ("../etc/passwd", False),
        ("a/../../b", False),
        ("/abs.mp4", False),
        ("a//b", False),
        ("a/./b", False),
        ("", False),
        ("x" * 1025, False),
        ("bad\nname", False),
    ],
)
def test_blob_names(name, safe):
    assert is_safe_blob_name(name) is safe


def test_output_names_are_deterministic():
    assert video_copy_name("cs/", "mavi-resource", "V1.mp4") == "cs/videos/mavi-resource/V1.mp4"
    assert result_name("cs/", "q", "a/b.jpg", 9) == "cs/results/q/a/b.jpg/9.json"


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity"])
@pytest.mark.parametrize(
    "name", ["CLIPSEARCH_FUNCTION_TIMEOUT_S", "CLIPSEARCH_MAX_EVENT_AGE_S", "CLIPSEARCH_MAX_CLIP_S"]
)
def test_non_finite_numbers_are_refused_naming_the_variable(name, raw):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE, name: raw})


def test_max_attempts_defaults_to_three_and_must_be_positive():
    assert Settings.from_env(BASE).max_attempts == 3
    with pytest.raises(ConfigError, match="CLIPSEARCH_MAX_ATTEMPTS"):
        Settings.from_env({**BASE, "CLIPSEARCH_MAX_ATTEMPTS": "0"})


@pytest.mark.parametrize("raw", ["LOUD", "verbose", "10"])
def test_an_unknown_log_level_is_refused_naming_the_variable(raw):
    with pytest.raises(ConfigError, match="CLIPSEARCH_LOG_LEVEL must be one of"):
        Settings.from_env({**BASE, "CLIPSEARCH_LOG_LEVEL": raw})


def test_log_level_names_are_taken_in_any_case():
    assert Settings.from_env({**BASE, "CLIPSEARCH_LOG_LEVEL": "warning"}).log_level == "WARNING"


LONG = "é" * 600  # 1,200 bytes in UTF-8: a legal object name can be 1,024 bytes by itself


@pytest.mark.parametrize(
    "build",
    [
        lambda o: result_name("clipsearch/", "queries", o, 1_700_000_000_000_000),
        lambda o: record_name("clipsearch/records/", f"queries/{o}#1700000000000000"),
        lambda o: video_copy_name("clipsearch/", "mavi-resource", o),
        lambda o: clip_name("clipsearch/", "mavi-resource", o, "1700000000000000", 1, 2, True),
        lambda o: index_name("clipsearch/", f"gs://mavi-resource/{o}#1700000000000000"),
    ],
)
def test_names_built_from_foreign_names_fit_the_storage_limit(build):
    name = build(LONG)
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name.startswith("clipsearch/")  # still under our prefix: never a query object
    assert build(LONG) == name  # deterministic: a repeat reuses it
    assert build(LONG[:-1] + "x") != name  # distinct names stay distinct
    assert build("short.jpg") == fit_name(build("short.jpg"))  # short names are unchanged
    name.encode().decode()  # whole characters only


def test_a_shortened_name_keeps_its_last_segment():
    name = result_name("cs/", "q", LONG, 9)
    assert name.endswith("/9.json")
    clip = clip_name("cs/", "b", LONG, "7", 1.5, 2.25, False)
    assert clip.endswith("/1.500-2.250.mp4")
    assert fit_name("a/" + "x" * 2000).startswith("a/")
    assert len(fit_name("a/" + "x" * 2000).encode()) <= MAX_NAME_BYTES
