"""Rows of the results table, the table itself, and the Markdown report.

A row is one case: our figure, the peer's figure measured beside it, the ratio (median of the
per-round ratios, see :mod:`benchmarks.timing`), the target the issue sets and whether this
run met it. Rows are built with :func:`compare`, :func:`reference` and :func:`absolute`, so
every module words figures and targets the same way.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.timing import median, median_ratio

__all__ = [
    "Row",
    "absolute",
    "compare",
    "failed",
    "format_table",
    "machine",
    "reference",
    "write_markdown",
]

#: Packages whose versions the Markdown report lists (those installed).
PACKAGES = (
    "authmw",
    "starlette",
    "fastapi",
    "uvicorn",
    "httptools",
    "uvloop",
    "redis",
    "hiredis",
    "asyncpg",
    "sqlalchemy",
    "starsessions",
    "fastapi-users",
    "fastapi-users-db-sqlalchemy",
    "flask",
    "flask-login",
    "flask-session",
    "werkzeug",
    "itsdangerous",
    "argon2-cffi",
    "httpx",
)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table. ``met`` is None where there is no target."""

    section: str
    case: str
    figure: str
    peer: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        """``yes``, ``NO`` or empty (no target)."""
        if self.met is None:
            return ""
        return "yes" if self.met else "NO"


def _ratio(value: float) -> str:
    # Small ratios (cold verify against a dict lookup) need a third digit to mean anything.
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.3f}x"


def _amount(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.2f} ms"
    return f"{value:,.0f} {unit}".rstrip()


def compare(
    section: str,
    case: str,
    ours: Sequence[float],
    theirs: Sequence[float],
    peer: str,
    *,
    unit: str = "req/s",
    at_least: float | None = None,
    lead: bool = False,
    detail: str = "",
    peer_detail: str = "",
) -> Row:
    """Our rates beside a peer's, measured in the same rounds.

    ``at_least`` is the issue's ratio target; ``lead=True`` without it means the issue's
    headline "lead every peer" (ratio >= 1.0). Neither: no target, the row only informs.
    """
    ratio = median_ratio(ours, theirs)
    target, met = "", None
    if at_least is None and lead:
        at_least = 1.0
    if at_least is not None:
        target = f">= {_ratio(at_least)}" + (" (lead)" if lead else "")
        met = ratio >= at_least
    return Row(
        section,
        case,
        _amount(median(ours), unit) + (f", {detail}" if detail else ""),
        f"{peer}: {_amount(median(theirs), unit)}" + (f", {peer_detail}" if peer_detail else ""),
        _ratio(ratio),
        target,
        met,
    )


def reference(
    section: str, case: str, values: Sequence[float], *, unit: str = "req/s", note: str = ""
) -> Row:
    """A figure shown for scale only (e.g. the bare app): no peer, no target."""
    return Row(section, case, _amount(median(values), unit), note)


def absolute(
    section: str,
    case: str,
    value: float,
    *,
    unit: str,
    peer: str = "",
    ratio: str = "",
    at_least: float | None = None,
    at_most: float | None = None,
    target_unit: str | None = None,
) -> Row:
    """A figure with an absolute target (a rate floor, a byte or millisecond ceiling)."""
    target_unit = unit if target_unit is None else target_unit
    target, met = "", None
    if at_least is not None:
        target, met = f">= {_amount(at_least, target_unit)}", value >= at_least
    elif at_most is not None:
        target, met = f"<= {_amount(at_most, target_unit)}", value <= at_most
    return Row(section, case, _amount(value, unit), peer, ratio, target, met)


def failed(section: str, case: str, error: BaseException) -> Row:
    """A case that could not run (a peer missing, a server down): said in the table."""
    message = f"{type(error).__name__}: {error}".replace("\n", " ")
    return Row(section, case, "not measured", message[:160])


HEADERS = ("case", "figure", "peer figure", "ratio", "target", "met?")


def _cells(row: Row) -> tuple[str, ...]:
    return (row.case, row.figure, row.peer, row.ratio, row.target, row.verdict)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table, one block per section."""
    widths = [max([len(h)] + [len(_cells(r)[i]) for r in rows]) for i, h in enumerate(HEADERS)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines.append(f"[{section}]")
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(_cells(row), widths, strict=True)).rstrip()
        )
    return "\n".join(lines)


def _markdown_table(rows: Sequence[Row]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = []
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines += [
                "",
                f"### {section}",
                "",
                "| " + " | ".join(HEADERS) + " |",
                "| " + " | ".join("---" for _ in HEADERS) + " |",
            ]
        lines.append("| " + " | ".join(cell(c) for c in _cells(row)) + " |")
    return "\n".join(lines).lstrip("\n")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(servers: dict[str, str]) -> list[str]:
    """Lines describing where the figures come from: CPU, cores, Python, versions, servers."""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    lines = [
        f"CPU: {_cpu_model()}, {os.cpu_count()} logical cores",
        f"OS: {platform.system()} {platform.release()}",
        f"Python: {sys.version.split()[0]} ({platform.python_implementation()})",
        "Packages: " + ", ".join(versions),
    ]
    lines += [f"{name}: {version}" for name, version in servers.items()]
    return lines


READING = """\
## How to read ratios on a noisy machine

