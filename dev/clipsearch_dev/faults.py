"""Test-only function source: the real function, plus bugs that a query's name asks for.

The poison suite needs exceptions nobody planned for, raised inside the real pipeline of the
real function server. `StackOptions(inject_bugs=True)` makes functions-framework load this
module instead of functions/clipsearch/main.py. It loads that main.py unchanged and wraps
three stages of the package from outside, so that a query object whose name contains
`@bug-<stage>` raises `InjectedBug` there:

- `@bug-read`: reading the query image (before any search: nothing may be billed);
- `@bug-fetch`: the clip fetcher (after the search: its hits are stored, never re-searched);
- `@bug-message`: building the success message (after the fetch);
- `@crash-fetch`: the worker process SIGKILLs itself in the clip fetcher, every time, as the
  OOM killer does to an instance that a query blows up (gunicorn starts a new worker).

Every other query runs the real code untouched. Never deployed: it lives in the dev stack
only, and nothing in the package knows about it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import clipsearch
from clipsearch.adapters.gcs import GcsImageReader
from clipsearch.core import messages
from clipsearch.fetch import ClipFetcher

# The deploy root's main.py beside the clipsearch package in use (StackOptions.function_root).
REAL_MAIN = Path(clipsearch.__file__).resolve().parents[1] / "main.py"
STAGES = ("read", "fetch", "message")
CRASH_MARKER = "@crash-fetch"
F = TypeVar("F", bound=Callable[..., Any])


class InjectedBug(Exception):
    """An exception type the package has never heard of."""


def marker(stage: str) -> str:
    """What a query object's name must contain to hit the bug in `stage`."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}")
    return f"@bug-{stage}"


def _buggy(stage: str, name_of: Callable[..., str]) -> Callable[[F], F]:
    def wrap(real: F) -> F:
        @functools.wraps(real)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if marker(stage) in name_of(*args, **kwargs):
                raise InjectedBug(f"injected bug in the {stage} stage")
            return real(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return wrap


def _crashing(real: F) -> F:
    @functools.wraps(real)
    def wrapper(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if CRASH_MARKER in str(query.object.name):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, query, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _install() -> None:
    GcsImageReader.read_image = _buggy(  # type: ignore[method-assign]
        "read", lambda _self, _bucket, name, *_a, **_k: str(name)
    )(GcsImageReader.read_image)
    ClipFetcher.fetch = _buggy(  # type: ignore[method-assign]
        "fetch", lambda _self, query, *_a, **_k: str(query.object.name)
    )(_crashing(ClipFetcher.fetch))
    messages.success_message = _buggy("message", lambda query, *_a, **_k: str(query.object.name))(
        messages.success_message
    )


def _load_real_main() -> Any:
    spec = importlib.util.spec_from_file_location("clipsearch_real_main", REAL_MAIN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_install()
on_object_finalized = _load_real_main().on_object_finalized
