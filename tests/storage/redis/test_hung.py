"""A hung Redis (SIGSTOP) bounds every call: the timeout covers the whole call, the wait for a
connection included, and callers beyond ``max_waiting`` fail at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from authmw.errors import StorageUnavailable
from authmw.storage.redis import RedisConfig, RedisStorage
from tests.backends.redis import RedisServer, opened, prefix
from tests.support.hung import bound, paused

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A throwaway server these tests pause."""
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.destroy()


def config(server: RedisServer, **overrides: object) -> RedisConfig:
    """Settings with a short timeout and a prefix of their own."""
    fields: dict[str, object] = {"url": server.url, "timeout": TIMEOUT, "key_prefix": prefix()}
    fields.update(overrides)
    return RedisConfig(**fields)  # type: ignore[arg-type]


async def test_hung_server_fails_every_call_within_the_timeout(server: RedisServer) -> None:
    """64 concurrent reads of a paused server all raise StorageUnavailable, none hangs; after
    the server resumes the same storage answers again."""
    async for storage in opened(config(server)):
        await storage.kv_set("k", b"v", ttl=60)
        with paused(server):
            async with asyncio.timeout(bound(TIMEOUT)):
                results = await asyncio.gather(
                    *(storage.kv_get("k") for _ in range(64)), return_exceptions=True
                )
        assert all(isinstance(r, StorageUnavailable) for r in results), results
        assert await storage.kv_get("k") == b"v"


async def test_callers_beyond_max_waiting_fail_at_once(server: RedisServer) -> None:
    """With 2 connections busy on a hung server and 3 callers waiting, the others are refused
    without waiting (the message says so), and every caller ends."""
    async for storage in opened(config(server, pool_size=2, max_waiting=3)):
        await storage.kv_set("k", b"v", ttl=60)
        with paused(server):
            async with asyncio.timeout(bound(TIMEOUT)):
                results = await asyncio.gather(
                    *(storage.kv_get("k") for _ in range(10)), return_exceptions=True
                )
        assert all(isinstance(r, StorageUnavailable) for r in results), results
        refused = [r for r in results if "already wait" in str(r)]
        assert len(refused) == 5, results


async def test_open_of_a_hung_server_is_bounded(server: RedisServer) -> None:
    """Opening against a paused server raises StorageUnavailable instead of hanging."""
    storage = RedisStorage(config(server))
    with paused(server):
        async with asyncio.timeout(bound(TIMEOUT)):
            with pytest.raises(StorageUnavailable):
                await storage.open()
    await storage.close()


def test_max_waiting_option() -> None:
    """max_waiting defaults to 1,000 x pool_size, is read from the URL and refused when negative."""
    assert RedisConfig(pool_size=3).waiting_bound == 3000
    assert RedisConfig.from_url("redis://h/0?max_waiting=0&pool_size=2").waiting_bound == 0
    with pytest.raises(Exception, match="max_waiting"):
        RedisConfig(max_waiting=-1)
    with pytest.raises(Exception, match="max_waiting"):
        RedisConfig.from_url("redis://h/0?max_waiting=many")
