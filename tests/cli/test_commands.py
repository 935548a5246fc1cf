"""The `clipsearch` commands against in-memory fakes: parsing, checks, correlation, budgets."""

from __future__ import annotations

import io
import json
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clipsearch.contract import to_avro_json
from clipsearch.core import messages
from clipsearch.core.naming import result_name
from clipsearch.errors import Reason
from clipsearch_cli.app import main
from clipsearch_cli.backfill import MARKER
from clipsearch_cli.config import apply_env_file, parse_env_file
from clipsearch_cli.ports import Pulled
from clipsearch_dev.media import make_video
from tests.cli.fakes import (
    QUERIES,
    RESULTS,
    FakeStorage,
    FakeSubscriber,
    outcome,
    store_outcome,
)
from tests.images import image_bytes

ENV = {
    "CLIPSEARCH_QUERY_BUCKET": QUERIES,
    "CLIPSEARCH_RESULTS_BUCKET": RESULTS,
    "CLIPSEARCH_RESULTS_SUBSCRIPTION": "projects/p/subscriptions/results-reader",
    "CLIPSEARCH_ERRORS_SUBSCRIPTION": "projects/p/subscriptions/errors-reader",
}
RESULTS_SUB = ENV["CLIPSEARCH_RESULTS_SUBSCRIPTION"]
ERRORS_SUB = ENV["CLIPSEARCH_ERRORS_SUBSCRIPTION"]


