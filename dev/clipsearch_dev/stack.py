"""The local stack: real emulators, the real function server, the trigger bridge, the stand-in.

Everything listens on free loopback ports and is stopped by `LocalStack.stop()` (also on
Ctrl-C and on errors during start-up).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import pubsub_v1, storage

from clipsearch.core.naming import record_prefix
from clipsearch_dev.bridge import TriggerBridge
from clipsearch_dev.net import free_port
from clipsearch_dev.processes import ManagedProcess, gcs_emulator, pubsub_emulator
from clipsearch_dev.standin import StandinServer

REPO = Path(__file__).resolve().parents[2]
FUNCTION_ROOT = REPO / "functions" / "clipsearch"
FUNCTION_SOURCE = FUNCTION_ROOT / "main.py"
FAULTY_SOURCE = Path(__file__).resolve().parent / "faults.py"
FUNCTION_TARGET = "on_object_finalized"
LOCAL_API_KEY = "sk-mavi-local-devstack-key"  # a test key: recognisable in leak checks


@dataclass(frozen=True)
class StackNames:
    project: str = "clipsearch-local"
    query_bucket: str = "clipsearch-queries"
    results_bucket: str = "clipsearch-results"
    source_bucket: str = "mavi-resource"
    notifications_topic: str = "gcs-notifications"
    results_topic: str = "clipsearch-results"
    errors_topic: str = "clipsearch-errors"

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    @property
    def bridge_subscription(self) -> str:
        return self.subscription("eventarc-bridge")

    @property
    def results_subscription(self) -> str:
        return self.subscription("results-reader")

    @property
    def errors_subscription(self) -> str:
        return self.subscription("errors-reader")


def _function_root() -> Path:
    """CLIPSEARCH_DEV_FUNCTION_ROOT runs another copy of the deploy root (main.py and its
    clipsearch/ package), e.g. an older commit's, for before/after measurements."""
    return Path(os.environ.get("CLIPSEARCH_DEV_FUNCTION_ROOT") or FUNCTION_ROOT).resolve()


@dataclass
class StackOptions:
    search_rate_per_s: float = 1.0
    bridge_in_flight: int = 16
    gcs_on_disk: bool = False  # keep objects across a fake-gcs-server restart (outage drills)
    function_env: Mapping[str, str] = field(default_factory=dict)
    retry_min_backoff_s: int = 1
    retry_max_backoff_s: int = 30
    # Test-only: load clipsearch_dev.faults, the real function plus bugs a query's name can
    # ask for (poison drills); never the default.
    inject_bugs: bool = False
    function_root: Path = field(default_factory=_function_root)
    # Which reading of the vendor's open behaviours the stand-in plays (standin/faults.py
    # PROFILES): `Range` honoured or ignored, chunked bodies, ...
    standin_profile: str = field(
        default_factory=lambda: os.environ.get("CLIPSEARCH_STANDIN_PROFILE") or "default"
    )
    state_dir: Path = REPO / ".devstack"


