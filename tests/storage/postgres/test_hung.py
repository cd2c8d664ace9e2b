"""A hung PostgreSQL (every server process stopped with SIGSTOP) bounds every call: the
timeout covers the wait for a pooled connection and the query together, and callers beyond
``max_waiting`` fail at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from authmw.errors import StorageUnavailable
from authmw.storage.postgres import PostgresConfig, PostgresStorage
from tests.backends.postgres import PgCluster, fresh_prefix
from tests.support.hung import bound, paused

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """A throwaway cluster these tests pause."""
    cluster = PgCluster()
    try:
        yield cluster.init().start()
    finally:
        cluster.destroy()


async def opened(cluster: PgCluster, **overrides: object) -> AsyncIterator[PostgresStorage]:
    """An opened storage with a short timeout and a table prefix of its own."""
    fields: dict[str, object] = {
        "url": cluster.url(),
        "timeout": TIMEOUT,
        "table_prefix": fresh_prefix(),
    }
    fields.update(overrides)
    storage = PostgresStorage.with_config(PostgresConfig(**fields))  # type: ignore[arg-type]
    await storage.open()
    try:
        yield storage
    finally:
        async with asyncio.timeout(bound(TIMEOUT)):
            await storage.close()


async def test_hung_server_fails_every_call_within_the_timeout(cluster: PgCluster) -> None:
    """64 concurrent reads of a stopped server all raise StorageUnavailable, none hangs; after
    the server resumes the same storage answers again."""
    async for storage in opened(cluster):
        await storage.kv_set("k", b"v", ttl=60)
        with paused(cluster):
            async with asyncio.timeout(bound(TIMEOUT)):
                results = await asyncio.gather(
                    *(storage.kv_get("k") for _ in range(64)), return_exceptions=True
                )
        assert all(isinstance(r, StorageUnavailable) for r in results), results
        assert await storage.kv_get("k") == b"v"


async def test_callers_beyond_max_waiting_fail_at_once(cluster: PgCluster) -> None:
    """With 2 pooled connections busy on a hung server and 3 callers waiting, the others are
    refused without waiting (the message says so), and every caller ends."""
    async for storage in opened(cluster, pool_size=2, max_waiting=3):
        await storage.kv_set("k", b"v", ttl=60)
        with paused(cluster):
            async with asyncio.timeout(bound(TIMEOUT)):
                results = await asyncio.gather(
                    *(storage.kv_get("k") for _ in range(10)), return_exceptions=True
                )
        assert all(isinstance(r, StorageUnavailable) for r in results), results
        refused = [r for r in results if "already wait" in str(r)]
        assert len(refused) == 5, results
        assert await storage.kv_get("k") == b"v"


def test_max_waiting_option() -> None:
    """max_waiting defaults to 1,000 x the pool size, is read from the URL and refused when
    negative."""
    url = "postgresql://u@h/db"
    assert PostgresConfig(url=url, pool_size=3).waiting_bound == 3000
    assert PostgresConfig.from_url(url + "?max_waiting=0").waiting_bound == 0
    with pytest.raises(Exception, match="max_waiting"):
        PostgresConfig(url=url, max_waiting=-1)
    with pytest.raises(Exception, match="max_waiting"):
        PostgresConfig.from_url(url + "?max_waiting=many")
