"""Output helpers of the ``authmw`` command line: tables, JSON, a progress bar, redaction."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["ProgressBar", "emit_json", "redact_url", "scrub", "secrets_of", "table"]


def redact_url(url: str) -> str:
    """``url`` with its password (and any ``*password*`` query value) shown as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = parts.query
    if any("password" in k.lower() for k, _ in pairs):
        query = urlencode([(k, "***" if "password" in k.lower() else v) for k, v in pairs],
                          safe="*:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(urls: Iterable[str | None]) -> list[str]:
    """The passwords written into ``urls`` (raw and percent-decoded), to scrub from messages."""
    found: list[str] = []
    for url in urls:
        if not url:
            continue
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            raw = userinfo.partition(":")[2]
            found += [raw, unquote(raw)]
        found += [v for k, v in parse_qsl(parts.query) if "password" in k.lower()]
    # Longest first, so a password containing another is masked whole.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` on one line, with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())


def emit_json(data: Any, out: TextIO | None = None) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2, sort_keys=False, default=str), file=out or sys.stdout)


def table(rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Print rows as left-aligned columns, the first row as a header with a rule under it."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(cells[0]))]
    stream = out or sys.stdout
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip(),
              file=stream)
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
