"""Pub/Sub: one outcome message per query."""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import pubsub_v1

from clipsearch.errors import TransientError


class PubSubPublisher:
    def __init__(self, client: pubsub_v1.PublisherClient, timeout_s: float = 30.0) -> None:
        self._client = client
        self._timeout_s = timeout_s
        # The client retries a publish on its own; it must give up well before we stop
        # waiting, or a copy could still land after we reported failure and the redelivery
        # publishes again (a duplicate outcome).
        self._retry = Retry(
            initial=0.1,
            maximum=2.0,
            multiplier=2.0,
            timeout=timeout_s * 0.5,
            predicate=if_exception_type(
                gexc.Aborted,
                gexc.Cancelled,
                gexc.DeadlineExceeded,
                gexc.InternalServerError,
                gexc.ResourceExhausted,
                gexc.ServiceUnavailable,
                gexc.Unknown,
            ),
        )

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        try:
            future = self._client.publish(
                topic, data, retry=self._retry, timeout=self._timeout_s * 0.25, **attributes
            )
            message_id: str = future.result(timeout=self._timeout_s)
        except (gexc.GoogleAPIError, FutureTimeout) as error:
            raise TransientError(f"publishing to {topic}: {type(error).__name__}") from None
        return message_id
