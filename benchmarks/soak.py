"""Soak: steady load on each backend for a long while, RSS and p99 latency every interval.

``scripts/soak`` (or ``python -m benchmarks.soak``) runs, for each backend in turn, a Starlette
app behind ``AuthMiddleware`` in this process, driven in-process (httpx's ASGI transport) by
``--clients`` concurrent loops: 85 % bearer-token requests over a fixed set of 200 tokens, 10 %
session-cookie requests over 50 sessions, 5 % logins whose token is deleted again (so the
stored data stays the same size and a growing RSS means a leak, not data). Every
``--interval`` seconds it records the process RSS (with the C heap in use and kept free, and
Python's blocks and arenas in use, to tell a leak from allocator growth), the p50/p99 latency
of the requests and the p99 of the logins (argon2 runs in a bounded pool, so logins queue
apart) and the errors of that interval, and prints one table per backend and a summary. Not
a CI test: nothing is asserted, the figures are for reading (docs/reliability.md quotes them).

Backends: ``memory`` (plain), ``redis`` and ``postgres`` behind the local cache
(``storage_from_url(url, cache=True)``), on ``AUTHMW_REDIS_URL`` / ``AUTHMW_POSTGRES_URL`` or the
local servers, each under a key/table prefix of its own that is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import random
import re
import secrets
import statistics
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from authmw import (
    AuthConfig,
    AuthFramework,
    AuthMiddleware,
    InMemoryConfig,
    InMemoryStorage,
    storage_from_url,
)
from authmw.middleware._cookies import SessionCookieCodec  # signs the cookies the app reads
from authmw.storage import AuthStorage, CachedStorage
from authmw.testing import fast_password_hasher

SECRET = "soak-secret-key-0123456789abcdef0123456789"
REDIS_URL = os.environ.get("AUTHMW_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "AUTHMW_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("memory", "redis", "postgres")
TOKENS, SESSIONS = 200, 50
# Logins go to users of their own, many of them: more than max_failed_logins (5) logins of one
# user from one address in flight at once are refused by design (the count is reserved before
# the hash is checked; docs/lockout.md), and the soak measures the steady state, not that rule.
LOGIN_USERS = 200


@dataclass
class Row:
    """One interval of one backend."""

    t: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    login_p99_ms: float
    errors: int
    rss_mb: float
    error_kinds: dict[str, int]
    py_blocks: int = 0  # Python objects' small blocks in use (sys.getallocatedblocks)
    malloc_mb: float | None = None  # bytes the C allocator has handed out and not got back
    malloc_free_mb: float | None = None  # free bytes the C allocator keeps in its arenas
    py_arenas: int | None = None  # pymalloc's arenas held (1 MiB each on 64-bit builds)
    heap_mb: float | None = None  # Python allocations tracemalloc holds (--trace only)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _find_mallinfo2() -> Any:
    """glibc's ``mallinfo2`` with its return type set, or None where there is no glibc."""
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _find_mallinfo2()


def malloc_mb() -> tuple[float | None, float | None]:
    """The C heap (glibc ``mallinfo2``) in MiB: (in use: allocated chunks plus mmapped blocks,
    free but kept in the allocator's arenas); (None, None) where there is no glibc."""
    if _MALLINFO2 is None:
        return None, None
    info = _MALLINFO2()
    return round((info.uordblks + info.hblkhd) / 2**20, 1), round(info.fordblks / 2**20, 1)


def pymalloc_arenas() -> int | None:
    """How many arenas Python's small-object allocator holds (from ``sys._debugmallocstats``,
    which writes to the C stderr: caught in a temporary file)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        found = re.search(rb"# arenas allocated current\s*=\s*([\d,]+)", out.read())
    return int(found.group(1).replace(b",", b"")) if found else None


def rss_mb() -> float:
    """This process's resident set size (VmRSS), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@requires("authenticated")
async def private(request: Request) -> Response:
    return PlainTextResponse(request.user.display_name)


