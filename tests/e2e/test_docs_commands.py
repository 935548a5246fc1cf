"""Every upload, pull and CLI command the README and docs/ show, run against the local stack.

Commands are extracted from the documents' shell (and Python) code blocks, never copied here:
a changed example is tested as it now reads. Each command line is classified: run here (with
the emulators standing in for Google Cloud, gcloud pointed at them with credentials disabled),
or Google-Cloud-only with the reason. An unclassified command fails the test, so a new example
cannot slip by untested. gcloud itself is required; the test is skipped only where it is absent.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import pytest
from google.cloud import pubsub_v1

from clipsearch.contract import from_avro_json, schema, validate_message
from clipsearch.core.naming import result_name
from clipsearch_dev.demo import VIDEO_NO
from clipsearch_dev.media import make_video, query_image_bytes
from clipsearch_dev.stack import LocalStack, StackOptions

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PREFIX = "clipsearch"  # docs/deploy.md's $PREFIX: "$PREFIX-queries" is the stack's query bucket
DEPLOY_VIDEO_NO = "VI123"  # the video docs/deploy.md searches
RESULTS_PREFIX = "clipsearch/"
README_SUBSCRIPTION = "readme-subscriber"
COMMAND_TIMEOUT_S = 150  # every command, pulls included, is bounded

# Command lines run against the local stack (shell state lines are replayed before later ones).
STATE = [re.compile(p) for p in (r"^source \.devstack/env\b", r"^export CLOUDSDK_")]
RUN = [
    re.compile(p)
    for p in (
        r"^ffmpeg ",
        r"^gcloud storage cp ",
        r"^(timeout \d+ )?gcloud pubsub subscriptions pull ",
        r"^clipsearch ",
        r"^\.venv/bin/python -m clipsearch_dev\.drop ",
    )
]
# Command lines that only make sense against Google Cloud (or start the stack itself).
NOT_LOCAL = {
    r"^make dev\b": "starts the local stack: this test's fixture is that stack",
    r"^make (demo|test|bench|unit|functional|integration|e2e)\b": "runs its own stacks/suites",
    r"^export (PROJECT|REGION|PREFIX)=|^DEPLOYER=": "names a real project (the test sets its own)",
    r"^gcloud (config|services|secrets|functions|iam|projects|builds|monitoring|logging|run"
    r"|eventarc|container|alpha|beta) ": "a Google Cloud control-plane command: no emulator has it",
    r"^(docker|crane) ": "reads a container registry (pinning image digests): needs the internet",
    r"^gcloud storage buckets ": "bucket administration: the stack creates its buckets",
    r"^printf .*\| gcloud secrets ": "Secret Manager: Google Cloud only",
    r"^(terraform |cd infra$|cp terraform\.tfvars|read -rs |for role |done$)": "deploy steps",
    r"^(CLIPSEARCH_\w+=\S+ )*\.venv/bin/(pytest |python -m (tests|bench)\.)": (
        "a test suite or benchmark of this repo: make test runs the suites; benchmarks measure"
    ),
}


@dataclass(frozen=True)
class Command:
    doc: str
    kind: str  # "state", "run", "python"
    text: str


def code_blocks(text: str) -> Iterator[tuple[str, str]]:
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        yield match.group(1), match.group(2)


def logical_lines(block: str) -> Iterator[str]:
    """Lines with backslash continuations joined; blank and comment-only lines dropped."""
    for line in re.sub(r"\\\n\s*", "", block).splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield stripped


def commands_of(doc: Path) -> tuple[list[Command], list[str]]:
    """The doc's runnable commands in order, and any command line nobody classified."""
    found, unclassified = [], []
    name = doc.relative_to(REPO).as_posix()
    for language, block in code_blocks(doc.read_text(encoding="utf-8")):
        if language == "python" and ("upload_from" in block or ".subscribe(" in block):
            found.append(Command(name, "python", block))
            continue
        if language not in ("sh", "bash", "shell"):
            continue
        for line in logical_lines(block):
            if any(p.search(line) for p in STATE):
                found.append(Command(name, "state", line))
            elif any(p.search(line) for p in RUN):
                found.append(Command(name, "run", line))
            elif not any(re.search(p, line) for p in NOT_LOCAL):
                unclassified.append(line)
    return found, unclassified


def test_every_shell_command_in_the_docs_is_classified():
    unclassified = {d.name: commands_of(d)[1] for d in DOCS if commands_of(d)[1]}
    assert unclassified == {}, (
        "commands in the docs that tests/e2e/test_docs_commands.py neither runs nor lists as "
        f"Google-Cloud-only: {unclassified}"
    )


def test_the_extractor_finds_the_documented_commands():
    """Guards against an extractor that silently finds nothing (then nothing would be run)."""
    runnable = [c.text for d in DOCS for c in commands_of(d)[0] if c.kind == "run"]
    for expected in (
        "gcloud storage cp ",
        "gcloud pubsub subscriptions pull ",
        "clipsearch submit ",
        "clipsearch results ",
        "clipsearch backfill ",
        "clipsearch report ",
        "clipsearch_dev.drop ",
    ):
        assert any(expected in text for text in runnable), expected


