"""PostgreSQL LISTEN/NOTIFY invalidation channel (the SupportsInvalidation capability)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from authmw.errors import InvalidInput, StorageUnavailable
from authmw.storage.base import SupportsInvalidation
from authmw.storage.postgres import PostgresConfig, PostgresStorage
from tests.backends.postgres import free_port, fresh_prefix


def _storage(url: str, prefix: str) -> PostgresStorage:
    return PostgresStorage.with_config(PostgresConfig(url=url, table_prefix=prefix, timeout=5))


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two storages (two "processes") on one fresh prefix."""
    prefix = fresh_prefix()
    a, b = _storage(postgres_url, prefix), _storage(postgres_url, prefix)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def _receive_until(sub: object, count: int, limit: float = 5) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + limit
    while len(got) < count and time.monotonic() < deadline:
        got += await sub.receive(0.2)  # type: ignore[attr-defined]
    return got


async def test_messages_reach_every_subscription_of_the_prefix(
    pair: tuple[PostgresStorage, PostgresStorage],
    postgres_url: str,
) -> None:
    """A message published by one instance reaches both instances' subscriptions, in order,
    and no subscription of another prefix."""
    a, b = pair
    assert isinstance(a, SupportsInvalidation)
    other = _storage(postgres_url, fresh_prefix())
    subs = [
        await a.invalidation_channel().subscribe(),
        await b.invalidation_channel().subscribe(),
        await other.invalidation_channel().subscribe(),
    ]
    try:
        for i in range(3):
            await a.invalidation_channel().publish(f'{{"o":"a","k":["t:{i}"]}}')
        big = "é" * 3500  # 7000 bytes of UTF-8: the largest allowed
        await b.invalidation_channel().publish(big)
        for sub in subs[:2]:
            assert await _receive_until(sub, 4) == [
                '{"o":"a","k":["t:0"]}',
                '{"o":"a","k":["t:1"]}',
                '{"o":"a","k":["t:2"]}',
                big,
            ]
        assert await subs[2].receive(0.2) == []
    finally:
        for sub in subs:
            await sub.close()
        await other.close()


async def test_receive_times_out_empty_and_ping_answers(
    pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """A quiet subscription returns [] after the timeout; ping round-trips its connection."""
    sub = await pair[0].invalidation_channel().subscribe()
    try:
        start = time.monotonic()
        assert await sub.receive(0.3) == []
        assert 0.25 <= time.monotonic() - start < 2
        await sub.ping(2)
    finally:
        await sub.close()
        await sub.close()  # idempotent, never raises


async def test_oversized_message_is_refused(pair: tuple[PostgresStorage, PostgresStorage]) -> None:
    """Past 7,000 bytes of UTF-8 publish raises InvalidInput before touching the server."""
    with pytest.raises(InvalidInput):
        await pair[0].invalidation_channel().publish("é" * 3501)


async def test_lost_subscription_is_reported(
    pair: tuple[PostgresStorage, PostgresStorage],
    postgres_url: str,
) -> None:
    """When the LISTEN connection is killed, receive and ping raise StorageUnavailable."""
    a, _ = pair
    channel = a.invalidation_channel()
    sub = await channel.subscribe()
    admin = await asyncpg.connect(postgres_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query = $1",
            f'LISTEN "{channel.name}"',
        )
        assert killed == 1
        with pytest.raises(StorageUnavailable):
            for _ in range(25):
                await sub.receive(0.2)
        with pytest.raises(StorageUnavailable):
            await sub.ping(1)
        # A new subscription works again.
        again = await channel.subscribe()
        await channel.publish("back")
        assert await _receive_until(again, 1) == ["back"]
        await again.close()
    finally:
        await sub.close()
        await admin.close()


async def test_subscribe_to_unreachable_server_is_storage_unavailable() -> None:
    """subscribe() against a closed port raises StorageUnavailable (callers retry it)."""
    storage = PostgresStorage(f"postgresql://postgres@127.0.0.1:{free_port()}/x?timeout=2")
    with pytest.raises(StorageUnavailable):
        await storage.invalidation_channel().subscribe()
