"""What every command gets: settings, lazily built clients, clocks and output streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO, cast

from clipsearch_cli.config import CliSettings
from clipsearch_cli.ports import Storage, Subscriber


class CommandError(Exception):
    """A failure to report as one line on stderr with exit code 1."""


@dataclass(frozen=True)
class Context:
    settings: CliSettings
    stdout: TextIO
    stderr: TextIO
    make_storage: Callable[[], Storage]
    make_subscriber: Callable[[], Subscriber]
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    progress: bool | None = None  # None: only when stderr is a terminal
    _cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def storage(self) -> Storage:
        """Built on first use: `--help` and local refusals never need credentials."""
        if "storage" not in self._cache:
            self._cache["storage"] = self.make_storage()
        return cast(Storage, self._cache["storage"])

    @property
    def subscriber(self) -> Subscriber:
        if "subscriber" not in self._cache:
            self._cache["subscriber"] = self.make_subscriber()
        return cast(Subscriber, self._cache["subscriber"])

    def warn(self, message: str) -> None:
        self.stderr.write(f"clipsearch: {message}\n")
        self.stderr.flush()