@dataclass
class Clock:
    """A fake monotonic and wall clock that only `sleep` advances."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


def run(
    *argv: str,
    storage: FakeStorage | None = None,
    subscriber: FakeSubscriber | None = None,
    env: dict[str, str] | None = None,
    clock: Clock | None = None,
) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    clock = clock or Clock()
    code = main(
        ["--no-env-file", "--progress", "never", *argv],
        environ=dict(ENV if env is None else env),
        stdout=out,
        stderr=err,
        make_storage=lambda: storage or FakeStorage(),
        make_subscriber=lambda: subscriber or FakeSubscriber(),
        sleep=clock.sleep,
        clock=clock,
        wall=clock,
    )
    return Ran(code, out.getvalue(), err.getvalue())


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- help and errors ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["submit"], ["results"], ["backfill"], ["report"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "usage: clipsearch" in capsys.readouterr().out


def test_missing_configuration_is_one_line_and_exit_2(tmp_path):
    ran = run(
        "submit",
        str(write(tmp_path, "a.jpg", image_bytes())),
        "--video-no",
        "V",
        "--prompt",
        "p",
        env={},
    )
    assert ran.code == 2
    assert ran.err == "clipsearch: no query bucket: pass --bucket or set CLIPSEARCH_QUERY_BUCKET\n"


def test_a_failing_call_is_one_line_and_exit_1(tmp_path):
    class Broken(FakeStorage):
        def upload(self, *args: Any, **kwargs: Any) -> int:
            raise ConnectionError("connection refused\nsecond line")

    ran = run(
        "submit",
        str(write(tmp_path, "a.jpg", image_bytes())),
        "--video-no",
        "V",
        "--prompt",
        "p",
        storage=Broken(),
    )
    assert ran.code == 1
    assert ran.err == "clipsearch: ConnectionError: connection refused\n"


# -- submit --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "prompt", "reason"),
    [
        ("a.jpg", image_bytes(), " ", "missing_prompt"),
        ("a.txt", image_bytes(), "p", "unsupported_extension"),
        ("a.jpg", b"", "p", "empty_image"),
        ("a.jpg", b"hello, not an image", "p", "not_an_image"),
        ("a.jpg", image_bytes("png"), "p", "image_type_mismatch"),
        ("a.jpg", image_bytes()[:-40], "p", "truncated_image"),
        ("a.png", image_bytes("png"), "x" * 2001, "invalid_metadata"),
    ],
)
def test_submit_refuses_what_the_function_refuses_with_its_reason(
    tmp_path, name, data, prompt, reason
):
    storage = FakeStorage()
    ran = run(
        "submit",
        str(write(tmp_path, name, data)),
        "--video-no",
        "V",
        "--prompt",
        prompt,
        storage=storage,
    )
    assert ran.code == 1
    assert f"refused {tmp_path / name}: {reason}: " in ran.err
    assert storage.uploads == []


def test_submit_uploads_with_the_metadata_the_function_expects(tmp_path):
    storage = FakeStorage()
    image = write(tmp_path, "red.PNG", image_bytes("png"))
    ran = run(
        "submit",
        str(image),
        "--video-no",
        "V1",
        "--prompt",
        "red shirt",
        "--unique-id",
        "team",
        "--prefix",
        "shots/",
        "--json",
        storage=storage,
    )
    assert ran.code == 0, ran.err
    stored = storage.stat(QUERIES, "shots/red.PNG")
    assert stored is not None
    assert stored.metadata == {"video_no": "V1", "prompt": "red shirt", "unique_id": "team"}
    assert stored.content_type == "image/png"
    (line,) = ran.lines()
    assert line["generation"] == str(stored.generation)
    assert line["result_uri"] == (
        f"gs://{RESULTS}/{result_name('clipsearch/', QUERIES, 'shots/red.PNG', stored.generation)}"
    )


def test_submit_wait_correlates_by_generation_not_by_arrival(tmp_path):
    storage = FakeStorage()
    # An older generation of the same object already has an (error) outcome: not ours.
    first = storage.put(QUERIES, "a.jpg", image_bytes(), metadata={"video_no": "V1"})
    older = storage.stat(QUERIES, "a.jpg")
    assert older is not None
    store_outcome(storage, outcome(older, error=Reason.MISSING_PROMPT))

    pending: list[Any] = []

    def function(obj: Any) -> None:  # answers each upload later, in reverse order
        pending.append(obj)

    storage.on_finalize = function
    clock = Clock()
    real_read = storage.read

    def read(bucket: str, name: str) -> bytes | None:
        if len(pending) == 2 and storage.reads > 4:
            for obj in reversed(pending):
                store_outcome(storage, outcome(obj, clips=[(obj.generation, 0, 0.5)]))
            pending.clear()
        return real_read(bucket, name)

    storage.read = read  # type: ignore[method-assign]
    a = write(tmp_path, "a.jpg", image_bytes())
    b = write(tmp_path, "b.jpg", image_bytes())
    ran = run(
        "submit",
        str(a),
        str(b),
        "--video-no",
        "V1",
        "--prompt",
        "p",
        "--wait",
        "--json",
        storage=storage,
        clock=clock,
    )
    assert ran.code == 0, ran.err
    got = {(o["query"]["object"], o["query"]["generation"]) for o in ran.lines()}
    uploaded = {(name, str(gen)) for _, name, gen in storage.uploads}
    assert got == uploaded
    assert ("a.jpg", str(first)) not in got
    assert all(o["clips"][0]["start_time"] == int(o["query"]["generation"]) for o in ran.lines())
    assert clock.sleeps
    assert all(s <= 5.0 for s in clock.sleeps)


def test_submit_wait_table_and_exit_code_reflect_each_outcome(tmp_path):
    storage = FakeStorage()

    def function(obj: Any) -> None:
        if obj.name == "bad.jpg":
            store_outcome(storage, outcome(obj, error=Reason.API_REJECTED))
        else:
            store_outcome(storage, outcome(obj, clips=[(12.5, 18.25, 0.8631), (40, 41, 0.5)]))

    storage.on_finalize = function
    good = write(tmp_path, "good.jpg", image_bytes())
    bad = write(tmp_path, "bad.jpg", image_bytes())
    ran = run(
        "submit",
        str(good),
        str(bad),
        "--video-no",
        "V1",
        "--prompt",
        "p",
        "--wait",
        storage=storage,
    )
    assert ran.code == 1
    lines = ran.out.splitlines()
    assert lines[0].split() == ["query", "rank", "start-end", "score", "clip"]
    assert "12.50-18.25" in lines[1]
    assert "0.8631" in lines[1]
    assert "gs://results/clipsearch/videos/mavi-resource/V1.mp4" in lines[1]
    assert "error api_rejected: bad" in lines[3]


def test_submit_wait_times_out_with_one_line_per_missing_outcome(tmp_path):
    clock = Clock()
    ran = run(
        "submit",
        str(write(tmp_path, "a.jpg", image_bytes())),
        "--video-no",
        "V",
        "--prompt",
        "p",
        "--wait",
        "--timeout",
        "30",
        clock=clock,
    )
    assert ran.code == 1
    assert "no outcome for gs://queries/a.jpg#" in ran.err
    assert "within 30s" in ran.err
    assert sum(clock.sleeps) == pytest.approx(30)


# -- results -------------------------------------------------------------------------------


def _published(storage: FakeStorage, name: str, **kw: Any) -> dict[str, Any]:
    storage.put(QUERIES, name, image_bytes(), metadata={"video_no": "V1", "prompt": "p"})
    obj = storage.stat(QUERIES, name)
    assert obj is not None
    return outcome(obj, **kw)


def test_results_json_round_trips_the_wire_message():
    storage, subscriber = FakeStorage(), FakeSubscriber()
    ok = _published(storage, "a.jpg")
    bad = _published(storage, "b.jpg", error=Reason.NOT_AN_IMAGE)
    subscriber.add(RESULTS_SUB, messages.encode(to_avro_json(ok)), **messages.attributes(ok))
    subscriber.add(ERRORS_SUB, messages.encode(to_avro_json(bad)), **messages.attributes(bad))
    ran = run("results", "--json", subscriber=subscriber)
    assert ran.lines() == [ok, bad]
    assert ran.code == 1  # one outcome is an error
    assert sorted(subscriber.acked) == ["ack-0", "ack-1"]


def test_results_peek_leaves_messages_and_bad_messages_are_not_consumed():
    storage, subscriber = FakeStorage(), FakeSubscriber()
    ok = _published(storage, "a.jpg")
    subscriber.add(RESULTS_SUB, b"{not json")
    subscriber.add(RESULTS_SUB, messages.encode(to_avro_json(ok)))
    ran = run("results", "--peek", subscriber=subscriber)
    assert ran.code == 0
    assert "skipping message msg-0" in ran.err
    assert subscriber.acked == []
    assert sorted(subscriber.nacked) == ["ack-0", "ack-1"]
    assert "gs://queries/a.jpg#" in ran.out


def test_results_max_stops_early_and_follow_needs_a_subscription():
    storage, subscriber = FakeStorage(), FakeSubscriber()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        subscriber.add(RESULTS_SUB, messages.encode(to_avro_json(_published(storage, name))))
    ran = run("results", "--json", "--max", "2", "--follow", subscriber=subscriber)
    assert len(ran.lines()) == 2
    assert len(subscriber.queues[RESULTS_SUB]) == 1
    none = run("results", env={"CLIPSEARCH_QUERY_BUCKET": "q"})
    assert none.code == 2
    assert "no subscription" in none.err


class InterruptedDuringPull(FakeSubscriber):
    """Ctrl-C arrives while the first pull waits (as a user presses it during a long poll)."""

    def pull(self, subscription: str, max_messages: int, timeout_s: float) -> Sequence[Pulled]:
        if self.pulls == 0:
            os.kill(os.getpid(), signal.SIGINT)
        return super().pull(subscription, max_messages, timeout_s)


def test_ctrl_c_during_a_follow_ends_the_pull_in_flight_prints_and_acks_it_then_exits_130():
    storage, subscriber = FakeStorage(), InterruptedDuringPull()
    subscriber.add(RESULTS_SUB, messages.encode(to_avro_json(_published(storage, "a.jpg"))))
    previous = signal.getsignal(signal.SIGINT)
    ran = run("results", "--json", "--follow", "--subscription", RESULTS_SUB, subscriber=subscriber)
    assert ran.code == 130
    assert "interrupted" in ran.err
    assert subscriber.pulls == 1  # the interrupted pull ends as it would have, none follows
    assert len(ran.lines()) == 1
    assert subscriber.acked == ["ack-0"]
    assert signal.getsignal(signal.SIGINT) is previous  # Ctrl-C is the shell's again


# -- backfill ------------------------------------------------------------------------------


def _bucket_with_history(storage: FakeStorage) -> None:
    meta = {"video_no": "V1", "prompt": "p"}
    for i in range(5):
        storage.put(QUERIES, f"old/{i}.jpg", image_bytes(), metadata=meta)
    done = storage.stat(QUERIES, "old/0.jpg")
    assert done is not None
    store_outcome(storage, outcome(done))
    storage.put(QUERIES, "old/no-meta.jpg", image_bytes())
    storage.put(QUERIES, "old/notes.txt", b"x", "text/plain", meta)
    storage.put(QUERIES, "other/5.jpg", image_bytes(), metadata=meta)


def test_backfill_triggers_at_most_the_budget_paced_at_the_rate():
    storage, clock = FakeStorage(), Clock()
    _bucket_with_history(storage)
    ran = run(
        "backfill", "gs://queries/old/", "--budget", "2", "--json", storage=storage, clock=clock
    )
    assert ran.code == 0, ran.err
    assert [name for _, name, _ in storage.refinalized] == ["old/1.jpg", "old/2.jpg"]
    actions = {line["object"]: line["action"] for line in ran.lines()}
    assert actions == {"old/0.jpg": "done", "old/1.jpg": "triggered", "old/2.jpg": "triggered"}
    assert clock.sleeps == [pytest.approx(1.0)]
    assert "triggered 2 of a budget of 2; budget spent" in ran.err
    # the rewrite kept the metadata and added the marker
    after = storage.stat(QUERIES, "old/1.jpg")
    assert after is not None
    assert after.metadata["video_no"] == "V1"
    assert float(after.metadata[MARKER]) == clock.now - 1


def test_backfill_resumes_skipping_pending_and_done_and_never_loops():
    storage, clock = FakeStorage(), Clock()
    _bucket_with_history(storage)
    run("backfill", "gs://queries/old/", "--budget", "2", storage=storage, clock=clock)
    second = run(
        "backfill", "gs://queries/old/", "--budget", "10", "--json", storage=storage, clock=clock
    )
    actions = {line["object"]: line["action"] for line in second.lines()}
    assert actions == {
        "old/0.jpg": "done",
        "old/1.jpg": "pending",
        "old/2.jpg": "pending",
        "old/3.jpg": "triggered",
        "old/4.jpg": "triggered",
        "old/no-meta.jpg": "invalid",
        "old/notes.txt": "invalid",
    }
    assert len(storage.refinalized) == 4
    # once outcomes exist, nothing is left to trigger
    for _, name, _ in storage.refinalized:
        obj = storage.stat(QUERIES, name)
        assert obj is not None
        store_outcome(storage, outcome(obj))
    third = run("backfill", "gs://queries/old/", "--json", storage=storage, clock=clock)
    assert {line["action"] for line in third.lines()} == {"done", "invalid"}
    assert len(storage.refinalized) == 4


def test_backfill_retriggers_a_pending_object_after_the_grace_period():
    storage, clock = FakeStorage(), Clock()
    _bucket_with_history(storage)
    run("backfill", "gs://queries/old/1.jpg", storage=storage, clock=clock)
    clock.now += 901
    again = run("backfill", "gs://queries/old/1.jpg", "--json", storage=storage, clock=clock)
    assert [line["action"] for line in again.lines()] == ["triggered"]


def test_backfill_dry_run_lists_within_budget_and_triggers_nothing():
    storage = FakeStorage()
    _bucket_with_history(storage)
    ran = run("backfill", "gs://queries/", "--budget", "3", "--dry-run", storage=storage)
    assert storage.refinalized == []
    assert ran.out.count("would-trigger") == 3
    assert "would trigger 3 of a budget of 3" in ran.err


def test_backfill_reports_an_object_replaced_meanwhile():
    storage = FakeStorage()
    _bucket_with_history(storage)
    real = storage.refinalize

    def racing(obj: Any, metadata: Any) -> int:
        storage.put(obj.bucket, obj.name, b"new upload")  # a user replaced it meanwhile
        return real(obj, metadata)

    storage.refinalize = racing  # type: ignore[method-assign]
    ran = run("backfill", "gs://queries/old/1.jpg", "--json", storage=storage)
    assert [line["action"] for line in ran.lines()] == ["changed"]


def test_backfill_refuses_bad_locations_and_budgets():
    assert run("backfill", "queries/old").code == 2
    assert run("backfill", "gs://queries/", "--budget", "-1").code == 2
    assert run("backfill", "gs://queries/", "--rate", "0").code == 2


# -- report --------------------------------------------------------------------------------


def test_report_from_a_file_has_a_video_per_clip_with_times(tmp_path):
    storage = FakeStorage()
    message = _published(storage, "q<x>.jpg", clips=[(12.5, 18.2, 0.8631), (40.0, 42.0, 0.5)])
    message["query"]["prompt"] = "<script>alert(1)</script>"
    source = tmp_path / "outcome.json"
    source.write_text(json.dumps(to_avro_json(message)))  # the wire form works too
    out = tmp_path / "r" / "report.html"
    ran = run("report", str(source), "-o", str(out), storage=storage)
    assert ran.code == 0, ran.err
    page = out.read_text()
    assert page.count('<video controls preload="metadata"') == 2
    assert (
        'src="http://media.test/results/clipsearch/videos/mavi-resource/V1.mp4#t=12.5,18.2"' in page
    )
    assert "12.50&ndash;18.20 s" in page
    assert "score 0.8631" in page
    assert "data:image/jpeg;base64," in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_report_embed_downloads_videos_once_and_draws_posters(tmp_path):
    storage = FakeStorage()
    video = make_video(tmp_path / "v.mp4", seconds=3)
    message = _published(storage, "a.jpg", clips=[(0.0, 1.0, 0.9), (2.0, 3.0, 0.5)])
    artifact = message["clips"][0]["artifact"]
    storage.put(artifact["bucket"], artifact["object"], video.path.read_bytes(), "video/mp4")
    source = tmp_path / "o.json"
    source.write_text(json.dumps(message))
    ran = run("report", str(source), "-o", str(tmp_path / "rep.html"), "--embed", storage=storage)
    assert ran.code == 0, ran.err
    files = sorted(p.name for p in (tmp_path / "rep_files").iterdir())
    assert files == ["poster-1.jpg", "poster-2.jpg", "video-1.mp4"]
    page = (tmp_path / "rep.html").read_text()
    assert 'poster="rep_files/poster-2.jpg"' in page
    assert 'src="rep_files/video-1.mp4#t=2,3"' in page
    assert (tmp_path / "rep_files" / "poster-1.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_report_query_finds_the_outcome_of_the_current_generation(tmp_path):
    storage = FakeStorage()
    message = _published(storage, "a.jpg", clips=[(1.0, 2.0, 0.7)])
    store_outcome(storage, message)
    out = tmp_path / "r.html"
    ran = run("report", "--query", "gs://queries/a.jpg", "-o", str(out), storage=storage)
    assert ran.code == 0, ran.err
    assert "#t=1,2" in out.read_text()
    missing = run("report", "--query", "gs://queries/a.jpg#5", "-o", str(out), storage=storage)
    assert missing.code == 1
    assert missing.err.startswith("clipsearch: no outcome yet for gs://queries/a.jpg#5")
    both = run("report", "x.json", "--query", "gs://q/a.jpg", "-o", str(out))
    assert both.code == 2


def test_report_of_an_error_outcome_says_why_and_exits_1(tmp_path):
    storage = FakeStorage()
    message = _published(storage, "a.jpg", error=Reason.MISSING_PROMPT)
    source = tmp_path / "o.json"
    source.write_text(json.dumps(message))
    ran = run("report", str(source), "-o", str(tmp_path / "r.html"), storage=storage)
    assert ran.code == 1
    assert "error missing_prompt: bad" in (tmp_path / "r.html").read_text()


# -- env file ------------------------------------------------------------------------------


def test_env_file_parsing_and_precedence(tmp_path, monkeypatch):
    env_file = tmp_path / "env"
    env_file.write_text(
        "export CLIPSEARCH_QUERY_BUCKET=from-file\n"
        "export CLIPSEARCH_RESULTS_BUCKET='with space'\n"
        "# comment\n\nSTORAGE_EMULATOR_HOST=http://127.0.0.1:1\n"
    )
    assert parse_env_file(env_file) == {
        "CLIPSEARCH_QUERY_BUCKET": "from-file",
        "CLIPSEARCH_RESULTS_BUCKET": "with space",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1",
    }
    explicit = {"CLIPSEARCH_QUERY_BUCKET": "from-env"}
    apply_env_file(env_file, explicit)
    assert explicit["CLIPSEARCH_QUERY_BUCKET"] == "from-file"  # asked for: it wins

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack" / "env").write_text(env_file.read_text())
    configured = {"CLIPSEARCH_QUERY_BUCKET": "from-env"}
    assert apply_env_file(None, configured) is None  # already configured: default not read
    assert configured == {"CLIPSEARCH_QUERY_BUCKET": "from-env"}
    bare = {"CLIPSEARCH_RESULTS_BUCKET": "mine"}
    apply_env_file(None, bare)
    assert bare["CLIPSEARCH_QUERY_BUCKET"] == "from-file"
    assert bare["CLIPSEARCH_RESULTS_BUCKET"] == "mine"  # never overridden by the default file
    (tmp_path / "broken").write_text("no equals sign\n")
    with pytest.raises(Exception, match="expected KEY=VALUE"):
        parse_env_file(tmp_path / "broken")


def test_report_plays_a_cut_clip_in_its_own_time_line_with_its_stored_poster(tmp_path):
    storage = FakeStorage()
    message = _published(storage, "a.jpg", clips=[(28.5, 36.5, 0.9)])
    message["clips"][0]["artifact"].update(
        {
            "mode": "clip",
            "object": "clipsearch/clips/x/28.500-36.500.mp4",
            "start_time": 27.7,
            "end_time": 36.5,
            "poster_uri": "gs://results/clipsearch/clips/x/28.500-36.500.jpg",
        }
    )
    source = tmp_path / "o.json"
    source.write_text(json.dumps(message))
    out = tmp_path / "r.html"
    assert run("report", str(source), "-o", str(out), storage=storage).code == 0
    page = out.read_text()
    assert 'src="http://media.test/results/clipsearch/clips/x/28.500-36.500.mp4#t=0.8,8.8"' in page
    assert 'poster="http://media.test/results/clipsearch/clips/x/28.500-36.500.jpg"' in page
