"""Tiny real images of every accepted kind, made with Pillow at test time."""

from __future__ import annotations

import io

from PIL import Image

FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"}


def image_bytes(kind: str = "jpeg", size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, FORMATS[kind])
    return buffer.getvalue()