class LocalStack:
    def __init__(self, options: StackOptions | None = None, names: StackNames | None = None):
        self.options = options or StackOptions()
        self.names = names or StackNames()
        self.pubsub: ManagedProcess | None = None
        self.gcs: ManagedProcess | None = None
        self.function: ManagedProcess | None = None
        self.standin: StandinServer | None = None
        self.bridge: TriggerBridge | None = None
        self.env: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the stand-in's request log
        state = self.options.state_dir
        state.mkdir(parents=True, exist_ok=True)
        names = self.names
        self.pubsub = pubsub_emulator(state / "pubsub-emulator.log").start()
        pubsub_host = f"127.0.0.1:{self.pubsub.port}"
        self._set_env("PUBSUB_EMULATOR_HOST", pubsub_host)
        self._create_pubsub()
        self.gcs = gcs_emulator(
            pubsub_host=pubsub_host,
            project=names.project,
            notify_topic=names.notifications_topic,
            notify_bucket=names.query_bucket,
            log_path=state / "fake-gcs-server.log",
            filesystem_root=state / "gcs-data" if self.options.gcs_on_disk else None,
        ).start()
        storage_host = f"http://127.0.0.1:{self.gcs.port}"
        self._set_env("STORAGE_EMULATOR_HOST", storage_host)
        self._set_env("GOOGLE_CLOUD_PROJECT", names.project)
        self.storage = storage.Client(project=names.project)
        for bucket in (names.query_bucket, names.results_bucket, names.source_bucket):
            self.storage.create_bucket(bucket)
        self.standin = StandinServer(
            self.storage,
            api_key=LOCAL_API_KEY,
            search_rate_per_s=self.options.search_rate_per_s,
            profile=self.options.standin_profile,
        )
        self.standin.start()
        self.env = {
            "PUBSUB_EMULATOR_HOST": pubsub_host,
            "STORAGE_EMULATOR_HOST": storage_host,
            "GOOGLE_CLOUD_PROJECT": names.project,
            "CLIPSEARCH_API_KEY": LOCAL_API_KEY,
            "CLIPSEARCH_API_BASE_URL": self.standin.base_url,
            "CLIPSEARCH_QUERY_BUCKET": names.query_bucket,
            "CLIPSEARCH_RESULTS_BUCKET": names.results_bucket,
            "CLIPSEARCH_RESULTS_TOPIC": names.topic(names.results_topic),
            "CLIPSEARCH_ERRORS_TOPIC": names.topic(names.errors_topic),
            "CLIPSEARCH_SOURCE_BUCKETS": names.source_bucket,
            # The function paces itself at the stand-in's account rate, as in production.
            "CLIPSEARCH_SEARCH_RATE_PER_S": str(self.options.search_rate_per_s),
            **self.options.function_env,
        }
        port = free_port()
        root = self.options.function_root
        source = FAULTY_SOURCE if self.options.inject_bugs else root / "main.py"
        function_env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        if root != FUNCTION_ROOT.resolve():  # its clipsearch package, not the installed one
            function_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p
            )
        self.function = ManagedProcess(
            "function",
            [
                str(Path(sys.executable).parent / "functions-framework"),
                f"--target={FUNCTION_TARGET}",
                f"--source={source}",
                "--signature-type=cloudevent",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            port,
            env=function_env,
            log_path=self.function_log,
        ).start()
        self.function_url = f"http://127.0.0.1:{port}/"
        self.bridge = TriggerBridge(
            pubsub_v1.SubscriberClient(),
            names.bridge_subscription,
            self.function_url,
            max_in_flight=self.options.bridge_in_flight,
        ).start()
        self.env.update(
            {
                "CLIPSEARCH_FUNCTION_URL": self.function_url,
                "CLIPSEARCH_RESULTS_SUBSCRIPTION": names.results_subscription,
                "CLIPSEARCH_ERRORS_SUBSCRIPTION": names.errors_subscription,
                "CLIPSEARCH_STANDIN_URL": self.standin.base_url,
            }
        )
        self.write_env_file(state / "env")

    def kill_function(self) -> None:
        """SIGKILL the function server (master and workers): an instance lost mid-request."""
        assert self.function is not None
        self.function.kill()

    def start_function(self) -> None:
        """Start the function server again on its port (after `kill_function`)."""
        assert self.function is not None
        self.function.start()

    @property
    def function_log(self) -> Path:
        """The function server's log (JSON lines), kept across restarts."""
        return self.options.state_dir / "function.log"

    def read_record(self, bucket: str, name: str, generation: int | str) -> dict[str, Any] | None:
        """A query's idempotency record as stored (plain JSON), or None before it is claimed."""
        prefix = record_prefix(self.env.get("CLIPSEARCH_RESULTS_PREFIX", "clipsearch/"))
        blob = self.storage.bucket(self.names.results_bucket).blob(
            f"{prefix}{bucket}/{name}/{generation}.json"
        )
        try:
            doc: dict[str, Any] = json.loads(blob.download_as_bytes())
        except NotFound:
            return None
        return doc

    def restart_gcs(self) -> None:
        """Restart fake-gcs-server on its port (objects survive only with gcs_on_disk)."""
        assert self.gcs is not None
        self.gcs.restart()

    def restart_pubsub(self) -> None:
        """Restart the emulator on its port; it forgets everything, so recreate the topology."""
        assert self.pubsub is not None
        self.pubsub.restart()
        self._create_pubsub()

    def _create_pubsub(self) -> None:
        names = self.names
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        for topic in (names.notifications_topic, names.results_topic, names.errors_topic):
            publisher.create_topic(name=names.topic(topic))
        retry = pubsub_v1.types.RetryPolicy(
            minimum_backoff={"seconds": self.options.retry_min_backoff_s},
            maximum_backoff={"seconds": self.options.retry_max_backoff_s},
        )
        subscriber.create_subscription(
            request={
                "name": names.bridge_subscription,
                "topic": names.topic(names.notifications_topic),
                "ack_deadline_seconds": 600,
                "retry_policy": retry,
            }
        )
        for sub, topic in (
            (names.results_subscription, names.results_topic),
            (names.errors_subscription, names.errors_topic),
        ):
            subscriber.create_subscription(
                request={"name": sub, "topic": names.topic(topic), "ack_deadline_seconds": 60}
            )

    def write_env_file(self, path: Path) -> None:
        lines = [f"export {key}={shlex.quote(value)}" for key, value in sorted(self.env.items())]
        path.write_text("\n".join(lines) + "\n")

    def _set_env(self, key: str, value: str) -> None:
        """Point this process's Google clients at the emulators; undone by stop()."""
        self._saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None
        for attr in ("function", "gcs", "pubsub"):
            process = getattr(self, attr)
            if process is not None:
                process.stop()
                setattr(self, attr, None)
        if self.standin is not None:
            self.standin.stop()
            self.standin = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- conveniences for demo, dev and tests -------------------------------------------
    def upload_video(self, path: Path, video_no: str, unique_id: str = "default") -> str:
        blob_name = f"{video_no}.mp4"
        blob = self.storage.bucket(self.names.source_bucket).blob(blob_name)
        blob.upload_from_filename(str(path), content_type="video/mp4")
        assert self.standin is not None
        self.standin.register_video(video_no, self.names.source_bucket, blob_name, unique_id)
        return blob_name

    def drop_query(
        self,
        name: str,
        data: bytes,
        metadata: Mapping[str, str],
        content_type: str = "image/jpeg",
    ) -> int:
        """Upload a query image as a user would; returns the object's generation."""
        blob = self.storage.bucket(self.names.query_bucket).blob(name)
        blob.metadata = dict(metadata)
        blob.upload_from_string(data, content_type=content_type)
        generation: int = blob.generation
        return generation
