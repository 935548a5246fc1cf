"""A stand-in for the memories.ai API: the project's only fake, honouring the vendor contract."""

from clipsearch_dev.standin.index import Clip, VideoIndex, image_features, index_video, search
from clipsearch_dev.standin.server import Knobs, StandinServer, Stats, VideoMeta

__all__ = [
    "Clip",
    "Knobs",
    "StandinServer",
    "Stats",
    "VideoIndex",
    "VideoMeta",
    "image_features",
    "index_video",
    "search",
]
