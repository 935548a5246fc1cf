"""What the first event needs only after its search (the Pub/Sub client, the clip engine) loads
off the import path: on the warm-up's thread while that search is in flight, or else where it
is used."""

from __future__ import annotations

import threading

import pytest

from clipsearch.adapters.pubsub import LazyPublisher
from tests.fresh import run_fresh


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        self.sent.append((topic, data, attributes))
        return f"id-{len(self.sent)}"


class SlowBuild:
    """A build that blocks until released, records its thread, and fails while told to."""

    def __init__(self, failures: int = 0) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.threads: list[str] = []
        self.failures = failures
        self.publisher = Recorder()

    def __call__(self) -> Recorder:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        self.release.wait(10)
        if self.failures:
            self.failures -= 1
            raise PermissionError("no default credentials")
        return self.publisher


def test_prepare_builds_on_its_thread_and_a_publish_meanwhile_waits_for_that_build():
    build = SlowBuild()
    publisher = LazyPublisher(build)
    assert build.threads == []  # nothing is built at construction
    preparer = threading.Thread(target=publisher.prepare, name="warmup")
    preparer.start()
    assert build.entered.wait(10)
    result: list[str] = []
    waiter = threading.Thread(target=lambda: result.append(publisher.publish("t", b"x", {})))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # the publish waits for the build under way
    build.release.set()
    waiter.join(10)
    preparer.join(10)
    assert result == ["id-1"]
    assert build.publisher.sent == [("t", b"x", {})]
    assert publisher.publish("t", b"y", {"a": "b"}) == "id-2"
    assert build.threads == ["warmup"]  # built once, by prepare


def test_without_prepare_the_first_publish_builds():
    build = SlowBuild()
    build.release.set()
    publisher = LazyPublisher(build)
    assert publisher.publish("t", b"x", {}) == "id-1"
    publisher.prepare()  # a later prepare builds nothing more
    assert build.threads == [threading.current_thread().name]


def test_a_failed_prepare_raises_its_error_at_the_first_publish_and_the_next_builds_again():
    build = SlowBuild(failures=1)
    build.release.set()
    publisher = LazyPublisher(build)
    publisher.prepare()  # does not raise: the failure is the publish's
    with pytest.raises(PermissionError, match="no default credentials"):
        publisher.publish("t", b"x", {})
    assert publisher.publish("t", b"x", {}) == "id-1"
    assert len(build.threads) == 2


def test_a_failed_build_raises_its_own_error_at_the_publish_and_the_next_publish_builds_again():
    build = SlowBuild(failures=1)
    build.release.set()
    publisher = LazyPublisher(build)
    with pytest.raises(PermissionError, match="no default credentials"):
        publisher.publish("t", b"x", {})
    assert publisher.publish("t", b"x", {}) == "id-1"
    assert len(build.threads) == 2


def test_concurrent_publishes_that_meet_a_failed_build_start_one_new_build():
    build = SlowBuild(failures=1)
    publisher = LazyPublisher(build)
    preparer = threading.Thread(target=publisher.prepare)
    preparer.start()
    assert build.entered.wait(10)
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            publisher.publish("t", b"x", {})
        except PermissionError as error:
            errors.append(error)

    waiters = [threading.Thread(target=publish) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    build.release.set()
    for waiter in waiters:
        waiter.join(10)
    preparer.join(10)
    assert len(errors) == 4  # every publish that waited on the failed build says why
    assert publisher.publish("t", b"x", {}) == "id-1"
    assert len(build.threads) == 2  # one rebuild, not one per failed publish


PROBE = """
import json, sys
import main
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.startswith(%r)),
                  "storage": "google.cloud.storage" in sys.modules}))
"""

LATER = ("google.cloud.pubsub", "av", "clipsearch.clipping.cutter", "clipsearch.clipping.poster")


@pytest.mark.parametrize("prefix", LATER)
def test_importing_the_function_leaves_what_it_needs_after_its_search_unloaded(prefix: str):
    found = run_fresh(PROBE % prefix)
    assert found["storage"]  # the probe saw the function's imports happen
    assert found["loaded"] == []


IMPORTER = """
import json, sys
from clipsearch.warmup import importer
before = "clipsearch.clipping.poster" in sys.modules
importer(["clipsearch_no_such_module", "clipsearch.clipping.poster"])()
try:
    import clipsearch_no_such_module
    use = "imported"
except ModuleNotFoundError:
    use = "ModuleNotFoundError"
print(json.dumps({"before": before, "after": "clipsearch.clipping.poster" in sys.modules,
                  "use": use}))
"""


def test_the_importer_loads_the_modules_and_keeps_a_failure_for_their_use():
    assert run_fresh(IMPORTER) == {
        "before": False,
        "after": True,  # the failed import before it did not stop it
        "use": "ModuleNotFoundError",  # the use raises it, as it would without the warm-up
    }
