"""The publisher the composition root builds, against the Pub/Sub emulator."""

from __future__ import annotations

import uuid

from google.cloud import pubsub_v1

from clipsearch.adapters.pubsub import LazyPublisher
from tests.integration.conftest import PROJECT


def test_the_default_lazy_publisher_publishes_to_the_emulator(
    pubsub_env: str, subscriber_client: pubsub_v1.SubscriberClient
) -> None:
    topic = f"projects/{PROJECT}/topics/t-{uuid.uuid4().hex[:8]}"
    sub = f"projects/{PROJECT}/subscriptions/s-{uuid.uuid4().hex[:8]}"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    subscriber_client.create_subscription(name=sub, topic=topic)
    message_id = LazyPublisher().publish(topic, b'{"x":1}', {"status": "ok"})
    response = subscriber_client.pull(subscription=sub, max_messages=5, timeout=10)
    [received] = response.received_messages
    assert received.message.message_id == message_id
    assert received.message.data == b'{"x":1}'
    assert dict(received.message.attributes) == {"status": "ok"}
