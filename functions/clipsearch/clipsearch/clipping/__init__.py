"""Clip cutting: an MP4 holding [start, end] of a remote video, read by byte ranges.

The cutting half (the cutter and posters, on PyAV and FFmpeg) loads on first use: the function
imports this package at start-up for its light parts and cuts only after its first search
returns, so the composition root loads `ENGINE_MODULES` while that search is in flight. It
calls `tune_process` once, before the first cut (it does not import PyAV).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.index import IndexCache, SourceIndex
from clipsearch.clipping.process import tune_process
from clipsearch.clipping.sources import FileRangeSource, RangeSource

if TYPE_CHECKING:
    from clipsearch.clipping.cutter import ClipInfo, ClipSource, cut_clip
    from clipsearch.clipping.poster import poster_frame

_LOADED_ON_USE = {
    "ClipInfo": "clipsearch.clipping.cutter",
    "ClipSource": "clipsearch.clipping.cutter",
    "cut_clip": "clipsearch.clipping.cutter",
    "poster_frame": "clipsearch.clipping.poster",
}
ENGINE_MODULES = tuple(sorted(set(_LOADED_ON_USE.values())))


def __getattr__(name: str) -> Any:
    module = _LOADED_ON_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ENGINE_MODULES",
    "ClipInfo",
    "ClipReason",
    "ClipSource",
    "ClipUnavailable",
    "FileRangeSource",
    "IndexCache",
    "RangeSource",
    "SourceIndex",
    "cut_clip",
    "poster_frame",
    "tune_process",
]
