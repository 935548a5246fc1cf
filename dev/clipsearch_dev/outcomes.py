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

from clipsearch.contract import from_avro_json


@dataclass(frozen=True)
class Received:
    subscription: str
    message_id: str
    attributes: dict[str, str]
    body: dict[str, Any]  # the message decoded to plain JSON
    wire: dict[str, Any]  # as published: Avro's JSON encoding (nullable values wrapped)
    arrived_at: float = 0.0  # time.monotonic() when pulled: latency from this process's clock

    @property
    def key(self) -> tuple[str, str, str]:
        query = self.body["query"]
        return (query["bucket"], query["object"], str(query["generation"]))


class OutcomeCollector:
    """Pulls every message from the given subscriptions and keeps them all (duplicates too).

    One long-polling pull loop per subscription: a message is seen as soon as the emulator has
    it, so latency figures measure the service rather than a poll interval. (Streaming pull
    is no good here: the emulator keeps feeding a cancelled stream, so a later reader starves.)
    """

    def __init__(self, subscriptions: Iterable[str], *, pull_timeout_s: float = 2.0):
        self._subscriptions = list(subscriptions)
        self._pull_timeout_s = pull_timeout_s
        self._arrived = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.received: list[Received] = []

    def start(self) -> OutcomeCollector:
        if not self._threads:
            self._stopping.clear()
            subscriber = pubsub_v1.SubscriberClient()
            for subscription in self._subscriptions:
                thread = threading.Thread(
                    target=self._pull_loop, args=(subscriber, subscription), daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return self

    def _pull_loop(self, subscriber: pubsub_v1.SubscriberClient, subscription: str) -> None:
        while not self._stopping.is_set():
            try:
                response = subscriber.pull(
                    request={"subscription": subscription, "max_messages": 100},
                    timeout=self._pull_timeout_s,
                    retry=None,
                )
            except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
                continue
            except gexc.GoogleAPIError:
                if self._stopping.is_set():
                    return
                time.sleep(0.2)
                continue
            if not response.received_messages:
                continue
            batch = []
            now = time.monotonic()
            for item in response.received_messages:
                wire = json.loads(item.message.data)
                batch.append(
                    Received(
                        subscription,
                        item.message.message_id,
                        dict(item.message.attributes),
                        from_avro_json(wire),
                        wire,
                        now,
                    )
                )
            subscriber.acknowledge(
                request={
                    "subscription": subscription,
                    "ack_ids": [item.ack_id for item in response.received_messages],
                }
            )
            with self._arrived:
                self.received.extend(batch)
                self._arrived.notify_all()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=self._pull_timeout_s + 5)
        self._threads.clear()

    def __enter__(self) -> OutcomeCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settle(self, seconds: float) -> None:
        """Keep listening a while longer: to show that nothing more (no duplicate) arrives."""
        self.start()
        time.sleep(seconds)

    def for_key(self, key: tuple[str, str, str]) -> list[Received]:
        with self._arrived:
            return [r for r in self.received if r.key == key]

    def wait_for(
        self, keys: Iterable[tuple[str, str, str]], timeout_s: float = 60.0
    ) -> dict[tuple[str, str, str], Received]:
        """The first outcome of each key; raises TimeoutError naming the missing ones."""
        self.start()
        wanted = set(keys)
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while True:
                found: dict[tuple[str, str, str], Received] = {}
                for received in self.received:
                    if received.key in wanted and received.key not in found:
                        found[received.key] = received
                if len(found) == len(wanted):
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = sorted(wanted - set(found))
                    raise TimeoutError(f"no outcome within {timeout_s}s for {missing}")
                self._arrived.wait(min(remaining, 1.0))