# -- running them ----------------------------------------------------------------------------


@dataclass
class Workspace:
    stack: LocalStack
    cwd: Path
    env: dict[str, str]  # what a user's shell has before the doc's own lines


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Iterator[Workspace]:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip(reason="gcloud is not installed (Debian: apt-get install google-cloud-cli)")
    cwd = tmp_path_factory.mktemp("docs")
    options = StackOptions(state_dir=cwd / ".devstack", search_rate_per_s=20.0)
    with LocalStack(options) as stack:
        # What `make dev` does, and what the docs' readers have at hand.
        sample = cwd / ".devstack" / "sample.mp4"
        make_video(sample, seconds=50, gop=20)
        stack.upload_video(sample, VIDEO_NO)
        stack.upload_video(sample, DEPLOY_VIDEO_NO)
        (cwd / ".venv").symlink_to(Path(sys.executable).parents[1])
        (cwd / "shots").mkdir()
        (cwd / "shots" / "red.jpg").write_bytes(query_image_bytes(sample, 12.0))
        (cwd / "shots" / "green.jpg").write_bytes(query_image_bytes(sample, 25.0))
        (cwd / "cat.jpg").write_bytes(query_image_bytes(sample, 8.0))
        archived = stack.storage.bucket(stack.names.query_bucket).blob("archive/old.jpg")
        archived.metadata = {"video_no": VIDEO_NO, "prompt": "an old query"}
        archived.upload_from_string(query_image_bytes(sample, 33.0), content_type="image/jpeg")
        # docs/deploy.md reads "$PREFIX-results-example", which Terraform creates; the README's
        # subscriber gets a subscription of its own (a killed streaming pull keeps its leases).
        for subscription in (f"{PREFIX}-results-example", README_SUBSCRIPTION):
            pubsub_v1.SubscriberClient().create_subscription(
                name=stack.names.subscription(subscription),
                topic=stack.names.topic(stack.names.results_topic),
            )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CLIPSEARCH_", "CLOUDSDK_", "GOOGLE_"))
            and not k.endswith("_EMULATOR_HOST")
        }
        env.update(
            {
                "PATH": f"{cwd / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "CLOUDSDK_CONFIG": str(tmp_path_factory.mktemp("gcloud-config")),
                "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
                "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
            }
        )
        yield Workspace(stack, cwd, env)


def doc_env(ws: Workspace, doc: str) -> dict[str, str]:
    """docs/deploy.md's reader is logged in to a project with $PREFIX set; here those point at
    the emulators. README and docs/cli.md set up their own environment in their text."""
    if doc != "docs/deploy.md":
        return dict(ws.env)
    stack = ws.stack
    assert stack.gcs is not None
    assert stack.pubsub is not None
    return {
        **ws.env,
        "PROJECT": stack.names.project,
        "REGION": "local",
        "PREFIX": PREFIX,
        "CLOUDSDK_CORE_PROJECT": stack.names.project,
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"http://127.0.0.1:{stack.gcs.port}/",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://127.0.0.1:{stack.pubsub.port}/",
    }


def settle(stack: LocalStack, timeout_s: float = 90) -> dict[tuple[str, int], dict[str, Any]]:
    """Wait until every object in the query bucket has its stored outcome; return them."""
    queries = stack.storage.bucket(stack.names.query_bucket)
    results = stack.storage.bucket(stack.names.results_bucket)
    deadline = time.monotonic() + timeout_s
    while True:
        pending, done = [], {}
        for blob in queries.list_blobs():  # current generations
            name = result_name(RESULTS_PREFIX, queries.name, blob.name, int(blob.generation))
            stored = results.get_blob(name)
            if stored is None:
                pending.append(blob.name)
            else:
                done[(blob.name, int(blob.generation))] = json.loads(stored.download_as_bytes())
        if not pending:
            return done
        assert time.monotonic() < deadline, f"no outcome for {pending} in {timeout_s}s"
        time.sleep(0.3)


def check_pull_output(stdout: str) -> None:
    """`pull --format=json`: data is URL-safe base64 of an Avro JSON outcome (the contract)."""
    try:
        pulled = json.loads(stdout)
    except json.JSONDecodeError:
        assert "query_bucket=" in stdout, stdout  # the table form lists the attributes
        return
    assert pulled, "the pull returned no message"
    parsed = fastavro.parse_schema(schema())
    for item in pulled:
        body = base64.urlsafe_b64decode(item["message"]["data"]).decode("utf-8")
        wire = json.loads(body)
        validate_message(wire)
        # A third-party Avro JSON decoder, given only the schema, reads the same outcome.
        [record] = list(fastavro.json_reader(io.StringIO(body), parsed))
        assert record == from_avro_json(wire)
        assert record["status"] in ("success", "error")


