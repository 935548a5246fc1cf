"""Real emulators for the adapter tier: one Pub/Sub emulator and one fake-gcs-server per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, storage

from clipsearch_dev.processes import ManagedProcess, gcs_emulator, pubsub_emulator

PROJECT = "clipsearch-it"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def pubsub_host() -> Iterator[str]:
    with pubsub_emulator() as emulator:
        yield f"127.0.0.1:{emulator.port}"


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[ManagedProcess]:
    with gcs_emulator() as server:
        yield server


@pytest.fixture
def storage_client(gcs_server: ManagedProcess) -> storage.Client:
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{gcs_server.port}"
    return storage.Client(project=PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]


@pytest.fixture
def pubsub_env(pubsub_host: str) -> str:
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host
    return pubsub_host


@pytest.fixture
def publisher_client(pubsub_env: str) -> pubsub_v1.PublisherClient:
    return pubsub_v1.PublisherClient()


@pytest.fixture
def subscriber_client(pubsub_env: str) -> pubsub_v1.SubscriberClient:
    return pubsub_v1.SubscriberClient()


@pytest.fixture(scope="session")
def gcs_client(gcs_server: ManagedProcess) -> storage.Client:
    """A session-wide client that does not depend on the environment variable."""
    return storage.Client(
        project=PROJECT,
        client_options={"api_endpoint": f"http://127.0.0.1:{gcs_server.port}"},
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
