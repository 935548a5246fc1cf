from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.clipping.helpers import Frame, decode_all, make_source


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clipping-media")


@pytest.fixture(scope="session")
def sources(media_dir: Path) -> dict[str, Path]:
    """One 60 s source per layout (H.264, interleaved AAC), plus HEVC and video-only ones."""
    return {
        "faststart": make_source(media_dir, "fs", layout="faststart"),
        "moov_at_end": make_source(media_dir, "end", layout="moov_at_end"),
        "fragmented": make_source(media_dir, "frag", layout="fragmented"),
        "video_only": make_source(media_dir, "vo", layout="faststart", audio=False),
        "hvc1": make_source(
            media_dir, "hvc1", layout="moov_at_end", seconds=20, codec="hevc", codec_tag="hvc1"
        ),
        "hev1": make_source(media_dir, "hev1", layout="faststart", seconds=20, codec="hevc"),
    }


@pytest.fixture(scope="session")
def source_frames(sources: dict[str, Path]) -> dict[str, list[Frame]]:
    return {name: decode_all(path) for name, path in sources.items()}
