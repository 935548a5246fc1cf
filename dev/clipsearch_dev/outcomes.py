"""Reads outcome messages back, as a subscriber would, keyed by the query they answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1


@dataclass(frozen=True)
class Received:
    subscription: str
    message_id: str
    attributes: dict[str, str]
    body: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        query = self.body["query"]
        return (query["bucket"], query["object"], str(query["generation"]))


class OutcomeCollector:
    """Pulls every message from the given subscriptions and keeps them all (duplicates too)."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient, subscriptions: Iterable[str]):
        self._subscriber = subscriber
        self._subscriptions = list(subscriptions)
        self._lock = threading.Lock()
        self.received: list[Received] = []

    def poll(self) -> int:
        got = 0
        for subscription in self._subscriptions:
            try:
                response = self._subscriber.pull(
                    request={"subscription": subscription, "max_messages": 100}, timeout=5
                )
            except gexc.DeadlineExceeded:
                continue
            ack_ids = []
            for item in response.received_messages:
                message = item.message
                with self._lock:
                    self.received.append(
                        Received(
                            subscription,
                            message.message_id,
                            dict(message.attributes),
                            json.loads(message.data),
                        )
                    )
                ack_ids.append(item.ack_id)
                got += 1
            if ack_ids:
                self._subscriber.acknowledge(
                    request={"subscription": subscription, "ack_ids": ack_ids}
                )
        return got

    def for_key(self, key: tuple[str, str, str]) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.key == key]

    def wait_for(
        self, keys: Iterable[tuple[str, str, str]], timeout_s: float = 60.0
    ) -> dict[tuple[str, str, str], Received]:
        """The first outcome of each key; raises TimeoutError naming the missing ones."""
        wanted = set(keys)
        deadline = time.monotonic() + timeout_s
        while True:
            found = {k: self.for_key(k)[0] for k in wanted if self.for_key(k)}
            if len(found) == len(wanted):
                return found
            if time.monotonic() > deadline:
                missing = sorted(wanted - set(found))
                raise TimeoutError(f"no outcome within {timeout_s}s for {missing}")
            if not self.poll():
                time.sleep(0.1)
