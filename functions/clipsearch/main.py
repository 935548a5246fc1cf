"""Cloud Functions entry point: translate the CloudEvent, delegate, and let transients raise."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from clipsearch.startup import frozen_imports

with frozen_imports():
    from clipsearch.entrypoint import handle_cloud_event


@functions_framework.cloud_event
def on_object_finalized(cloud_event: CloudEvent) -> None:
    handle_cloud_event(cloud_event)
