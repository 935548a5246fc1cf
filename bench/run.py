"""`make bench`: every benchmark, one after the other; results land in bench/out/."""

from __future__ import annotations

import importlib
import sys

SUITES = ("bench.function", "bench.clipping", "bench.drain")


def main() -> int:
    for name in sys.argv[1:] or SUITES:
        print(f"== {name}", flush=True)
        importlib.import_module(name).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
