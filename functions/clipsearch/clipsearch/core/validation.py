"""The API's own input rules, enforced before we pay for a search."""

from __future__ import annotations

import struct
import unicodedata
from collections.abc import Mapping

from clipsearch.errors import PermanentError, Reason
from clipsearch.model import Query, QueryObject

# Extension (lower case, no dot) -> canonical image kind. The API's own list.
EXTENSION_KINDS = {
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "png": "png",
    "gif": "gif",
    "bmp": "bmp",
    "webp": "webp",
}
DEFAULT_UNIQUE_ID = "default"
MAX_ID_CHARS = 128
# QueryObject.size when the event does not carry one: the read decides (check_image_bytes).
SIZE_UNKNOWN = -1


METADATA_PREFIX = "x-goog-meta-"


def metadata_key(key: str) -> str:
    """The key as we compare it: lower case, without gsutil's `x-goog-meta-` header prefix.

    `gsutil -h x-goog-meta-video_no:V` stores `video_no`, but `gcloud storage cp
    --custom-metadata=x-goog-meta-video_no=V` stores the prefix as part of the key, and some
    tools change the case of header names.
    """
    lowered = key.strip().lower()
    return lowered.removeprefix(METADATA_PREFIX)


def metadata_value(metadata: Mapping[str, str], key: str) -> str | None:
    """The value of custom metadata `key` however the uploading tool spelled the key.

    An exact `key` wins over a respelling of it, so the answer does not depend on key order.
    """
    if key in metadata:
        return metadata[key]
    for candidate, value in metadata.items():
        if metadata_key(candidate) == key:
            return value
    return None


def _check_text(key: str, value: str, limit: int) -> str:
    value = value.strip()
    if len(value) > limit:
        raise PermanentError(
            Reason.INVALID_METADATA, f"metadata {key!r} is {len(value)} characters; max {limit}"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise PermanentError(
            Reason.INVALID_METADATA, f"metadata {key!r} contains control characters"
        )
    return value


def validate_query(obj: QueryObject, *, max_image_bytes: int, max_metadata_chars: int) -> Query:
    """Check everything the event alone can tell, so that no bad query costs a read or a search."""
    raw_video_no = metadata_value(obj.metadata, "video_no")
    if raw_video_no is None or not raw_video_no.strip():
        raise PermanentError(Reason.MISSING_VIDEO_NO, "custom metadata 'video_no' is required")
    video_no = _check_text("video_no", raw_video_no, MAX_ID_CHARS)
    raw_prompt = metadata_value(obj.metadata, "prompt")
    if raw_prompt is None or not raw_prompt.strip():
        raise PermanentError(
            Reason.MISSING_PROMPT,
            "custom metadata 'prompt' is required and cannot be empty",
        )
    prompt = _check_text("prompt", raw_prompt, max_metadata_chars)
    raw_unique = metadata_value(obj.metadata, "unique_id")
    unique_id = DEFAULT_UNIQUE_ID
    if raw_unique is not None and raw_unique.strip():
        unique_id = _check_text("unique_id", raw_unique, MAX_ID_CHARS)

    extension = obj.name.rsplit(".", 1)[-1].lower() if "." in obj.name.rsplit("/", 1)[-1] else ""
    kind = EXTENSION_KINDS.get(extension)
    if kind is None:
        raise PermanentError(
            Reason.UNSUPPORTED_EXTENSION,
            f"extension {extension or '(none)'!r} is not one of .jpg .jpeg .png .gif .bmp .webp",
        )
    if not obj.content_type.lower().startswith("image/"):
        raise PermanentError(
            Reason.UNSUPPORTED_CONTENT_TYPE,
            f"content type {obj.content_type or '(none)'!r} does not start with image/",
        )
    if obj.size != SIZE_UNKNOWN:
        check_size(obj.size, max_image_bytes)
    return Query(object=obj, video_no=video_no, prompt=prompt, unique_id=unique_id, image_kind=kind)


def check_size(size: int, max_image_bytes: int) -> None:
    if size <= 0:
        raise PermanentError(Reason.EMPTY_IMAGE, "the image is empty (0 bytes)")
    if size > max_image_bytes:
        raise PermanentError(
            Reason.IMAGE_TOO_LARGE, f"the image is {size} bytes; max {max_image_bytes}"
        )


def sniff_image_kind(data: bytes) -> str | None:
    """The image kind its magic bytes declare, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data.startswith(b"BM") and len(data) >= 14:
        return "bmp"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _looks_complete(kind: str, data: bytes) -> bool:
    """Cheap end-of-file checks that catch an upload cut short."""
    if kind == "jpeg":
        return b"\xff\xd9" in data[-1024:]
    if kind == "png":
        return b"IEND" in data[-64:]
    if kind == "gif":
        return b"\x3b" in data[-16:]
    if kind == "bmp":
        (declared,) = struct.unpack_from("<I", data, 2)
        return bool(declared <= len(data))
    if kind == "webp":
        (declared,) = struct.unpack_from("<I", data, 4)
        return bool(declared + 8 <= len(data))
    return True


def check_image_bytes(query: Query, data: bytes, max_image_bytes: int) -> None:
    """The bytes must really be an image of the kind the name claims, and whole."""
    check_size(len(data), max_image_bytes)
    kind = sniff_image_kind(data)
    if kind is None:
        raise PermanentError(Reason.NOT_AN_IMAGE, "the bytes are not a JPEG/PNG/GIF/BMP/WEBP image")
    if kind != query.image_kind:
        raise PermanentError(
            Reason.IMAGE_TYPE_MISMATCH,
            f"the name says {query.image_kind} but the bytes are {kind}",
        )
    if not _looks_complete(kind, data):
        raise PermanentError(Reason.TRUNCATED_IMAGE, f"the {kind} image is truncated")
