"""The real adapters: google-cloud-storage and google-cloud-pubsub, built lazily.

The official clients honour STORAGE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST, so the local stack
needs nothing special; against Google Cloud they use application default credentials.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1, storage

from clipsearch_cli.ports import ObjectChanged, Pulled, StoredObject


def _stored(blob: Any) -> StoredObject:
    return StoredObject(
        bucket=blob.bucket.name,
        name=blob.name,
        generation=int(blob.generation),
        size=int(blob.size or 0),
        content_type=blob.content_type or "",
        metadata=dict(blob.metadata or {}),
    )


class GcsStorage:
    def __init__(self, client: storage.Client, *, emulator_host: str = "") -> None:
        self._client = client
        self._emulator_host = emulator_host.rstrip("/")

    def upload(
        self, bucket: str, name: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> int:
        blob = self._client.bucket(bucket).blob(name)
        blob.metadata = dict(metadata)
        blob.upload_from_string(data, content_type=content_type)
        return int(blob.generation)

    def read(self, bucket: str, name: str) -> bytes | None:
        try:
            data: bytes = self._client.bucket(bucket).blob(name).download_as_bytes()
        except gexc.NotFound:
            return None
        return data

    def stat(self, bucket: str, name: str) -> StoredObject | None:
        blob = self._client.bucket(bucket).get_blob(name)
        return None if blob is None else _stored(blob)

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        for blob in self._client.list_blobs(bucket, prefix=prefix or None):
            yield _stored(blob)

    def refinalize(self, obj: StoredObject, metadata: Mapping[str, str]) -> int:
        bucket = self._client.bucket(obj.bucket)
        source = bucket.get_blob(obj.name, generation=obj.generation)
        if source is None:
            raise ObjectChanged(f"{obj.uri} generation {obj.generation} is gone")
        # Every writable property as listed (content type, cache control, ...), plus our marker:
        # the rewrite body replaces the destination's metadata, so nothing may be left out.
        source.metadata = dict(metadata)
        dest = bucket.blob(obj.name)
        dest._properties.update(source._get_writable_metadata())
        try:
            token, _, _ = dest.rewrite(source, if_generation_match=obj.generation)
            while token is not None:  # large objects across storage classes take several calls
                token, _, _ = dest.rewrite(source, token=token, if_generation_match=obj.generation)
        except (gexc.PreconditionFailed, gexc.NotFound) as error:
            # fake-gcs-server answers a failed generation precondition with 404
            raise ObjectChanged(f"{obj.uri} changed since it was listed") from error
        return int(dest.generation)

    def download(self, bucket: str, name: str, path: Path) -> None:
        self._client.bucket(bucket).blob(name).download_to_filename(str(path))

    def browser_url(self, bucket: str, name: str) -> str:
        if self._emulator_host:  # fake-gcs-server serves media without auth, with Range support
            return (
                f"{self._emulator_host}/download/storage/v1/b/{quote(bucket, safe='')}"
                f"/o/{quote(name, safe='')}?alt=media"
            )
        # Authenticated browser download: works for a signed-in Google user with read access.
        return f"https://storage.cloud.google.com/{quote(bucket, safe='')}/{quote(name)}"


class PubsubSubscriber:
    def __init__(self, client: pubsub_v1.SubscriberClient) -> None:
        self._client = client

    def pull(self, subscription: str, max_messages: int, timeout_s: float) -> Sequence[Pulled]:
        # Synchronous pull: the emulator keeps feeding a cancelled streaming pull (see
        # clipsearch_dev.outcomes), which would hide messages from the next reader.
        try:
            response = self._client.pull(
                request={"subscription": subscription, "max_messages": max_messages},
                timeout=timeout_s,
                retry=None,
            )
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
            return []
        return [
            Pulled(
                subscription=subscription,
                ack_id=item.ack_id,
                message_id=item.message.message_id,
                data=bytes(item.message.data),
                attributes=dict(item.message.attributes),
            )
            for item in response.received_messages
        ]

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        if ack_ids:
            self._client.acknowledge(
                request={"subscription": subscription, "ack_ids": list(ack_ids)}
            )

    def nack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        if ack_ids:
            self._client.modify_ack_deadline(
                request={
                    "subscription": subscription,
                    "ack_ids": list(ack_ids),
                    "ack_deadline_seconds": 0,
                }
            )