def make_storage(backend: str) -> tuple[AuthStorage, str]:
    """The storage of ``backend`` under a fresh prefix, and a label for the table."""
    tag = secrets.token_hex(4)
    if backend == "memory":
        # The audit log lives in this process here: bounded low, so that the events the logins
        # add (up to 100,000 by default) do not read as a leak in the RSS column.
        return InMemoryStorage(InMemoryConfig(max_audit_events=1000)), "memory"
    if backend == "redis":
        return storage_from_url(f"{REDIS_URL}?key_prefix=soak:{tag}:", cache=True), "redis+cache"
    if backend == "postgres":
        sep = "&" if "?" in POSTGRES_URL else "?"
        url = f"{POSTGRES_URL}{sep}table_prefix=soak{tag}_"
        return storage_from_url(url, cache=True), "postgres+cache"
    raise SystemExit(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


async def remove_data(storage: AuthStorage) -> None:
    """Drop the run's keys or tables (the prefix is this run's own)."""
    inner = storage.inner if isinstance(storage, CachedStorage) else storage
    name = type(inner).__name__
    if name == "RedisStorage":
        prefix = inner.config.key_prefix  # type: ignore[attr-defined]
        client = inner._reads  # type: ignore[attr-defined]
        async for keys in client.scan("soak", prefix.replace(":", "\\:") + "*"):
            await client.pipeline("soak", [("UNLINK", k) for k in keys])
    elif name == "PostgresStorage":
        prefix = inner.config.table_prefix  # type: ignore[attr-defined]
        async with inner.pool.acquire() as con:  # type: ignore[attr-defined]
            names = await con.fetch(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE $1", prefix + "%"
            )
            for row in names:
                await con.execute(f'DROP TABLE IF EXISTS "{row["tablename"]}" CASCADE')


async def soak(
    backend: str, duration: float, interval: float, clients: int, trace: int = 0
) -> dict[str, Any]:
    """Run one backend; return its label and rows (and, with ``trace`` frames, the growth of
    Python allocations from the end of the first interval to the end of the run)."""
    storage, label = make_storage(backend)
    auth = AuthFramework(
        storage, AuthConfig(secret_key=SECRET, password_hasher=fast_password_hasher())
    )
    await auth.open()
    app = Starlette(
        routes=[Route("/private", private)],
        middleware=[Middleware(AuthMiddleware, auth=auth)],
    )
    for i in range(TOKENS // 10):
        await auth.register_user(f"soak{i}", "soak-password")
    for i in range(LOGIN_USERS):
        await auth.register_user(f"login{i}", "soak-password")
    tokens = [
        (await auth.authenticate(f"soak{i % (TOKENS // 10)}", "soak-password")).access_token
        for i in range(TOKENS)
    ]
    sessions = [(await auth.create_session(f"soak{i}"))[0] for i in range(SESSIONS)]
    codec = SessionCookieCodec(auth.config.signing_keys, auth.config.cookie, "authmw_csrf")
    cookie_name = auth.config.cookie.name
    cookies = [codec.sign(s) for s in sessions]
    latencies: list[float] = []  # bearer and cookie requests
    logins: list[float] = []  # logins (argon2 in a bounded pool: a queue of their own)
    errors = 0
    kinds: Counter[str] = Counter()  # this interval's errors: status code or exception name
    stopping = False

    async def client(http: httpx.AsyncClient, rng: random.Random) -> None:
        nonlocal errors
        while not stopping:
            roll = rng.random()
            started = time.perf_counter()
            try:
                if roll < 0.85:
                    token = rng.choice(tokens)
                    r = await http.get("/private", headers={"Authorization": f"Bearer {token}"})
                    ok, kind = r.status_code == 200, str(r.status_code)
                elif roll < 0.95:
                    r = await http.get(
                        "/private", headers={"Cookie": f"{cookie_name}={rng.choice(cookies)}"}
                    )
                    ok, kind = r.status_code == 200, str(r.status_code)
                else:
                    issued = await auth.authenticate(
                        f"login{rng.randrange(LOGIN_USERS)}", "soak-password"
                    )
                    ok = await auth.storage.delete_token(issued.token_id)
                    kind = "token not deleted"
            except Exception as exc:
                ok, kind = False, type(exc).__name__
            (latencies if roll < 0.95 else logins).append(time.perf_counter() - started)
            if not ok:
                errors += 1
                kinds[kind] += 1

    rows: list[Row] = []
    baseline: tracemalloc.Snapshot | None = None
    if trace:
        tracemalloc.start(trace)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://soak"
    ) as http:
        tasks = [asyncio.create_task(client(http, random.Random(i))) for i in range(clients)]
        start = time.monotonic()
        while time.monotonic() - start < duration:
            await asyncio.sleep(min(interval, duration - (time.monotonic() - start)))
            window, latencies[:] = sorted(latencies), []
            login_window, logins[:] = sorted(logins), []
            count, errs, errors = len(window), errors, 0
            c_used, c_free = malloc_mb()
            rows.append(
                Row(
                    t=round(time.monotonic() - start),
                    requests=count,
                    rps=round(count / interval, 1),
                    p50_ms=round(statistics.median(window) * 1e3, 2) if window else 0.0,
                    p99_ms=p99(window),
                    login_p99_ms=p99(login_window),
                    errors=errs,
                    rss_mb=round(rss_mb(), 1),
                    py_blocks=sys.getallocatedblocks(),
                    malloc_mb=c_used,
                    malloc_free_mb=c_free,
                    py_arenas=pymalloc_arenas(),
                    error_kinds=dict(kinds),
                    heap_mb=round(tracemalloc.get_traced_memory()[0] / 2**20, 2) if trace else None,
                )
            )
            kinds.clear()
            print_row(label, rows[-1])
            if trace and baseline is None:
                # The first interval warms every pool, cache table and statement cache up;
                # what grows after it is what a leak would look like.
                baseline = tracemalloc.take_snapshot()
        stopping = True
        await asyncio.gather(*tasks)
    growth = growth_lines(baseline) if baseline is not None else []
    tracemalloc.stop()
    await remove_data(storage)
    await auth.close()
    return {"backend": label, "rows": [asdict(r) for r in rows], "growth": growth}


def growth_lines(baseline: tracemalloc.Snapshot, top: int = 12) -> list[str]:
    """The places whose Python allocations grew most since ``baseline`` (one line each, the
    allocating frame first), with the total growth first."""
    ours = (tracemalloc.Filter(False, tracemalloc.__file__),)
    now = tracemalloc.take_snapshot().filter_traces(ours)
    diffs = now.compare_to(baseline.filter_traces(ours), "traceback")
    total = sum(d.size_diff for d in diffs)
    lines = [f"Python allocations grew {total / 2**20:+.2f} MiB since the first interval"]
    for diff in sorted(diffs, key=lambda d: d.size_diff, reverse=True)[:top]:
        if diff.size_diff <= 0:
            break
        # A traceback runs from the oldest frame to the allocating one: print it the other way.
        frames = " <- ".join(short(f"{f.filename}:{f.lineno}") for f in reversed(diff.traceback))
        lines.append(f"{diff.size_diff / 1024:+9.1f} KiB {diff.count_diff:+7d} blocks  {frames}")
    return lines


def short(path: str) -> str:
    """A source path relative to the repository, site-packages or the standard library."""
    paths = sysconfig.get_paths()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for root in (paths["purelib"], paths["platlib"], paths["stdlib"], repo):
        if path.startswith(root + os.sep):
            return path[len(root) + 1 :]
    return path


def p99(ordered: list[float]) -> float:
    """The 99th percentile of sorted seconds, in milliseconds (0 for none)."""
    if not ordered:
        return 0.0
    return round(ordered[max(0, -(-len(ordered) * 99 // 100) - 1)] * 1e3, 2)


def print_row(label: str, row: Row) -> None:
    """One table line."""
    print(
        f"{label:15} {row.t:>5} s {row.requests:>8} {row.rps:>8} {row.p50_ms:>8} "
        f"{row.p99_ms:>8} {row.login_p99_ms:>9} {row.errors:>6} {row.rss_mb:>8} "
        f"{row.malloc_mb if row.malloc_mb is not None else '-':>8} "
        f"{row.malloc_free_mb if row.malloc_free_mb is not None else '-':>8} "
        f"{row.py_blocks:>9} {row.py_arenas if row.py_arenas is not None else '-':>6}"
        + (f" {row.heap_mb:>8}" if row.heap_mb is not None else ""),
        flush=True,
    )


def summary(result: dict[str, Any]) -> str:
    """One line: RSS first/last/max and p99 median/max, over the run's intervals."""
    rows = result["rows"]
    if not rows:
        return f"{result['backend']}: no interval completed"
    rss = [r["rss_mb"] for r in rows]
    p99s = [r["p99_ms"] for r in rows]
    kinds: Counter[str] = Counter()
    for r in rows:
        kinds.update(r["error_kinds"])
    return (
        f"{result['backend']}: {sum(r['requests'] for r in rows)} requests, "
        f"{sum(r['errors'] for r in rows)} errors {dict(kinds)}; "
        f"RSS {rss[0]} -> {rss[-1]} MiB (max {max(rss)}); "
        f"request p99 median {round(statistics.median(p99s), 2)} ms, max {max(p99s)} ms; "
        f"login p99 max {max(r['login_p99_ms'] for r in rows)} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds per backend (600)")
    parser.add_argument("--interval", type=float, default=10, help="seconds per row (10)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated: memory,redis,postgres"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace Python allocations with tracemalloc (FRAMES frames each; slows the run): "
        "a heap column, and the places that grew after the first interval",
    )
    args = parser.parse_args(argv)
    print(
        f"{'backend':15} {'t':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'login p99':>9} {'errors':>6} {'RSS MiB':>8} {'C heap':>8} {'C free':>8} "
        f"{'py blocks':>9} {'arenas':>6}" + (f" {'heap MiB':>8}" if args.trace else "")
    )
    results = [
        asyncio.run(soak(name.strip(), args.duration, args.interval, args.clients, args.trace))
        for name in args.backends.split(",")
    ]
    print()
    for result in results:
        print(summary(result))
        for line in result["growth"]:
            print("  " + line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
