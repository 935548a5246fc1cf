"""In-memory storage and subscriber for the CLI's functional tests, plus outcome builders."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipsearch.core import messages
from clipsearch.core.naming import result_name
from clipsearch.errors import Reason
from clipsearch.model import (
    Artifact,
    ClipResult,
    Hit,
    Query,
    QueryObject,
    SourceVideo,
    Timings,
)
from clipsearch_cli.ports import ObjectChanged, Pulled, StoredObject

RESULTS = "results"
QUERIES = "queries"


@dataclass
class Version:
    data: bytes
    generation: int
    content_type: str
    metadata: dict[str, str]


class FakeStorage:
    """Objects by (bucket, name), one live generation each; records every call that writes."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Version] = {}
        self._generations = itertools.count(1000)
        self.uploads: list[tuple[str, str, int]] = []
        self.refinalized: list[tuple[str, str, int]] = []
        self.reads = 0
        self.on_finalize: Callable[[StoredObject], None] | None = None

    def put(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str = "image/jpeg",
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        generation = next(self._generations)
        self.objects[(bucket, name)] = Version(data, generation, content_type, dict(metadata or {}))
        return generation

    def _stored(self, bucket: str, name: str, v: Version) -> StoredObject:
        return StoredObject(bucket, name, v.generation, len(v.data), v.content_type, v.metadata)

    def upload(
        self, bucket: str, name: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> int:
        generation = self.put(bucket, name, data, content_type, metadata)
        self.uploads.append((bucket, name, generation))
        if self.on_finalize:
            self.on_finalize(self._stored(bucket, name, self.objects[(bucket, name)]))
        return generation

    def read(self, bucket: str, name: str) -> bytes | None:
        self.reads += 1
        version = self.objects.get((bucket, name))
        return None if version is None else version.data

    def stat(self, bucket: str, name: str) -> StoredObject | None:
        version = self.objects.get((bucket, name))
        return None if version is None else self._stored(bucket, name, version)

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        for (b, name), version in sorted(self.objects.items()):
            if b == bucket and name.startswith(prefix):
                yield self._stored(b, name, version)

    def refinalize(self, obj: StoredObject, metadata: Mapping[str, str]) -> int:
        current = self.objects.get((obj.bucket, obj.name))
        if current is None or current.generation != obj.generation:
            raise ObjectChanged(f"{obj.uri} changed since it was listed")
        generation = self.put(obj.bucket, obj.name, current.data, current.content_type, metadata)
        self.refinalized.append((obj.bucket, obj.name, generation))
        if self.on_finalize:
            self.on_finalize(self.stat(obj.bucket, obj.name))  # type: ignore[arg-type]
        return generation

    def download(self, bucket: str, name: str, path: Path) -> None:
        path.write_bytes(self.objects[(bucket, name)].data)

    def browser_url(self, bucket: str, name: str) -> str:
        return f"http://media.test/{bucket}/{name}"


@dataclass
class FakeSubscriber:
    """Queues of messages per subscription; acked and nacked ids are recorded."""

    queues: dict[str, list[Pulled]] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)
    nacked: list[str] = field(default_factory=list)
    pulls: int = 0

    def add(self, subscription: str, data: bytes, **attributes: str) -> None:
        queue = self.queues.setdefault(subscription, [])
        n = sum(len(q) for q in self.queues.values())
        queue.append(Pulled(subscription, f"ack-{n}", f"msg-{n}", data, attributes))

    def pull(self, subscription: str, max_messages: int, timeout_s: float) -> Sequence[Pulled]:
        self.pulls += 1
        queue = self.queues.get(subscription, [])
        batch, self.queues[subscription] = queue[:max_messages], queue[max_messages:]
        return batch

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        self.acked.extend(ack_ids)

    def nack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        self.nacked.extend(ack_ids)


def outcome(
    obj: StoredObject,
    *,
    clips: Sequence[tuple[float, float, float]] = ((10.0, 20.0, 0.9),),
    error: Reason | None = None,
    prefix: str = "clipsearch/",
) -> dict[str, Any]:
    """The outcome the function would produce for `obj`, built with the function's own code."""
    query_object = QueryObject(
        bucket=obj.bucket,
        name=obj.name,
        generation=obj.generation,
        size=obj.size,
        content_type=obj.content_type,
        metadata=dict(obj.metadata),
        event_id="evt-1",
        event_time="",
    )
    uri = f"gs://{RESULTS}/{result_name(prefix, obj.bucket, obj.name, obj.generation)}"
    if error is not None:
        return messages.error_message(
            query_object, None, error, "bad", Timings(), uri, "2026-01-01T00:00:00.000Z"
        )
    query = Query(query_object, obj.metadata.get("video_no", "V1"), "p", "default", "jpeg")
    source = SourceVideo("mavi-resource", "V1.mp4")
    results = [
        ClipResult(
            rank=i + 1,
            hit=Hit(start, end, score, source),
            source=source,
            artifact=Artifact(RESULTS, f"{prefix}videos/mavi-resource/V1.mp4", "copy", 5, False),
        )
        for i, (start, end, score) in enumerate(clips)
    ]
    return messages.success_message(query, results, Timings(), uri, "2026-01-01T00:00:00.000Z")


def store_outcome(storage: FakeStorage, message: dict[str, Any]) -> None:
    """Write the outcome where the function writes it (result JSON first)."""
    bucket, name = message["result_uri"].removeprefix("gs://").split("/", 1)
    storage.put(bucket, name, messages.encode(message), "application/json")
