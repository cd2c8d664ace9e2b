"""Prints how many cases each fuzzer ran (by surface and front) at the end of the run, and
writes them as JSON to ``$AUTHMW_FUZZ_REPORT`` when set (``scripts/reliability`` does)."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.support.reliability import CASES
from tests.support.tls import RESENT


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The case counts, one line per surface and front."""
    if not CASES:
        return
    terminalreporter.section("reliability: cases run per surface")
    totals: dict[str, int] = {}
    for (surface, front), count in sorted(CASES.items()):
        terminalreporter.write_line(f"{surface:<14} {front:<12} {count:>8}")
        totals[surface] = totals.get(surface, 0) + count
    for surface, count in sorted(totals.items()):
        terminalreporter.write_line(f"{surface:<14} {'(all)':<12} {count:>8}")
    terminalreporter.write_line(f"{'total':<27} {sum(CASES.values()):>8}")
    for (version, error), count in sorted(RESENT.items()):  # tests/support/tls.py's _send
        terminalreporter.write_line(f"resent after {error} on a dead {version} connection: {count}")
    path = os.environ.get("AUTHMW_FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({f"{s}/{fr}": n for (s, fr), n in sorted(CASES.items())}, f, indent=1)
