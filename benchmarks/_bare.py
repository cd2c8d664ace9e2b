"""The physical limit: the bare drivers doing one plain read or write per operation.

:class:`BareRedis` (redis-py ``GET``/``SET``) and :class:`BarePostgres` (asyncpg primary-key
``SELECT``/single-row ``INSERT``) hold values the size of a token record, under this run's
Redis prefix or in its throwaway database, on a pool of the size the authmw side gets.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from benchmarks.context import Context
from benchmarks.timing import Op

__all__ = ["BarePostgres", "BareRedis"]


class BareRedis:
    """redis-py on a blocking pool of ``pool_size`` connections (callers beyond it wait)."""

    def __init__(self, ctx: Context, name: str, payload: bytes, pool_size: int) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                ctx.redis_url, max_connections=pool_size
            )
        )
        self.prefix = ctx.redis_prefix(name)
        self.payload = payload
        self.count = 0
        self._fresh = itertools.count()

    async def fill(self, count: int) -> None:
        """Store ``count`` records to read back (set-up)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for i in range(count):
                pipe.set(f"{self.prefix}{i}", self.payload, ex=3600)
            await pipe.execute()
        self.count = count

    def get(self) -> Op:
        """``GET`` of a stored record, in a shuffled order (no locality to profit from)."""
        order = list(range(self.count))
        random.shuffle(order)
        keys = [f"{self.prefix}{i}" for i in order]
        get, n = self.client.get, len(keys)

        async def op(i: int) -> Any:
            return await get(keys[i % n])

        return op

    def set(self) -> Op:
        """``SET`` with an expiry of a key never written before."""
        fresh, prefix, payload, set_ = self._fresh, self.prefix + "w", self.payload, self.client.set

        async def op(_: int) -> Any:
            return await set_(f"{prefix}{next(fresh)}", payload, ex=3600)

        return op

    async def close(self) -> None:
        """Close the pool (keys go with the run's prefix)."""
        await self.client.aclose()


class BarePostgres:
    """asyncpg on a pool of ``pool_size`` connections, one table shaped like a token table."""

    def __init__(self, pool: Any, table: str, payload: bytes) -> None:
        self.pool, self.table, self.payload = pool, table, payload
        self.count = 0
        self._fresh = itertools.count()

    @classmethod
    async def create(cls, ctx: Context, table: str, payload: bytes, pool_size: int) -> BarePostgres:
        """Open the pool and create the table in the run's database."""
        import asyncpg

        pool = await asyncpg.create_pool(ctx.postgres_url, min_size=pool_size, max_size=pool_size)
        await pool.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (token_id text PRIMARY KEY, "
            "user_id text NOT NULL, record bytea NOT NULL, expires_at timestamptz NOT NULL)"
        )
        return cls(pool, table, payload)

    async def fill(self, count: int) -> None:
        """Insert ``count`` rows to read back (set-up)."""
        await self.pool.executemany(
            f"INSERT INTO {self.table} VALUES ($1, 'alice', $2, now() + interval '1 hour') "
            "ON CONFLICT DO NOTHING",
            [(f"t{i:08d}", self.payload) for i in range(count)],
        )
        self.count = count

    def select(self) -> Op:
        """Primary-key ``SELECT`` of a live row, in a shuffled order."""
        order = list(range(self.count))
        random.shuffle(order)
        ids = [f"t{i:08d}" for i in order]
        sql = f"SELECT * FROM {self.table} WHERE token_id = $1 AND expires_at > now()"
        fetchrow, n = self.pool.fetchrow, len(ids)

        async def op(i: int) -> Any:
            return await fetchrow(sql, ids[i % n])

        return op

    def insert(self) -> Op:
        """Single-row ``INSERT`` of a new row (autocommit, as a storage write is)."""
        sql = f"INSERT INTO {self.table} VALUES ($1, 'alice', $2, now() + interval '1 hour')"
        fresh, payload, execute = self._fresh, self.payload, self.pool.execute

        async def op(_: int) -> Any:
            return await execute(sql, f"w{next(fresh):09d}", payload)

        return op

    async def close(self) -> None:
        """Close the pool (the table goes with the run's database)."""
        await self.pool.close()
