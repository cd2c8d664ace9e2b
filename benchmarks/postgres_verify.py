"""PostgreSQL storage throughput against bare asyncpg on the same pool.

Measures, side by side in one run, with N concurrent callers and a pool of N connections:

* ``get_token`` (what a bearer-token verification costs in storage) against a bare
  ``pool.fetchrow`` of the same primary-key ``SELECT``;
* ``store_token`` (what issuing a token costs in storage) against a bare ``pool.execute`` of
  the same single-row ``INSERT``;
* ``AuthFramework.verify`` end to end over this storage (keyed-tag check, digest compare).

Each pair runs three times, interleaved, and the best rate of each is kept. Run::

    .venv/bin/python benchmarks/postgres_verify.py [--url URL] [--concurrency 64]

The URL defaults to ``AUTHMW_POSTGRES_URL`` or the local server; a database
``authmw_bench_<random>`` is created there and dropped at the end (the user needs CREATEDB).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from authmw.models import AuthToken
from authmw.storage.postgres import PostgresConfig, PostgresStorage
from authmw.storage.postgres._sql import token_args
from tests.factories import make_token

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def run_ops(concurrency: int, total: int,
                  op: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """Run ``op(i)`` for i in range(total) over ``concurrency`` tasks; return (ops/second,
    client CPU microseconds per op). The CPU figure hardly depends on other load."""
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu_us = (time.process_time() - cpu) / total * 1e6
    return total / (time.perf_counter() - start), cpu_us


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


async def best_pair(label: str, concurrency: int, total: int,
                    bare: Callable[[int], Awaitable[Any]],
                    ours: Callable[[int], Awaitable[Any]],
                    rounds: int = 3) -> tuple[float, float]:
    """Interleave bare and storage runs; return the best rate of each (and print the lowest
    client CPU cost per op of each)."""
    bare_best = ours_best = 0.0
    bare_cpu = ours_cpu = float("inf")
    for _ in range(rounds):
        rate, cpu = await run_ops(concurrency, total, bare)
        bare_best, bare_cpu = max(bare_best, rate), min(bare_cpu, cpu)
        rate, cpu = await run_ops(concurrency, total, ours)
        ours_best, ours_cpu = max(ours_best, rate), min(ours_cpu, cpu)
    print(f"{label:<31} bare {bare_best:>7,.0f}/s  authmw {ours_best:>7,.0f}/s  "
          f"ratio {ours_best / bare_best:6.1%}   client CPU/op {bare_cpu:4.0f} vs "
          f"{ours_cpu:4.0f} us")
    return bare_best, ours_best


async def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, set up a throwaway database, run the measurements, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("AUTHMW_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--reads", type=int, default=30_000)
    parser.add_argument("--writes", type=int, default=15_000)
    parser.add_argument("--tokens", type=int, default=20_000)
    args = parser.parse_args(argv)

    db = f"authmw_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f"CREATE DATABASE {db}")
    try:
        await bench(_with_db(args.url, db), args)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.close()


async def bench(url: str, args: argparse.Namespace) -> None:
    """The measurements on database ``url``."""
    n = args.concurrency
    storage = PostgresStorage.with_config(PostgresConfig(
        url=url, pool_size=n, min_pool_size=n, table_prefix="bench_", timeout=30))
    await storage.open()
    pool = storage.pool
    server = await pool.fetchval("SHOW server_version")
    print(f"PostgreSQL {server}, asyncpg {asyncpg.__version__}, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; {n} concurrent callers, "
          f"pool of {n}")

    tokens = [make_token(f"user{i % 500}") for i in range(args.tokens)]
    await pool.executemany(storage._sql.store_token, [token_args(t) for t in tokens])
    ids = [t.token_id for t in tokens]
    rng = random.Random(7)
    picks = [rng.choice(ids) for _ in range(args.reads)]
    select_sql = storage._sql.get_token  # the very statement get_token runs
    now = storage_now()

    async def bare_select(i: int) -> Any:
        return await pool.fetchrow(select_sql, picks[i], now)

    async def ours_get(i: int) -> Any:
        return await storage.get_token(picks[i])

    print()
    await best_pair("get_token vs bare PK SELECT", n, args.reads, bare_select, ours_get)

    fresh: list[AuthToken] = [make_token("writer") for _ in range(args.writes * 6)]
    insert_sql = storage._sql.store_token
    cursor = iter(fresh)

    async def bare_insert(i: int) -> Any:
        return await pool.execute(insert_sql, *token_args(next(cursor)))

    async def ours_store(i: int) -> Any:
        return await storage.store_token(next(cursor))

    await best_pair("store_token vs bare INSERT", n, args.writes, bare_insert, ours_store)

    try:
        from authmw import AuthFramework
        from authmw.testing import test_config
    except ImportError:
        print("authmw.AuthFramework not available: verify not measured")
    else:
        auth = AuthFramework(storage, test_config(audit_log=False))
        await auth.open()
        await auth.register_user("bench", "bench-password-123")
        issued = [await auth.authenticate("bench", "bench-password-123") for _ in range(300)]
        chosen = [rng.choice(issued) for _ in range(args.reads)]
        access = [t.access_token for t in chosen]
        verify_ids = [t.token_id for t in chosen]  # the bare loop reads the very same rows

        async def bare_for_verify(i: int) -> Any:
            return await pool.fetchrow(select_sql, verify_ids[i], now)

        async def ours_verify(i: int) -> Any:
            return await auth.verify(access[i])

        await best_pair("auth.verify vs bare PK SELECT", n, args.reads, bare_for_verify,
                        ours_verify)
    await storage.close()


def storage_now() -> datetime:
    """The 'now' the bare SELECT binds (the storage passes the current time likewise)."""
    return datetime.now(UTC)


if __name__ == "__main__":
    asyncio.run(main())
