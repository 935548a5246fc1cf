"""The local Eventarc: GCS notification (Pub/Sub) → CloudEvent → HTTP POST to the function.

Like Eventarc with retries on, a non-2xx answer (or no answer) nacks the message, and the
subscription's retry policy redelivers it with exponential backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import Counter
from typing import Any

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from google.cloud import pubsub_v1

FINALIZED = "google.cloud.storage.object.v1.finalized"
log = logging.getLogger("clipsearch_dev.bridge")


def cloud_event_from_notification(
    message_id: str, attributes: dict[str, str], data: bytes
) -> CloudEvent | None:
    """The CloudEvent Eventarc would deliver for a GCS notification; None for other events."""
    if attributes.get("eventType") != "OBJECT_FINALIZE":
        return None
    resource: dict[str, Any] = json.loads(data)
    bucket = attributes.get("bucketId", resource.get("bucket", ""))
    name = attributes.get("objectId", resource.get("name", ""))
    return CloudEvent(
        {
            "id": message_id,
            "type": FINALIZED,
            "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "subject": f"objects/{name}",
            "time": attributes.get("eventTime") or str(resource.get("updated") or ""),
            "datacontenttype": "application/json",
        },
        resource,
    )


class TriggerBridge:
    def __init__(
        self,
        subscriber: pubsub_v1.SubscriberClient,
        subscription: str,
        target_url: str,
        *,
        timeout_s: float = 600.0,
        max_in_flight: int = 16,
    ) -> None:
        self._subscriber = subscriber
        self._subscription = subscription
        self._url = target_url
        self._timeout_s = timeout_s
        self._flow = pubsub_v1.types.FlowControl(max_messages=max_in_flight)
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max_in_flight)
        self._session.mount("http://", adapter)
        self._future: Any = None
        self._lock = threading.Lock()
        self.deliveries: Counter[str] = Counter()  # HTTP status (or "error") -> count
        self.attempts: Counter[str] = Counter()  # event subject ("objects/NAME") -> POSTs
        self._in_flight: Counter[str] = Counter()

    def _count(self, key: str) -> None:
        with self._lock:
            self.deliveries[key] += 1

    def in_flight(self) -> set[str]:
        """Subjects ("objects/NAME") whose delivery is being POSTed right now."""
        with self._lock:
            return {subject for subject, n in self._in_flight.items() if n > 0}

    def _deliver(self, message: Any) -> None:
        event = cloud_event_from_notification(
            message.message_id, dict(message.attributes), message.data
        )
        if event is None:
            message.ack()
            return
        headers, body = to_binary(event)
        subject = str(event["subject"])
        with self._lock:
            self.attempts[subject] += 1
            self._in_flight[subject] += 1
        try:
            response = self._session.post(
                self._url, headers=headers, data=body, timeout=self._timeout_s
            )
        except requests.RequestException as error:
            self._count("error")
            # No answer (the function is down or died mid-request): expected in drills.
            log.info("delivery of %s failed: %s; will redeliver", event["subject"], error)
            message.nack()
            return
        finally:
            with self._lock:
                self._in_flight[subject] -= 1
        self._count(str(response.status_code))
        if 200 <= response.status_code < 300:
            message.ack()
        else:
            log.info(
                "function answered %d for %s; will redeliver",
                response.status_code,
                event["subject"],
            )
            message.nack()

    def start(self) -> TriggerBridge:
        self._future = self._subscriber.subscribe(
            self._subscription, self._deliver, flow_control=self._flow
        )
        return self

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            # Cancellation always ends the future in an exception; that is the point.
            with contextlib.suppress(Exception):
                self._future.result(timeout=10)
            self._future = None
        self._session.close()
