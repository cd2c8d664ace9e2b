"""The profiling pass of issue 14: CPU-time ratios and the top of a profile, per hot path.

On a machine shared with other work, wall-clock rates move with the neighbours' load; the CPU
time this process spends per request moves far less. This module measures that, in
interleaved rounds (median of per-round ratios), for the cases of the issue's targets, and
prints cProfile's top functions for one case:

    python -m benchmarks.profile_pass                      # CPU-time ratios, every case
    python -m benchmarks.profile_pass --profile "session memory"

Cases: ``bearer memory``, ``bearer cached Redis``, ``session memory``, ``session cached
Redis`` (beside Starlette's ``AuthenticationMiddleware`` + dict and ``SessionMiddleware``, as
:mod:`benchmarks.middleware`), and ``miss Redis`` (64 callers, every verify a cache miss; CPU
per verify of this process only: the Redis server's share is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware

from authmw import AuthFramework, InMemoryStorage
from authmw.storage import CacheConfig
from benchmarks._asgi import asgi_op, check, cookie_from, scope_for
from benchmarks._records import issue_tokens
from benchmarks.context import USER, Context, Settings
from benchmarks.middleware import ROUTES, Ours, starlette_auth
from benchmarks.timing import median_ratio

Measure = Callable[[], Awaitable[float]]


def context() -> Context:
    """A context on the local Redis (PostgreSQL is not needed here)."""
    url = "redis://127.0.0.1:6379/0"
    tag = secrets.token_hex(4)
    return Context(
        Settings.for_mode(quick=True), url, "", f"authmw-prof:{tag}:", secrets.token_urlsafe(32)
    )


def cpu_rate(op: Callable[[int], Awaitable[Any]], count: int) -> Measure:
    """Requests per CPU second of this process, ``count`` requests one after another."""

    async def measure() -> float:
        start = time.process_time()
        for i in range(count):
            await op(i)
        return count / (time.process_time() - start)

    return measure


def miss_rate(auth: AuthFramework, tokens: list[str], count: int, callers: int = 64) -> Measure:
    """Verifies per CPU second, ``callers`` at once over distinct tokens (all cache misses)."""
    n = len(tokens)

    async def worker(k: int, share: int) -> None:
        for i in range(share):
            await auth.verify(tokens[(k * 7919 + i) % n])

    async def measure() -> float:
        start = time.process_time()
        await asyncio.gather(*(worker(k, count // callers) for k in range(callers)))
        return count / (time.process_time() - start)

    return measure


async def cases(ctx: Context, built: list[AuthFramework]) -> dict[str, Measure]:
    """Every case's measure (the frameworks opened go to ``built``, to close)."""
    tokens: dict[str, str] = {}

    async def from_dict(token: str) -> str | None:
        return tokens.get(token)

    by_dict = starlette_auth(from_dict)
    cookies = Starlette(
        routes=ROUTES, middleware=[Middleware(SessionMiddleware, secret_key=ctx.secret_key)]
    )
    peer_cookie = await cookie_from(cookies, scope_for("/set"), "session")
    memory = await Ours.build(ctx, InMemoryStorage())
    redis = await Ours.build(ctx, ctx.redis("c", cached=True))
    built += [memory.auth, redis.auth]
    tokens[memory.token] = USER
    await check(by_dict, memory.bearer(), USER.encode())
    out = {
        "Starlette dict": cpu_rate(asgi_op(by_dict, memory.bearer()), 5000),
        "Starlette session": cpu_rate(
            asgi_op(cookies, scope_for("/s", [(b"cookie", peer_cookie)])), 5000
        ),
    }
    for name, ours in (("memory", memory), ("cached Redis", redis)):
        out[f"bearer {name}"] = cpu_rate(asgi_op(ours.app, ours.bearer()), 5000)
        out[f"session {name}"] = cpu_rate(asgi_op(ours.app, ours.session()), 5000)
    small = CacheConfig(max_entries=256)
    miss = ctx.framework(ctx.redis("m", cached=small, pool_size=64), verified_token_cache=256)
    built.append(miss)
    issued = [t.access_token for t in await issue_tokens(miss, 4000, callers=64)]
    random.shuffle(issued)
    out["miss Redis"] = miss_rate(miss, issued, 12800)
    return out


PEERS = {
    "bearer memory": "Starlette dict",
    "bearer cached Redis": "Starlette dict",
    "session memory": "Starlette session",
    "session cached Redis": "Starlette session",
}


async def main(rounds: int, profile: str | None) -> None:
    """Print CPU-time ratios, or the profile of one case."""
    ctx = context()
    built: list[AuthFramework] = []
    try:
        measures = await cases(ctx, built)
        for measure in measures.values():
            await measure()  # warm-up: caches filled, code paths compiled
        if profile is not None:
            profiler = cProfile.Profile()
            profiler.enable()
            await measures[profile]()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
            return
        names = list(measures)
        got: dict[str, list[float]] = {name: [] for name in names}
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                got[name].append(await measures[name]())
        for name in names:
            line = f"{name:22} {sorted(got[name])[rounds // 2]:>10,.0f} per CPU second"
            if name in PEERS:
                line += f"  {median_ratio(got[name], got[PEERS[name]]):.2f}x {PEERS[name]}"
            print(line)
    finally:
        for auth in built:
            await auth.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", help="print cProfile's top functions for this case")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.profile))
