"""The composition root caps FFmpeg's allocations for the whole process in clip mode: the
backstop behind the engine's own bounds checks holds for every cut, whoever opens it."""

from __future__ import annotations

import json

import pytest

from tests.fresh import run_fresh
from tests.unit.test_settings_and_naming import BASE

# Builds the service as the function does, then asks the libavutil this process maps
# (the one PyAV links to) for one block just over the cap and one just under it.
PROBE = """
import ctypes, json, sys
from unittest import mock
from google.cloud import storage
from clipsearch.bootstrap import build_service
from clipsearch.settings import Settings

build_service(Settings.from_env(json.loads(sys.argv[1])),
              storage_client=storage.Client.create_anonymous_client(),
              publisher=mock.Mock(), api=mock.Mock(), download=mock.Mock(), records=mock.Mock())
import av  # noqa: F401  (maps libavutil when the tuning did not)
[path] = {line.split()[-1] for line in open("/proc/self/maps") if "libavutil" in line}
lib = ctypes.CDLL(path)
lib.av_malloc.restype = ctypes.c_void_p
lib.av_malloc.argtypes = [ctypes.c_size_t]
lib.av_free.argtypes = [ctypes.c_void_p]
granted = {}
for name, size in (("over", 97 * 1024 * 1024), ("under", 95 * 1024 * 1024)):
    block = lib.av_malloc(size)
    granted[name] = block is not None
    lib.av_free(block)
print(json.dumps(granted))
"""


@pytest.mark.parametrize(("mode", "over_granted"), [("clip", False), ("copy", True)])
def test_clip_mode_caps_ffmpeg_allocations_for_the_process(mode: str, over_granted: bool):
    env = {**BASE, "CLIPSEARCH_FETCH_MODE": mode}
    assert run_fresh(PROBE, json.dumps(env)) == {"over": over_granted, "under": True}