def run_shell(ws: Workspace, env: dict[str, str], state: list[str], line: str) -> None:
    if re.search(r"^clipsearch results .*--follow", line):
        run_until_output_then_interrupt(ws, env, state, line)
        return
    script = "\n".join(["set -eo pipefail", *state, line])
    if "gcloud pubsub subscriptions pull" in line:
        settle(ws.stack)  # the pulled subscription has something waiting
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=ws.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{line}\nexit {done.returncode}\n{done.stderr[-3000:]}"
    if "gcloud pubsub subscriptions pull" in line:
        check_pull_output(done.stdout)
    if line.startswith("clipsearch report"):
        page = re.search(r"-o (\S+)", line)
        assert page is not None
        assert (ws.cwd / page.group(1)).stat().st_size > 0


def first_line_of(process: subprocess.Popen[str], timeout_s: float) -> str:
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=timeout_s)
    return lines[0] if lines else ""


def run_until_output_then_interrupt(
    ws: Workspace, env: dict[str, str], state: list[str], line: str
) -> None:
    """A `--follow` command runs until Ctrl-C: wait for its first outcome, then press it."""
    script = "\n".join([*state, f"exec {line}"])
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=ws.cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        first = first_line_of(process, 60)
        assert first.strip(), f"{line}: printed nothing in 60 s"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, f"{line}: exit {process.returncode} after Ctrl-C"


def run_python(ws: Workspace, env: dict[str, str], state: list[str], block: str) -> None:
    """README's Python examples, in the shell the doc built up (so the emulator hosts are set).
    The subscriber's placeholder subscription is the one substitution: it runs until killed."""
    prelude = "\n".join(["set -eo pipefail", *state])
    if ".subscribe(" in block:
        mine = ws.stack.names.subscription(README_SUBSCRIPTION)
        block = block.replace("projects/P/subscriptions/S", mine)
        settle(ws.stack)
        process = subprocess.Popen(
            ["bash", "-c", f"{prelude}\nexec {sys.executable} -u -c {shlex.quote(block)}"],
            cwd=ws.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            first = first_line_of(process, 60)
        finally:
            process.kill()
            process.wait()
        assert re.match(r"^(\d+ [\d.]+ [\d.]+ |failed: )", first), f"subscriber printed {first!r}"
        return
    done = subprocess.run(
        ["bash", "-c", f"{prelude}\n{sys.executable} -c {shlex.quote(block)}"],
        cwd=ws.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize(
    "doc", [d for d in DOCS if commands_of(d)[0]], ids=lambda d: d.relative_to(REPO).as_posix()
)
def test_the_docs_commands_run_against_the_local_stack(workspace, doc):
    ws = workspace
    commands, _ = commands_of(doc)
    env = doc_env(ws, commands[0].doc)
    state: list[str] = []
    before = set(settle(ws.stack))
    for command in commands:
        if command.kind == "state":
            state.append(command.text)
        elif command.kind == "python":
            run_python(ws, env, state, command.text)
        else:
            run_shell(ws, env, state, command.text)
    outcomes = settle(ws.stack)
    # Every query the docs' commands uploaded is answered as they meant: searched, not refused
    # for its metadata (a comma in a prompt, a repeated --custom-metadata, ...).
    failed = {
        key: body["error"]
        for key, body in outcomes.items()
        if body["status"] != "success" and not key[0].startswith("habits/")
    }
    assert failed == {}, failed
    if any("upload_from" in c.text or "storage cp" in c.text for c in commands):
        assert set(outcomes) - before, "the doc's uploads made no new query"


# -- the gcloud habits the docs warn about, run with the real CLI ---------------------------

GCLOUD_HABITS = [
    # (the flags as typed in a shell, outcome: None = gcloud refuses and uploads nothing)
    ('--custom-metadata=video_no=VI123,prompt="a cat, on a sofa"', None),
    ('--custom-metadata=video_no=VI123 --custom-metadata=prompt="a cat"', "missing_video_no"),
    ("--custom-metadata=x-goog-meta-video_no=VI123,x-goog-meta-prompt=cat", "success"),
    ('--custom-metadata="^;^Video_No=VI123;prompt=a cat, on a sofa"', "success"),
]


@pytest.mark.parametrize(
    ("flags", "outcome"),
    GCLOUD_HABITS,
    ids=["comma-in-prompt", "repeated-flag", "x-goog-meta-prefix", "delimiter-form"],
)
def test_gcloud_upload_habits_end_as_the_docs_say(workspace, flags, outcome):
    ws = workspace
    name = f"habits/{GCLOUD_HABITS.index((flags, outcome))}.jpg"
    line = " ".join(["gcloud storage cp cat.jpg", f"gs://{ws.stack.names.query_bucket}/{name}"])
    done = subprocess.run(
        ["bash", "-c", f"{line} {flags}"],
        cwd=ws.cwd,
        env=doc_env(ws, "docs/deploy.md"),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    blob = ws.stack.storage.bucket(ws.stack.names.query_bucket).get_blob(name)
    if outcome is None:
        assert done.returncode == 2, done.stderr
        assert "Bad syntax for dict arg" in done.stderr
        assert blob is None  # nothing uploaded
        return
    assert done.returncode == 0, done.stderr
    assert blob is not None
    body = settle(ws.stack)[(name, int(blob.generation))]
    reason = body["error"]["reason"] if body["error"] else body["status"]
    assert reason == outcome, body
