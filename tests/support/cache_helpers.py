"""Builders shared by the cache tests: cached storages on the run's servers, frameworks, waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from authmw import AuthConfig, AuthFramework
from authmw.errors import InvalidToken
from authmw.storage import AuthStorage, CacheConfig, CachedStorage
from authmw.storage.postgres import PostgresConfig, PostgresStorage
from authmw.storage.redis import RedisConfig, RedisStorage
from authmw.testing import fast_password_hasher
from tests.backends.postgres import fresh_prefix
from tests.backends.redis import prefix as redis_prefix
from tests.backends.redis import purge
from tests.conftest import TEST_SECRET

SERVERS = ("redis", "postgres")


def inner_storage(kind: str, url: str, namespace: str, **options: Any) -> AuthStorage:
    """A plain Redis or PostgreSQL storage on ``url`` under ``namespace`` (prefix)."""
    if kind == "redis":
        return RedisStorage(RedisConfig(url=url, key_prefix=namespace, **options))
    return PostgresStorage.with_config(
        PostgresConfig(
            url=url, table_prefix=namespace, timeout=options.pop("timeout", 5), **options
        )
    )


def namespace_for(kind: str) -> str:
    """A key or table prefix no other test uses."""
    return redis_prefix() if kind == "redis" else fresh_prefix()


def framework(storage: AuthStorage, **overrides: Any) -> AuthFramework:
    """A framework with the test key and cheap hashing."""
    settings: dict[str, Any] = {
        "secret_key": TEST_SECRET,
        "password_hasher": fast_password_hasher(),
    }
    settings.update(overrides)
    return AuthFramework(storage, AuthConfig(**settings))


def cache_of(auth: AuthFramework) -> CachedStorage:
    """The framework's storage, which these tests always build cached."""
    assert isinstance(auth.storage, CachedStorage)
    return auth.storage


@asynccontextmanager
async def frameworks(
    kind: str, url: str, count: int = 2, *, inner_options: Any = None, **cache: Any
) -> AsyncIterator[list[AuthFramework]]:
    """``count`` opened frameworks, each with its own cache, sharing one namespace of one
    server (as separate app instances would); closed and cleaned up afterwards."""
    namespace = namespace_for(kind)
    options = dict(inner_options or {})
    cache.setdefault("subscribe_timeout", 5.0)
    auths = [
        framework(
            CachedStorage(inner_storage(kind, url, namespace, **options), CacheConfig(**cache))
        )
        for _ in range(count)
    ]
    try:
        for auth in auths:
            await auth.open()
            assert cache_of(auth).subscribed
        yield auths
    finally:
        for auth in auths:
            await auth.close()
        if kind == "redis":
            inner = cache_of(auths[0]).inner
            assert isinstance(inner, RedisStorage)
            await purge(inner)
            await inner.close()


async def refused_eventually(auth: AuthFramework, token: str, limit: float = 10.0) -> None:
    """Wait until ``auth`` refuses ``token`` (verifying every half millisecond); fail the test
    if it still accepts it after ``limit`` seconds. How fast it happens is measured in
    ``benchmarks/``, never asserted: the machines are noisy."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            await auth.verify(token)
        except InvalidToken:
            return
        await asyncio.sleep(0.0005)
    pytest.fail(f"token still accepted after {limit} s")


async def eventually(check: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait (bounded) until ``check()`` is true."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {limit} s")
        await asyncio.sleep(0.005)
