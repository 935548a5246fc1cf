"""The clip engine imports no network client: Cloud Storage and HTTP sources are adapters.

Each check runs in a fresh interpreter, since this test process has long imported them all.
"""

from __future__ import annotations

from tests.fresh import run_fresh

FORBIDDEN = ("google.cloud", "google.api_core", "requests")

# Imports every module under clipsearch.clipping, one by one, and names the first module whose
# import brought in each forbidden package.
PROBE = """
import importlib, json, pkgutil, sys

FORBIDDEN = {forbidden!r}

def loaded():
    return {{m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}}

before = loaded()  # a namespace package (google.cloud) may be set up by a .pth at start
real = sorted(m for m in before if getattr(sys.modules[m], "__file__", None))
import clipsearch.clipping as package

names = [package.__name__] + sorted(
    m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
)
seen = set(before)
blame = {{}}
for name in names:
    importlib.import_module(name)
    new = loaded() - seen
    if new:
        blame[name] = sorted({{f for f in FORBIDDEN for m in new if m.startswith(f)}})
        seen |= new
print(json.dumps({{"real_before": real, "modules": names, "blame": blame}}))
"""


def probe() -> dict[str, object]:
    result: dict[str, object] = run_fresh(PROBE.format(forbidden=FORBIDDEN))
    return result


def test_no_clipping_module_imports_google_cloud_or_requests() -> None:
    result = probe()
    assert result["real_before"] == []  # nothing real loaded yet: the probe can see a change
    modules = result["modules"]
    assert isinstance(modules, list)
    # The walk found the engine, not just the package: a broken walk must not pass.
    assert {"clipsearch.clipping.sources", "clipsearch.clipping.cutter"} <= set(modules)
    assert result["blame"] == {}, f"clipping/ imports a network client: {result['blame']}"