- Every ratio compares two figures taken **in the same run, on the same machine, in the same
  rounds**: each round runs every contender once, in turn (the order rotates), and the ratio
  shown is the **median of the per-round ratios**. Load that comes and goes (a test suite, a
  compiler, the other core's work) then falls on both sides of a ratio alike, and one slow
  round moves neither side alone. Absolute figures (requests/s, verifications/s) move with the
  machine and its load; ratios move far less. Compare ratios between runs, not raw rates.
- The machine shares its cores between the benchmark, Redis, PostgreSQL and (over HTTP) wrk
  and uvicorn. On 2 cores a ratio near a target (within about 5-10 %) is a tie: rerun, ideally
  on a quiet machine, before calling it met or missed. The load average at the end of the run
  is printed above the table; a load above the core count means the figures were contended.
- In-process cases call the ASGI app with a prebuilt scope, or the WSGI app with a prebuilt
  environ: no sockets, no HTTP parsing, so the ratio isolates what each middleware costs per
  request. The HTTP matrix adds uvicorn, the kernel's loopback and wrk, which shrink every
  middleware's share; it answers "what does a user see" rather than "which middleware is
  cheaper".
- Cases that wait on Redis or PostgreSQL run with many concurrent callers (the column says
  how many) and equal connection pools on both sides; their rates depend on the servers'
  latency as much as on Python, and the bare-driver rows show the physical limit.
- `--quick` runs fewer, shorter rounds: good for checking that everything runs, too short for
  figures worth quoting. Quote a full run.
- "(lead)" targets come from the issue's headline, "on the same job we must be faster": a
  ratio of at least 1.00x. Other targets are the issue's numbered targets.
"""


MISSES = """\
## Where a target is missed, and why

The figures here come from profiles and A/B runs of CPU time per request (`python -m
benchmarks.profile_pass`, `timeit`); a reason given without a figure is an explanation not
measured yet.

- **Bearer middleware vs Starlette's `AuthenticationMiddleware` + dict (1.1x).** 1.1x would
  leave authmw about 1.6 us of work per request where Starlette's middleware spends about
  2.6 us on one dict lookup and two objects. authmw's 3.3 us go to: the middleware layer (0.2,
  which the peer pays too), one scan of the headers with the request state (0.4), five scope
  keys with the credentials (0.5; the fifth key resizes the scope dict), the context variable
  behind `current_user()` (0.2), the `send` wrapper that sets cookies after a login on any
  request (0.3) and `verify_nowait` (0.5: the verified-token memo, the storage read, the
  expiry and revocation checks, the live account check). Each of these is a documented
  behaviour; none is repeated work. A per-storage token generation (one memo check instead of
  the storage read) would save about 0.3 us more.
- **Cold verify (0.15x of an awaited dict lookup).** 0.15x of the baseline leaves about
  1.8 us per verify. Parsing the token with its keyed BLAKE2b tag check takes 1.45 us and the
  SHA-256 digest of the verifier 0.41 us (`timeit`, best of 5): the two checks that make a
  token unforgeable and a stolen database useless use the whole budget before the storage
  read, the expiry and revocation checks and the account check.
- **Memory per in-memory token (700 B).** The record keeps a creation time, a login time, the
  client's address and user agent (accounts, per-device control) and two cached expiry
  timestamps (the hot path compares floats, not datetimes); the two digests and two selectors
  are 272 B on their own.
- **Uncached Redis against Starlette + one redis-py `GET` (a lead target).** The peer's
  lookup reads one short string; authmw reads the token and its owner in one round trip (a Lua
  script) and checks both on every request, so that a revocation, a disabled account or a role
  change acts on the next request. On PostgreSQL the same read (a join) keeps level with the
  peer's `SELECT`; a local cache puts both far ahead.
- **Flask sessions on uncached Redis against Flask-Session (a lead target).** Flask-Session's
  synchronous client reads and writes on the request's own thread; authmw's WSGI middleware
  hands each storage call to its event-loop thread and back (one async storage layer serves
  ASGI and WSGI alike). That hop is the difference not closed yet; with the cache, authmw
  leads by several times.
- **Redis cache misses (50,000/s at 64 callers).** Concurrent misses are gathered into one
  `MGET` per batch, so authmw runs at about twice the rate of one redis-py `GET` per call on
  the same pool; what remains is client CPU per record (decoding the JSON record, the tag and
  digest checks, the account check), spread evenly in the profile.
- **HTTP at 16 and 64 connections, and 2 workers scaling 1.6x.** wrk, uvicorn's workers,
  Redis and the benchmark share 2 cores: at 64 connections each side is CPU-bound, so any
  per-request work shows in full, and a second worker has no core of its own.
"""


def write_markdown(
    path: Path,
    rows: Sequence[Row],
    *,
    command: str,
    machine_lines: list[str],
    wall_seconds: float,
    load: str,
    notes: Sequence[str],
) -> None:
    """Write the report meant for ``docs/performance.md``: table, machine, command, reading."""
    parts = [
        "# Performance",
        "",
        "authmw measured beside the libraries people would use instead of it, in one run of the "
        "benchmark command on one machine. Generated by `python -m benchmarks --markdown "
        "docs/performance.md`; do not edit by hand, rerun the command.",
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
        f"Wall time {wall_seconds:.0f} s; {load}.",
        "",
        "## Machine",
        "",
        *[f"- {line}" for line in machine_lines],
        "",
        "## Results",
        "",
        _markdown_table(rows),
        "",
    ]
    if notes:
        parts += ["## Notes on the cases", "", *[f"- {note}" for note in notes], ""]
    parts += [MISSES, READING]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
