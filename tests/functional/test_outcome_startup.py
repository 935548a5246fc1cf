"""Fail the deploy, not the events: the real functions-framework server, started as the
platform starts it, refuses bad settings at start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from clipsearch_dev.net import free_port
from clipsearch_dev.processes import ManagedProcess
from tests.functional.conftest import ENV

MAIN = Path(__file__).parents[2] / "functions" / "clipsearch" / "main.py"
SERVER = Path(sys.executable).parent / "functions-framework"
KEY = ENV["CLIPSEARCH_API_KEY"]


def argv(port: int) -> list[str]:
    return [
        str(SERVER),
        "--target=on_object_finalized",
        f"--source={MAIN}",
        "--signature-type=cloudevent",
        "--host=127.0.0.1",
        f"--port={port}",
    ]


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPSEARCH_")}
    env.update(ENV)
    env.update(overrides)
    return {k: v for k, v in env.items() if v != "<unset>"}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"CLIPSEARCH_FUNCTION_TIMEOUT_S": "nan"},
            "CLIPSEARCH_FUNCTION_TIMEOUT_S must be a finite number, got 'nan'",
        ),
        (
            {"CLIPSEARCH_MAX_EVENT_AGE_S": "inf"},
            "CLIPSEARCH_MAX_EVENT_AGE_S must be a finite number, got 'inf'",
        ),
        ({"CLIPSEARCH_RESULTS_TOPIC": "<unset>"}, "CLIPSEARCH_RESULTS_TOPIC is required"),
        ({"CLIPSEARCH_FETCH_MODE": "teleport"}, "CLIPSEARCH_FETCH_MODE must be one of"),
        ({"CLIPSEARCH_LOG_LEVEL": "LOUD"}, "CLIPSEARCH_LOG_LEVEL must be one of"),
    ],
)
def test_a_bad_setting_stops_the_server_at_start_up(override, expected):
    port = free_port()
    done = subprocess.run(
        argv(port),
        env=clean_env(**override),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert expected in output
    assert "ConfigError" in output
    assert KEY not in output


def test_good_settings_start_the_server_without_any_event(tmp_path):
    """The check runs at start-up; the clients are made on first use (after any fork)."""
    port = free_port()
    server = ManagedProcess(
        "function", argv(port), port, env=clean_env(), log_path=tmp_path / "f.log"
    )
    with server:
        assert server.running
        # Not a CloudEvent: the framework refuses it itself (4xx), the server is up and serving.
        response = requests.post(f"http://127.0.0.1:{port}/", data=b"{}", timeout=30)
        assert 400 <= response.status_code < 500
    assert KEY not in (tmp_path / "f.log").read_text()
