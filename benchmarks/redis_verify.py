"""Redis storage throughput against bare redis-py on the same connection pool.

Measures, side by side in one run, with N concurrent callers (default 64) sharing one pool:

* ``get_token`` (what a bearer-token verification costs in storage) against a bare ``GET``
  loop on the same keys through the same client;
* ``store_token`` (what issuing a token costs in storage: record, refresh index and user index
  in one Lua script) against a bare ``SET`` loop of values of the same size;
* ``AuthFramework.verify`` end to end over this storage (keyed-tag check, digest compare).

The issue's targets: verify at least 50 % of the bare GET rate, token issue at least 30 % of
the bare SET rate. Each pair runs ``--rounds`` times (5), interleaved, and the best rate of
each is kept, which evens out a machine busy with other work.
Run::

    .venv/bin/python benchmarks/redis_verify.py [--url URL] [--concurrency 64] [--pool-size N]

The URL defaults to ``AUTHMW_REDIS_URL`` or ``redis://127.0.0.1:6379/0``. Every key lives
under ``authmw-bench:<random>:`` and is removed at the end (SCAN + UNLINK).
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import redis.asyncio as aioredis

from authmw.storage.redis import RedisConfig, RedisStorage
from authmw.storage.redis._keys import glob_escape
from tests.factories import make_token

DEFAULT_URL = "redis://127.0.0.1:6379/0"


async def run_ops(concurrency: int, total: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Run ``op(i)`` for i in range(total) over ``concurrency`` tasks; return ops/second."""
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def best_pair(label: str, concurrency: int, total: int,
                    bare: Callable[[int], Awaitable[Any]],
                    ours: Callable[[int], Awaitable[Any]],
                    rounds: int = 3) -> tuple[float, float]:
    """Interleave bare and storage runs; return the best rate of each."""
    bare_best = ours_best = 0.0
    for _ in range(rounds):
        bare_best = max(bare_best, await run_ops(concurrency, total, bare))
        ours_best = max(ours_best, await run_ops(concurrency, total, ours))
    print(f"{label:<36} bare {bare_best:>9,.0f}/s   authmw {ours_best:>9,.0f}/s   "
          f"ratio {ours_best / bare_best:6.1%}")
    return bare_best, ours_best


async def purge(storage: RedisStorage) -> None:
    """Remove every key under the storage's prefix."""
    bulk = storage._reads
    async for keys in bulk.scan("purge", glob_escape(storage.config.key_prefix) + "*"):
        await bulk.pipeline("purge", [("UNLINK", k) for k in keys])


async def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run the measurements, clean up."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("AUTHMW_REDIS_URL", DEFAULT_URL))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool-size", type=int, default=None,
                        help="connections in the shared pool (default: the concurrency)")
    parser.add_argument("--reads", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=5_000)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    pool_size = args.pool_size or args.concurrency
    storage = RedisStorage.with_config(RedisConfig(
        url=args.url, pool_size=pool_size, key_prefix=f"authmw-bench:{secrets.token_hex(4)}:"))
    await storage.open()
    try:
        await bench(storage, args, pool_size)
    finally:
        await purge(storage)
        await storage.close()


async def bench(storage: RedisStorage, args: argparse.Namespace, pool_size: int) -> None:
    """The measurements on an opened storage."""
    n, rounds = args.concurrency, args.rounds
    client: aioredis.Redis = storage._x.client  # type: ignore[assignment]
    server = (await client.info("server"))["redis_version"]
    print(f"Redis {server}, redis-py {redis.__version__}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; {n} concurrent callers, one pool of {pool_size}; best of "
          f"{rounds} interleaved rounds")
    # The bare loops share the storage's client and pool; when the pool is smaller than the
    # number of callers they queue on a semaphore of the pool's size, as the storage does.
    gate = asyncio.Semaphore(pool_size)

    async def bare_get_of(keys: list[str]) -> Callable[[int], Awaitable[Any]]:
        async def bare_get(i: int) -> Any:
            async with gate:
                return await client.get(keys[i])
        return bare_get

    tokens = [make_token(f"user{i % 500}") for i in range(args.tokens)]
    for start in range(0, len(tokens), 1000):
        await asyncio.gather(*(storage.store_token(t) for t in tokens[start:start + 1000]))
    rng = random.Random(7)
    picks = [rng.choice(tokens).token_id for _ in range(args.reads)]

    async def storage_get(i: int) -> Any:
        return await storage.get_token(picks[i])

    get_bare, get_ours = await best_pair(
        "get_token vs GET", n, args.reads,
        await bare_get_of([storage.keys.token(t) for t in picks]), storage_get, rounds)

    # Each round stores tokens never stored before, as issuing does.
    fresh = iter([make_token(f"writer{i % 500}") for i in range(args.writes * rounds)])
    payloads = [t.stored().to_json() for t in tokens[: args.writes]]
    set_keys = [f"{storage.config.key_prefix}bare:{i}" for i in range(args.writes)]

    async def bare_set(i: int) -> Any:
        async with gate:
            return await client.set(set_keys[i], payloads[i], ex=3600)

    async def storage_set(i: int) -> Any:
        return await storage.store_token(next(fresh))

    set_bare, set_ours = await best_pair("store_token vs SET", n, args.writes, bare_set,
                                         storage_set, rounds)

    verify = await verify_op(storage, args.reads)
    print()
    summary = (f"targets: verify >= 50% of GET: get_token {get_ours / get_bare:.1%}; "
               f"token issue >= 30% of SET: {set_ours / set_bare:.1%}")
    if verify is not None:
        op, keys = verify
        v_bare, v_ours = await best_pair("AuthFramework.verify vs GET", n, args.reads,
                                         await bare_get_of(keys), op, rounds)
        summary += f"; AuthFramework.verify {v_ours / v_bare:.1%} of GET"
    print(summary)


async def verify_op(
    storage: RedisStorage, total: int,
) -> tuple[Callable[[int], Awaitable[Any]], list[str]] | None:
    """``AuthFramework.verify`` over the storage, and the keys it reads (None without it)."""
    try:
        from authmw import AuthConfig, AuthFramework
        from authmw.testing import fast_password_hasher
    except ImportError:
        print("AuthFramework.verify: not available in this checkout")
        return None
    auth = AuthFramework(storage, AuthConfig(secret_key="bench-" + "k" * 40,
                                             password_hasher=fast_password_hasher()))
    await auth.open()
    users = [f"bench-user-{i}" for i in range(50)]
    for user in users:
        await auth.register_user(user, "bench-password")
    issued = [await auth.authenticate(users[i % len(users)], "bench-password")
              for i in range(1000)]
    rng = random.Random(11)
    picks = [rng.choice(issued) for _ in range(total)]

    async def verify(i: int) -> Any:
        return await auth.verify(picks[i].access_token)

    return verify, [storage.keys.token(t.token_id) for t in picks]


if __name__ == "__main__":
    asyncio.run(main())
