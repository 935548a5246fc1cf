"""Pub/Sub: one outcome message per query."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from clipsearch.errors import TransientError


class PubSubPublisher:
    def __init__(self, client: pubsub_v1.PublisherClient, timeout_s: float = 30.0) -> None:
        self._client = client
        self._timeout_s = timeout_s

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        try:
            message_id: str = self._client.publish(topic, data, **attributes).result(
                timeout=self._timeout_s
            )
        except (gexc.GoogleAPIError, FutureTimeout) as error:
            raise TransientError(f"publishing to {topic}: {type(error).__name__}") from None
        return message_id
