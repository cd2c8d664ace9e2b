"""Migration throughput: tokens from Redis to PostgreSQL with ``verify_data`` on.

Fills a Redis key prefix with N token records (default 100,000), then runs
``StorageMigration(redis, postgres, MigrationOptions(verify_data=True)).migrate_tokens()``
into a fresh PostgreSQL table prefix and prints the rate in records per second (the issue's
target: at least 5,000/s). A second run over the same data (everything already present) is
timed too. Run::

    .venv/bin/python benchmarks/migration.py [--tokens 100000] [--batch-size 1000]
        [--redis-url URL] [--postgres-url URL]

URLs default to ``AUTHMW_REDIS_URL`` / ``AUTHMW_POSTGRES_URL`` or the local servers. The
Redis keys (``authmw-bench:<random>:``) and the PostgreSQL tables (``bench<random>_*``) are
removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from authmw.models import utcnow
from authmw.storage import MigrationOptions, StorageMigration
from authmw.storage.postgres import PostgresConfig, PostgresStorage
from authmw.storage.postgres._sql import TABLE_SUFFIXES
from authmw.storage.redis import RedisConfig, RedisStorage
from authmw.storage.redis._keys import glob_escape
from tests.factories import make_token


async def fill(redis: RedisStorage, count: int) -> None:
    """``count`` live token records, written in batches."""
    now = utcnow()
    for start in range(0, count, 5000):
        batch = [make_token(f"user{i % 5000}", now=now)
                 for i in range(start, min(count, start + 5000))]
        await redis.import_tokens(batch)


async def cleanup(redis: RedisStorage, pg: PostgresStorage) -> None:
    """Remove the benchmark's keys and tables."""
    bulk = redis._reads
    async for keys in bulk.scan("bench", glob_escape(redis.config.key_prefix) + "*"):
        await bulk.pipeline("bench", [("UNLINK", k) for k in keys])
    prefix = pg.config.table_prefix
    async with pg.pool.acquire() as con:
        tables = ", ".join(f"{prefix}{s}" for s in (*TABLE_SUFFIXES, "schema_migrations"))
        await con.execute(f"DROP TABLE IF EXISTS {tables}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--redis-url", default=os.environ.get(
        "AUTHMW_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--postgres-url", default=os.environ.get(
        "AUTHMW_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()

    tag = secrets.token_hex(4)
    redis = RedisStorage(RedisConfig(url=args.redis_url, key_prefix=f"authmw-bench:{tag}:"))
    pg = PostgresStorage(PostgresConfig(url=args.postgres_url, table_prefix=f"bench{tag}_"))
    await redis.open()
    await pg.open()
    try:
        start = time.perf_counter()
        await fill(redis, args.tokens)
        print(f"filled Redis with {args.tokens:,} tokens in "
              f"{time.perf_counter() - start:.1f} s")
        options = MigrationOptions(batch_size=args.batch_size, verify_data=True)
        report = await StorageMigration(redis, pg, options).migrate_tokens()
        assert report.ok and report.copied == report.verified == args.tokens, report.to_dict()
        print(f"Redis -> PostgreSQL, verify_data on: {report.copied:,} tokens copied and "
              f"verified in {report.duration:.2f} s = {report.rate:,.0f} records/s "
              f"(target: 5,000/s)")
        again = await StorageMigration(redis, pg, options).migrate_tokens()
        assert again.already_present == args.tokens, again.to_dict()
        print(f"rerun (all already present): {again.duration:.2f} s = "
              f"{again.rate:,.0f} records/s")
    finally:
        await cleanup(redis, pg)
        await redis.close()
        await pg.close()


if __name__ == "__main__":
    asyncio.run(main())
