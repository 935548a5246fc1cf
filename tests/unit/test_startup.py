"""The function's imports run with the garbage collector paused, and what they made is frozen
out of later collections; the collector is on again for the events."""

from __future__ import annotations

from tests.fresh import run_fresh

IMPORT_MAIN = """
import gc, json, sys
import functions_framework, cloudevents.http  # as the framework's CLI has, before it loads main
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
frozen_before = gc.get_freeze_count()
import main
print(json.dumps({"enabled": gc.isenabled(), "frozen_before": frozen_before,
                  "frozen": gc.get_freeze_count(), "collections": len(collections),
                  "entrypoint": "clipsearch.entrypoint" in sys.modules}))
"""


def test_importing_the_function_collects_nothing_freezes_its_objects_and_leaves_gc_on():
    found = run_fresh(IMPORT_MAIN)
    assert found["entrypoint"]
    assert found["enabled"]
    assert found["frozen_before"] == 0
    assert int(found["frozen"]) > 50_000  # the storage client and its libraries, at least
    assert found["collections"] == 0


BLOCK = """
import gc, json
from clipsearch.startup import frozen_imports
gc.disable() if %(disabled)r else gc.enable()
seen = {}
try:
    with frozen_imports():
        seen["inside"] = gc.isenabled()
        made = [[] for _ in range(1000)]
        raise ValueError("an import failed")
except ValueError:
    seen["raised"] = True
seen["after"] = gc.isenabled()
seen["frozen"] = gc.get_freeze_count() >= 1000
print(json.dumps(seen))
"""


def test_the_block_runs_without_collections_and_the_previous_state_comes_back_even_on_error():
    for disabled in (False, True):
        assert run_fresh(BLOCK % {"disabled": disabled}) == {
            "inside": False,
            "raised": True,
            "after": not disabled,
            "frozen": True,
        }
