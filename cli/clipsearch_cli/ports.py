"""The two systems the CLI talks to, as small interfaces: real adapters and test fakes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StoredObject:
    """One object version as listed: enough to validate it and to re-finalize it safely."""

    bucket: str
    name: str
    generation: int
    size: int
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class Pulled:
    """A message as pulled from a subscription; `ack_id` acknowledges it there."""

    subscription: str
    ack_id: str
    message_id: str
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)


class ObjectChanged(Exception):
    """The object is not at the generation we saw (replaced or deleted meanwhile)."""


class Storage(Protocol):
    def upload(
        self, bucket: str, name: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> int:
        """Upload and return the new object's generation."""

    def read(self, bucket: str, name: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    def stat(self, bucket: str, name: str) -> StoredObject | None: ...

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]: ...

    def refinalize(self, obj: StoredObject, metadata: Mapping[str, str]) -> int:
        """Rewrite the object onto itself (new generation, finalize event) if still at
        `obj.generation`, with `metadata` as its custom metadata; raise ObjectChanged if not."""

    def download(self, bucket: str, name: str, path: Path) -> None: ...

    def browser_url(self, bucket: str, name: str) -> str:
        """A URL a browser can load the object from (no auth header possible)."""


class Subscriber(Protocol):
    def pull(self, subscription: str, max_messages: int, timeout_s: float) -> Sequence[Pulled]:
        """Up to `max_messages`; an empty list when none arrived within `timeout_s`."""

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None: ...

    def nack(self, subscription: str, ack_ids: Sequence[str]) -> None: ...
