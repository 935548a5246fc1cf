"""Pub/Sub: one outcome message per query."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type

from clipsearch.errors import TransientError
from clipsearch.ports import Publisher

if TYPE_CHECKING:
    from google.cloud import pubsub_v1


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


def new_pubsub_publisher() -> PubSubPublisher:
    """The Pub/Sub client library costs more to import than everything else the function
    needs before its first search, so it is imported here, when a publisher is built."""
    from google.cloud import pubsub_v1  # noqa: PLC0415

    return PubSubPublisher(pubsub_v1.PublisherClient())


class LazyPublisher:
    """The Pub/Sub publisher, built once: by `prepare()` (the first event's warm-up, while its
    search is in flight) or else by the first publish, which waits for a build under way.

    A build that failed raises its own exception at the publish that meets it, and the next
    publish builds again, as a service whose constructor failed is built again by the next
    event.
    """

    def __init__(self, build: Callable[[], Publisher] = new_pubsub_publisher) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._ready: Future[Publisher] | None = None

    def prepare(self) -> None:
        """Build now, on this thread, unless a build was started; a failure waits for the
        publish."""
        ready, mine = self._claim()
        if mine:
            self._run(ready)

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        return self._publisher().publish(topic, data, attributes)

    def _claim(self) -> tuple[Future[Publisher], bool]:
        """The build to wait for, and whether the caller must run it."""
        with self._lock:
            if self._ready is None:
                self._ready = Future()
                return self._ready, True
            return self._ready, False

    def _run(self, ready: Future[Publisher]) -> None:
        try:
            ready.set_result(self._build())
        except BaseException as error:  # handed to the publish that meets it
            ready.set_exception(error)

    def _publisher(self) -> Publisher:
        ready, mine = self._claim()
        if mine:
            self._run(ready)
        try:
            return ready.result()
        except BaseException:
            with self._lock:
                if self._ready is ready:
                    self._ready = None
            raise
