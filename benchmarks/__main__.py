"""``python -m benchmarks``: set up the benchmark's virtualenv if needed, then run the harness."""

from __future__ import annotations

import sys

from benchmarks._env import bootstrap

if __name__ == "__main__":
    bootstrap(sys.argv[1:])
    from benchmarks.harness import main

    raise SystemExit(main(sys.argv[1:]))
