"""The real functions-framework app, driven in-process, around in-memory fakes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from clipsearch import entrypoint, logs
from clipsearch.bootstrap import build_fetcher
from clipsearch.contract import from_avro_json, validate_message
from clipsearch.idempotency import Idempotency
from clipsearch.service import ClipSearchService
from clipsearch.settings import Settings
from tests.fakes import FakePublisher, FakeSearchApi, FakeStorage, FileSources, MemoryRecordStore

MAIN = Path(__file__).parents[2] / "functions" / "clipsearch" / "main.py"
API_KEY = "sk-mavi-functional-SECRET-key"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ENV = {
    "CLIPSEARCH_API_KEY": API_KEY,
    "CLIPSEARCH_RESULTS_BUCKET": "results",
    "CLIPSEARCH_QUERY_BUCKET": "queries",
    "CLIPSEARCH_RESULTS_TOPIC": "projects/p/topics/results",
    "CLIPSEARCH_ERRORS_TOPIC": "projects/p/topics/errors",
    "CLIPSEARCH_FETCH_MODE": "copy",
}


@dataclass
class Harness:
    client: Any
    storage: FakeStorage
    api: FakeSearchApi
    publisher: FakePublisher
    log: io.StringIO
    settings: Settings
    records: MemoryRecordStore

    def deliver(
        self,
        name: str,
        data: bytes | None,
        metadata: dict[str, str] | None = None,
        *,
        content_type: str = "image/jpeg",
        generation: int = 42,
        event_type: str = "google.cloud.storage.object.v1.finalized",
        size: int | None = None,
        bucket: str = "queries",
        store: bool = True,
        event_time: str | None = None,
    ) -> Any:
        if data is not None and store:
            self.storage.put(bucket, name, data, generation)
        resource = {
            "bucket": bucket,
            "name": name,
            "generation": str(generation),
            "size": str(size if size is not None else len(data or b"")),
            "contentType": content_type,
            "metadata": metadata
            if metadata is not None
            else {"video_no": "V1", "prompt": "red shirt"},
        }
        event = CloudEvent(
            {
                "id": f"ev-{name}-{generation}",
                "type": event_type,
                "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
                "traceparent": TRACEPARENT,
                **({"time": event_time} if event_time else {}),
            },
            resource,
        )
        headers, body = to_binary(event)
        return self.client.post("/", headers=headers, data=body)

    def messages(self, topic: str = "results") -> list[dict[str, Any]]:
        """Published bodies, checked against the topic's schema, then decoded to plain JSON."""
        decoded = []
        for m in self.publisher.messages:
            if m.topic == f"projects/p/topics/{topic}":
                wire = json.loads(m.data)
                validate_message(wire)
                decoded.append(from_avro_json(wire))
        return decoded

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines() if line]


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    app = functions_framework.create_app(
        target="on_object_finalized", source=str(MAIN), signature_type="cloudevent"
    )

    def build(
        api: FakeSearchApi,
        gcs: FileSources | None = None,
        download: FileSources | None = None,
        records: MemoryRecordStore | None = None,
        **env: str,
    ) -> Harness:
        records = records or MemoryRecordStore()
        gcs = gcs or FileSources()
        download = download or FileSources()
        settings = Settings.from_env({**ENV, **env})
        log = io.StringIO()
        logger = logs.configure("DEBUG", secrets=[API_KEY], stream=log)
        storage = FakeStorage(settings.results_bucket)
        publisher = FakePublisher()
        fetcher = build_fetcher(
            settings, api=api, results=storage, gcs=gcs, download=download, logger=logger
        )
        service = ClipSearchService(
            settings,
            images=storage,
            api=api,
            fetcher=fetcher,
            results=storage,
            publisher=publisher,
            idempotency=Idempotency(records, lease_s=settings.function_timeout_s),
            logger=logger,
        )
        entrypoint.SERVICE.install(service)
        return Harness(app.test_client(), storage, api, publisher, log, settings, records)

    yield build
    entrypoint.SERVICE.reset()
    logging.getLogger().handlers = [
        h for h in logging.getLogger().handlers if not getattr(h, "_clipsearch", False)
    ]
