"""CachedStorage: hits against in-memory verify, misses against the bare drivers.

* Cache hit: ``verify`` of one token through cached Redis and cached PostgreSQL beside
  in-memory ``verify`` (issue 6: at least 90 %).
* Cache miss, ``miss_callers`` concurrent callers: ``verify`` of ``tokens`` distinct tokens
  through a cache far smaller than the set (every call a miss), beside the physical limit: a
  bare redis-py ``GET`` / asyncpg ``SELECT`` per call of a record of the same size, on a pool
  of the same size (issue 14 target 4: 50,000/s on Redis; the guide's 10,000/s on PostgreSQL).
  The keys per bulk read that the cache gathered are shown too.

Run alone: ``python -m benchmarks.cache [--quick]``.
"""

from __future__ import annotations

import random

from authmw import AuthFramework, InMemoryStorage
from authmw.storage import AuthStorage, CacheConfig, CachedStorage
from benchmarks._bare import BarePostgres, BareRedis
from benchmarks._records import cycling, issue_tokens, record_payload
from benchmarks.context import Context
from benchmarks.report import Row, absolute, compare
from benchmarks.timing import Op, interleave, median, median_ratio, rate

__all__ = ["run"]

HITS = "cache hits, 1 caller"
REDIS_MISS_TARGET = 50_000
POSTGRES_MISS_TARGET = 10_000


async def hits(ctx: Context) -> list[Row]:
    """One token verified again and again: memory, cached Redis, cached PostgreSQL."""
    s = ctx.settings
    auths = {
        "memory": ctx.framework(InMemoryStorage()),
        "redis": ctx.framework(ctx.redis("hit", cached=True)),
        "postgres": ctx.framework(ctx.postgres("hit", cached=True)),
    }
    try:
        ops: dict[str, Op] = {}
        for name, auth in auths.items():
            ops[name] = cycling(auth, [t.access_token for t in await issue_tokens(auth, 1)])
        r = await interleave(
            s.rounds,
            {name: (lambda op=op: rate(op, s.seconds, batch=500)) for name, op in ops.items()},
        )
    finally:
        for auth in auths.values():
            await auth.close()
    return [
        compare(
            HITS,
            "verify, cache hit: cached Redis",
            r["redis"],
            r["memory"],
            "in-memory verify",
            unit="/s",
            at_least=0.9,
        ),
        compare(
            HITS,
            "verify, cache hit: cached PostgreSQL",
            r["postgres"],
            r["memory"],
            "in-memory verify",
            unit="/s",
            at_least=0.9,
        ),
    ]


async def misses(ctx: Context, kind: str) -> list[Row]:
    """Every verify a cache miss, ``miss_callers`` at once, beside the bare driver."""
    s = ctx.settings
    callers = s.miss_callers
    pool_size = callers if kind == "redis" else s.pool_size  # PostgreSQL: mind max_connections
    section = f"cache misses, {callers} callers, pools of {pool_size}"
    # A cache and memo far smaller than the token set: every verify below misses both.
    small = CacheConfig(max_entries=256)
    storage: AuthStorage = (
        ctx.redis("miss", cached=small, pool_size=pool_size)
        if kind == "redis"
        else ctx.postgres("miss", cached=small, pool_size=pool_size)
    )
    auth: AuthFramework = ctx.framework(storage, verified_token_cache=256)
    bare_side: BareRedis | BarePostgres | None = None
    try:
        issued = await issue_tokens(auth, s.tokens, callers=callers)
        tokens = [t.access_token for t in issued]
        random.shuffle(tokens)
        payload = record_payload(issued[0])
        if kind == "redis":
            bare_side = BareRedis(ctx, "bare-miss", payload, pool_size)
            await bare_side.fill(s.tokens)
            bare = bare_side.get()
        else:
            bare_side = await BarePostgres.create(ctx, "bare_miss", payload, pool_size)
            await bare_side.fill(s.tokens)
            bare = bare_side.select()
        before = storage.cache_statistics() if isinstance(storage, CachedStorage) else None
        r = await interleave(
            s.rounds,
            {
                "ours": lambda: rate(cycling(auth, tokens), s.seconds, callers, batch=20),
                "bare": lambda: rate(bare, s.seconds, callers, batch=20),
            },
        )
        after = storage.cache_statistics() if isinstance(storage, CachedStorage) else None
    finally:
        await auth.close()
        if bare_side is not None:
            await bare_side.close()
    rows: list[Row] = []
    if kind == "redis":
        rows.append(
            absolute(
                section,
                "verify, cache miss: Redis",
                median(r["ours"]),
                unit="/s",
                peer=f"redis-py GET: {median(r['bare']):,.0f} /s",
                ratio=f"{median_ratio(r['ours'], r['bare']):.2f}x",
                at_least=REDIS_MISS_TARGET,
            )
        )
    else:
        rows.append(
            absolute(
                section,
                "verify, cache miss: PostgreSQL",
                median(r["ours"]),
                unit="/s",
                peer=f"asyncpg SELECT: {median(r['bare']):,.0f} /s",
                ratio=f"{median_ratio(r['ours'], r['bare']):.2f}x",
                at_least=POSTGRES_MISS_TARGET,
            )
        )
    if before is not None and after is not None:
        if after.hits != before.hits:
            ctx.notes.append(
                f"cache miss benchmark ({kind}): {after.hits - before.hits} "
                "cache hits where none were expected"
            )
        batches = max(1, after.batches - before.batches)
        rows.append(
            absolute(
                section,
                f"  keys per bulk read ({kind})",
                (after.batched_keys - before.batched_keys) / batches,
                unit="",
            )
        )
    return rows


async def run(ctx: Context) -> list[Row]:
    """Hit and miss rows."""
    return [*await hits(ctx), *await misses(ctx, "redis"), *await misses(ctx, "postgres")]


if __name__ == "__main__":
    from benchmarks.harness import standalone

    standalone("cache")
