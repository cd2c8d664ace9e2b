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

__all__ = [
    "ProgressBar",
    "emit_json",
    "human_bytes",
    "human_count",
    "redact_url",
    "scrub",
    "secrets_of",
    "table",
]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` on one line (a command's error is one line), with every secret replaced by
    ``***`` by the one redaction rule of :mod:`authmw.storage._urls`."""
    return " ".join(_urls.scrub(text, secrets).split())


def emit_json(data: Any, out: TextIO | None = None) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2, sort_keys=False, default=str), file=out or sys.stdout)


def human_bytes(size: float | None) -> str:
    """``size`` bytes in decimal units, as people read them: ``125.4 MB``; ``-`` when unknown."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


def human_count(value: object) -> str:
    """A count with thousands separators (``12,345``); ``-`` when unknown; other values as text."""
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _duration(seconds: float) -> str:
    """``seconds`` as ``m:ss`` (or ``h:mm:ss``), the way progress bars show time."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
    """A one-line progress bar on stderr with rate, elapsed time and ETA, redrawn at most ten
    times a second.

    Shown when ``enabled`` is True, or when it is None and stderr is a terminal. Our own rather
    than tqdm or rich: those add 8-44 ms to every command's start for one line of output.
    """

    WIDTH = 24

    def __init__(self, enabled: bool | None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._shown = False
        self._label = ""
        self._started = 0.0

    def update(self, label: str, done: int, total: int | None, *, force: bool = False) -> None:
        """Redraw with ``done`` of ``total`` (None: unknown) records of ``label``."""
        if not self.enabled:
            return
        now = time.monotonic()
        if label != self._label:  # each kind is timed on its own: its rate and ETA
            self._label, self._started = label, now
        if not force and now - self._last < 0.1:
            return
        self._last = now
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        timing = f"{_duration(elapsed)} elapsed, {rate:,.0f}/s"
        if total:
            share = min(done / total, 1.0)
            filled = int(share * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            eta = _duration((total - done) / rate) if rate > 0 and done < total else "0:00"
            text = f"{label:<9} [{bar}] {done:,}/{total:,} {share:4.0%} {timing}, ETA {eta}"
        else:
            text = f"{label:<9} {done:,} records, {timing}"
        if self.stream.isatty():
            self.stream.write(f"\r{text:<90}")
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        """End the bar's line."""
        if self.enabled and self._shown and self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
        self._shown = False
