"""Faults and variants the stand-in plays on demand: the knobs tests and the dev stack turn.

Injected failures (`fail_next`, `fail_rate`) and the behaviours the vendor's pages leave open
(whether `Range` is honoured, chunked bodies, the shape of an empty search answer, v1 or v2
download errors). A profile is a named set of knobs for the whole local stack.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flask import Response, g, request

from clipsearch_dev.standin.wire import (
    MSG_DISABLED,
    MSG_NO_CREDITS,
    MSG_RATE_LIMITED,
    MSG_UNAUTHORIZED,
    envelope,
    retry_after,
)

log = logging.getLogger("clipsearch_dev.standin.server")

ENDPOINTS = ("search_clips_by_image", "get_metadata", "download")

INJECTED_MSGS = {
    "0001": "parameter error",
    "0003": "parameter format error",
    "0401": MSG_UNAUTHORIZED,
    "0402": MSG_NO_CREDITS,
    "0403": MSG_DISABLED,
    "0409": "duplicate request not allowed",
    "0429": MSG_RATE_LIMITED,
    "9009": "permission denied",
}

Failure = int | str


def check_failure(spec: object) -> Failure:
    """Accept the documented failure spellings, optionally prefixed with an endpoint name."""
    if isinstance(spec, bool) or not isinstance(spec, int | str):
        raise ValueError(f"bad failure spec {spec!r}")
    if isinstance(spec, int):
        if not 100 <= spec <= 599:
            raise ValueError(f"bad HTTP status {spec}")
        return spec
    _, body = split_target(spec)
    ok = (
        re.fullmatch(r"\d{3}|\d{4}", body) is not None
        or body in {"malformed_json", "drop_connection"}
        or re.fullmatch(r"slow:\d+(\.\d+)?", body) is not None
        or re.fullmatch(r"drop_after:\d+", body) is not None
    )
    if not ok:
        raise ValueError(f"bad failure spec {spec!r}")
    return spec


def split_target(spec: str) -> tuple[str | None, str]:
    head, sep, rest = spec.partition(":")
    if sep and head in {*ENDPOINTS, "search"}:
        return ("search_clips_by_image" if head == "search" else head), rest
    return None, spec


ANSWER_LOST = frozenset({"malformed_json", "drop_connection"})
SEARCH_DATA = frozenset({"list", "object", "null"})

# Named sets of knobs, for the whole local stack (CLIPSEARCH_STANDIN_PROFILE): each plays one
# reading of what the vendor's pages leave open. The end-to-end tier runs under several.
PROFILES: Mapping[str, Mapping[str, Any]] = {
    "default": {},
    "range-ignored": {"range_honoured": False},
    "chunked": {"chunked": True},
    "range-ignored-chunked": {"range_honoured": False, "chunked": True},
    "v2-errors": {"download_errors": "v2"},
}


@dataclass
class Knobs:
    """Run-time behaviour switches; tests and other processes change them while it serves.

    `fail_next` entries: an HTTP status (500, or "503"), a 4-digit result code sent with HTTP
    200 ("0001", "0429", "0402"), "malformed_json", "drop_connection", "slow:<seconds>" or
    "drop_after:<bytes>" (a download body cut off after that many bytes); prefix with
    "search:", "get_metadata:" or "download:" to aim at one endpoint.
    `bill_abandoned` is the pessimistic billing model: a search runs and is billed even when
    its caller timed out, or when its answer is then dropped or garbled.

    What the vendor's pages leave open: `range_honoured` (False: the download endpoint answers
    every request 200 with the whole file), `chunked` (no Content-Length on download bodies),
    `search_data` ("list", or "object"/"null": a success whose `data` is `{}`/`null`, no hits),
    `download_errors` ("v1": string codes with HTTP 200; "v2": integer codes equal to the HTTP
    status they come with).
    """

    latency_s: float = 0.0
    fail_next: list[Failure] = field(default_factory=list)
    fail_rate: float = 0.0
    fail_code: Failure = 500
    fail_seed: int | None = None
    credits: int | None = None
    disabled: bool = False
    rate_per_s: float | None = 1.0
    search_burst: int = 1
    download_rate_per_min: int | None = 12
    omit_location: bool = False
    bill_abandoned: bool = False
    top_k: int = 5
    clip_seconds: float = 4.0
    range_honoured: bool = True
    chunked: bool = False
    search_data: str = "list"
    download_errors: str = "v1"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _rng: random.Random | None = field(default=None, repr=False, compare=False)
    _rng_seed: int | None = field(default=None, repr=False, compare=False)

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "latency_s",
        "fail_next",
        "fail_rate",
        "fail_code",
        "fail_seed",
        "credits",
        "disabled",
        "rate_per_s",
        "search_burst",
        "download_rate_per_min",
        "omit_location",
        "bill_abandoned",
        "top_k",
        "clip_seconds",
        "range_honoured",
        "chunked",
        "search_data",
        "download_errors",
    )

    def merge(self, changes: Mapping[str, Any]) -> None:
        """Apply a JSON-like mapping; all-or-nothing, unknown names are an error."""
        unknown = set(changes) - set(self._FIELDS)
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            checked[name] = self._check(name, value)
        with self._lock:
            for name, value in checked.items():
                setattr(self, name, value)
            if "fail_seed" in checked:
                self._rng = None  # re-seed: the same seed replays the same failures

    @staticmethod
    def _check(name: str, value: Any) -> Any:
        def number(v: Any, *, optional: bool = False, positive: bool = False) -> Any:
            if v is None and optional:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{name} must be a number")
            if v < 0 or (positive and v == 0):
                raise ValueError(f"{name} out of range")
            return v

        if name == "fail_next":
            if not isinstance(value, list):
                raise ValueError("fail_next must be a list")
            return [check_failure(v) for v in value]
        if name == "fail_code":
            return check_failure(value)
        if name == "search_data":
            if value not in SEARCH_DATA:
                raise ValueError(f"search_data must be one of {sorted(SEARCH_DATA)}")
            return value
        if name == "download_errors":
            if value not in ("v1", "v2"):
                raise ValueError("download_errors must be v1 or v2")
            return value
        if name in {"disabled", "omit_location", "bill_abandoned", "range_honoured", "chunked"}:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a boolean")
            return value
        if name in {"rate_per_s", "download_rate_per_min"}:
            return number(value, optional=True, positive=True)
        if name in {"credits", "fail_seed"}:
            return None if value is None else int(number(value))
        if name in {"search_burst", "top_k"}:
            return int(number(value, positive=True))
        if name == "clip_seconds":
            return number(value, positive=True)
        if name == "fail_rate" and number(value) > 1:
            raise ValueError("fail_rate must be within [0, 1]")
        return number(value)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {name: _copy(getattr(self, name)) for name in self._FIELDS}

    def take_failure(self, endpoint: str) -> str | None:
        """The failure to inject into this request, if any (queue first, then random)."""
        with self._lock:
            for i, spec in enumerate(self.fail_next):
                target, body = split_target(spec) if isinstance(spec, str) else (None, str(spec))
                if target is None or target == endpoint:
                    del self.fail_next[i]
                    return body
            if self.fail_rate > 0:
                if self._rng is None or self._rng_seed != self.fail_seed:
                    self._rng = random.Random(self.fail_seed)
                    self._rng_seed = self.fail_seed
                if self._rng.random() < self.fail_rate:
                    return str(self.fail_code)
            return None

    def charge_credit(self) -> bool:
        """Take one credit for a billed call; False when the balance is exhausted."""
        with self._lock:
            if self.credits is None:
                return True
            if self.credits <= 0:
                return False
            self.credits -= 1
            return True

    def out_of_credits(self) -> bool:
        with self._lock:
            return self.credits is not None and self.credits <= 0


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def inject(failure: str) -> Response | None:
    """Answer with an injected failure; None lets the request go on (after a delay)."""
    log.info("injecting failure %s", failure)
    if failure.startswith("drop_after:"):
        g.drop_after = int(failure.removeprefix("drop_after:"))  # the download route cuts it
        return None
    if failure.startswith("slow:"):
        time.sleep(float(failure.removeprefix("slow:")))
        return None
    if failure == "malformed_json":
        g.result = "malformed_json"
        return Response('{"code": "0000", "msg": "succ', mimetype="application/json")
    if failure == "drop_connection":
        g.result = "drop_connection"
        sock = request.environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return Response("", status=500)
    if len(failure) == 4:
        resp = envelope(failure, INJECTED_MSGS.get(failure, "injected failure"))
        return retry_after(resp, 1) if failure == "0429" else resp
    status = int(failure)
    if status in {401, 402, 403, 429}:
        code = f"0{status}"
        resp = envelope(code, INJECTED_MSGS[code], http=status)
        return retry_after(resp, 1) if status == 429 else resp
    # Gateways answer 5xx with HTML, not the JSON envelope: clients must cope.
    return Response(
        f"<html><body><h1>{status} injected failure</h1></body></html>",
        status=status,
        mimetype="text/html",
    )
