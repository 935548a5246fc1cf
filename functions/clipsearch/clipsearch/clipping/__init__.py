"""Clip cutting: an MP4 holding [start, end] of a remote video, read by byte ranges."""

from clipsearch.clipping.cutter import ClipInfo, ClipSource, cut_clip
from clipsearch.clipping.errors import ClipReason, ClipUnavailable
from clipsearch.clipping.index import IndexCache, SourceIndex
from clipsearch.clipping.poster import poster_frame
from clipsearch.clipping.sources import FileRangeSource, RangeSource

__all__ = [
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
]
