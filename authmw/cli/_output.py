"""Output helpers of the ``authmw`` command line: tables, JSON, a progress bar, one-line errors.

URLs are shown and secrets masked by the one rule of :mod:`authmw.storage._urls`, re-exported
here for the commands.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ..storage import _urls
from ..storage._urls import redact_url, secrets_of

__all__ = ["ProgressBar", "emit_json", "redact_url", "scrub", "secrets_of", "table"]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` on one line (a command's error is one line), with every secret replaced by
    ``***`` by the one redaction rule of :mod:`authmw.storage._urls`."""
    return " ".join(_urls.scrub(text, secrets).split())


def emit_json(data: Any, out: TextIO | None = None) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2, sort_keys=False, default=str), file=out or sys.stdout)


def table(rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Print rows as left-aligned columns, the first row as a header with a rule under it."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(cells[0]))]
    stream = out or sys.stdout
    for n, row in enumerate(cells):
        print(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip(), file=stream
        )
        if n == 0 and len(cells) > 1:
            print("  ".join("-" * w for w in widths), file=stream)


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second.

    Shown when ``enabled`` is True, or when it is None and stderr is a terminal.
    """

    WIDTH = 30

    def __init__(self, enabled: bool | None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._shown = False

    def update(self, label: str, done: int, total: int | None, *, force: bool = False) -> None:
        """Redraw with ``done`` of ``total`` (None: unknown) records of ``label``."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        if total:
            share = min(done / total, 1.0)
            filled = int(share * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            text = f"{label:<9} [{bar}] {done}/{total} {share:4.0%}"
        else:
            text = f"{label:<9} {done} records"
        end = "\r" if self.stream.isatty() else "\n"
        self.stream.write(f"\r{text:<70}{end}" if end == "\r" else f"{text}{end}")
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        """End the bar's line."""
        if self.enabled and self._shown and self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
        self._shown = False
