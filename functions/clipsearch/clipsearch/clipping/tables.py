"""The movie's tables under the names the engine imports: the model and its parse live in
`movie.py`, the synthetic moov in `moov.py`, the sidecar form in `sidecar.py`."""

from clipsearch.clipping.moov import HEAD_SAMPLES
from clipsearch.clipping.movie import Movie, Track, parse_movie
from clipsearch.clipping.samples import Unsupported

__all__ = ["HEAD_SAMPLES", "Movie", "Track", "Unsupported", "parse_movie"]
