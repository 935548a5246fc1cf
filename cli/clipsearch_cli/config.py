"""The CLI's settings: the function's variable names where they overlap, plus the readers'.

Values come from flags, then the environment, then an env file (`.devstack/env` written by the
local stack), so the same command works against the local stack and against Google Cloud.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from clipsearch.settings import API_MAX_IMAGE_BYTES

DEFAULT_ENV_FILE = Path(".devstack/env")
DEFAULT_RESULTS_PREFIX = "clipsearch/"
DEFAULT_MAX_METADATA_CHARS = 2000


class UsageError(Exception):
    """Something the user must fix (a flag, a variable, a file); exit code 2."""


def parse_env_file(path: Path) -> dict[str, str]:
    """`export K=V` / `K=V` lines with shell quoting, as `LocalStack.write_env_file` writes."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read env file {path}: {error.strerror}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, rest = line.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"{path}:{number}: expected KEY=VALUE")
        words = shlex.split(rest) if rest else [""]
        values[key] = words[0] if words else ""
    return values


def apply_env_file(
    explicit: Path | None, environ: MutableMapping[str, str], *, use_default: bool = True
) -> Path | None:
    """Load an env file into `environ` before any Google client is built (they read it).

    An explicit `--env-file` wins over the environment. The default `.devstack/env` is only a
    fallback: read when it exists and the environment names no query bucket, and it never
    overrides a variable that is already set.
    """
    if explicit is not None:
        environ.update(parse_env_file(explicit))
        return explicit
    if not use_default or environ.get("CLIPSEARCH_QUERY_BUCKET") or not DEFAULT_ENV_FILE.is_file():
        return None
    for key, value in parse_env_file(DEFAULT_ENV_FILE).items():
        environ.setdefault(key, value)
    return DEFAULT_ENV_FILE


@dataclass(frozen=True)
class CliSettings:
    """What the commands need; empty strings mean "not configured" (checked where needed)."""

    query_bucket: str
    results_bucket: str
    results_prefix: str
    results_subscription: str
    errors_subscription: str
    project: str
    storage_emulator_host: str
    max_image_bytes: int
    max_metadata_chars: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CliSettings:
        def number(name: str, default: int, high: int | None = None) -> int:
            raw = env.get(name) or str(default)
            try:
                value = int(raw)
            except ValueError:
                raise UsageError(f"{name} must be an integer, got {raw!r}") from None
            if value < 1 or (high is not None and value > high):
                raise UsageError(f"{name} must be between 1 and {high or 'inf'}, got {raw!r}")
            return value

        project = env.get("GOOGLE_CLOUD_PROJECT", "")
        return cls(
            query_bucket=env.get("CLIPSEARCH_QUERY_BUCKET", ""),
            results_bucket=env.get("CLIPSEARCH_RESULTS_BUCKET", ""),
            results_prefix=env.get("CLIPSEARCH_RESULTS_PREFIX") or DEFAULT_RESULTS_PREFIX,
            results_subscription=_full_subscription(
                env.get("CLIPSEARCH_RESULTS_SUBSCRIPTION", ""), project
            ),
            errors_subscription=_full_subscription(
                env.get("CLIPSEARCH_ERRORS_SUBSCRIPTION", ""), project
            ),
            project=project,
            storage_emulator_host=env.get("STORAGE_EMULATOR_HOST", ""),
            max_image_bytes=number(
                "CLIPSEARCH_MAX_IMAGE_BYTES", API_MAX_IMAGE_BYTES, API_MAX_IMAGE_BYTES
            ),
            max_metadata_chars=number("CLIPSEARCH_MAX_METADATA_CHARS", DEFAULT_MAX_METADATA_CHARS),
        )


def _full_subscription(name: str, project: str) -> str:
    """Accept a short subscription id when the project is known."""
    if not name or name.startswith("projects/") or not project:
        return name
    return f"projects/{project}/subscriptions/{name}"


def require(value: str, what: str, flag: str, env: str) -> str:
    if not value:
        raise UsageError(f"no {what}: pass {flag} or set {env}")
    return value


def getenv() -> MutableMapping[str, str]:
    return os.environ
