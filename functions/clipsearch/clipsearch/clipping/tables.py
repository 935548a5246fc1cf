"""The movie's tables under the names the engine imports: the model and its parse live in
`movie.py`, the synthetic moov in `moov.py`, the sidecar form in `sidecar.py`."""

from clipsearch.clipping.moov import HEAD_SAMPLES
from clipsearch.clipping.movie import Movie, Track, parse_movie
from clipsearch.clipping.samples import Runs, Unsupported
from clipsearch.clipping.sidecar import check_movie, dump_movie, load_movie

__all__ = [
    "HEAD_SAMPLES",
    "Movie",
    "Runs",
    "Track",
    "Unsupported",
    "check_movie",
    "dump_movie",
    "load_movie",
    "parse_movie",
]
