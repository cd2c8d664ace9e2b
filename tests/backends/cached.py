"""Cached backends for the behaviour suite: each plain backend behind a ``CachedStorage``.

They reuse the plain backends' fixtures (the other modules here are pytest plugins too), so a
cached backend gets the same server, the same isolation and the same clean-up; the cache is
opened on top (subscribing to the backend's invalidation channel) and closed first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from authmw.storage import AuthStorage, CacheConfig, CachedStorage, InMemoryStorage

BACKENDS = {
    "cached-memory": "cached_memory_storage",
    "cached-redis": "cached_redis_storage",
    "cached-postgres": "cached_postgres_storage",
}

# Short subscription timeouts: a behaviour test never waits on a dead channel for long.
SUITE_CONFIG = CacheConfig(subscribe_timeout=3.0)


async def cached(
    inner: AuthStorage,
    config: CacheConfig = SUITE_CONFIG,
) -> AsyncIterator[CachedStorage]:
    """An opened cache over ``inner``, closed after the test."""
    storage = CachedStorage(inner, config)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


@pytest.fixture
async def cached_memory_storage() -> AsyncIterator[CachedStorage]:
    """A fresh in-memory storage behind a cache."""
    inner = InMemoryStorage()
    async for storage in cached(inner):
        yield storage


@pytest.fixture
async def cached_redis_storage(redis_storage: AuthStorage) -> AsyncIterator[CachedStorage]:
    """The run's Redis (a prefix of its own) behind a cache."""
    async for storage in cached(redis_storage):
        yield storage


@pytest.fixture
async def cached_postgres_storage(postgres_storage: AuthStorage) -> AsyncIterator[CachedStorage]:
    """The run's PostgreSQL (emptied tables) behind a cache."""
    async for storage in cached(postgres_storage):
        yield storage
