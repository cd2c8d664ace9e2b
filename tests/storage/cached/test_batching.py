"""Single-flight and batched misses on Redis and PostgreSQL, seen through the statistics."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from authmw import AuthFramework
from authmw.errors import InvalidToken
from authmw.storage import CachedStorage, InMemoryStorage
from authmw.tokens import ACCESS
from tests.support.cache_helpers import SERVERS, cache_of, frameworks
from tests.support.factories import make_session, make_token, make_user


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, url) of the run's Redis, then of its PostgreSQL database."""
    kind: str = request.param
    url: str = request.getfixturevalue("redis_url" if kind == "redis" else "postgres_url")
    return kind, url


@pytest.fixture
async def auth(server: tuple[str, str]) -> AsyncIterator[AuthFramework]:
    """One app instance with a cache (batches of at most 16 keys) on the server."""
    async with frameworks(*server, count=1, batch_size=16, negative_ttl=0.5) as auths:
        yield auths[0]


async def test_concurrent_misses_for_one_key_read_once(auth: AuthFramework) -> None:
    """50 concurrent reads of one uncached token make one backend read (single-flight)."""
    cache = cache_of(auth)
    token = make_token()
    await cache.inner.store_token(token)
    got = await asyncio.gather(*(cache.get_token(token.token_id) for _ in range(50)))
    assert all(g == token for g in got)
    stats = cache.cache_statistics()
    assert stats.backend_calls == 1 and stats.misses == 50 and stats.coalesced == 49


async def test_concurrent_misses_for_many_keys_are_batched(auth: AuthFramework) -> None:
    """Concurrent misses for 50 different tokens: the first goes out at once, the others
    gather behind it into bulk reads of at most batch_size keys (1 + 16 + 16 + 16 + 1):
    5 round trips instead of 50; sessions and users alike."""
    cache = cache_of(auth)
    tokens = [make_token() for _ in range(50)]
    for token in tokens:
        await cache.inner.store_token(token)
    got = await asyncio.gather(*(cache.get_token(t.token_id) for t in tokens))
    assert got == tokens
    stats = cache.cache_statistics()
    assert stats.backend_calls == stats.batches == 5 and stats.batched_keys == 50
    assert stats.batch_sizes == {1: 2, 16: 3}

    sessions = [make_session() for _ in range(10)]
    users = [make_user(f"user{i}") for i in range(10)]
    for session, user in zip(sessions, users, strict=True):
        await cache.inner.store_session(session)
        await cache.inner.create_user(user)
    assert await asyncio.gather(*(cache.get_session(s.session_id) for s in sessions)) == sessions
    assert await asyncio.gather(*(cache.get_user(u.user_id) for u in users)) == users
    after = cache.cache_statistics()
    assert after.backend_calls - stats.backend_calls == 4  # 1 + 9 of each kind
    assert after.batch_sizes == {1: 4, 16: 5}


async def test_a_lone_miss_goes_out_alone(auth: AuthFramework) -> None:
    """A single miss is sent in the same loop pass, alone: batching does not hold it back."""
    cache = cache_of(auth)
    token = make_token()
    await cache.inner.store_token(token)
    assert await cache.get_token(token.token_id) == token
    assert cache.cache_statistics().batch_sizes == {1: 1}


async def test_verify_under_concurrency_batches_its_reads(auth: AuthFramework) -> None:
    """64 concurrent verifies of distinct uncached tokens: every one answered, in a handful of
    bulk reads rather than 64."""
    await auth.register_user("alice", "password")
    tokens = [(await auth.authenticate("alice", "password")).access_token for _ in range(64)]
    before = cache_of(auth).cache_statistics()
    records = await asyncio.gather(*(auth.verify(t) for t in tokens))
    assert {r.user_id for r in records} == {"alice"}
    stats = cache_of(auth).cache_statistics()
    assert stats.batched_keys - before.batched_keys == 64
    assert stats.backend_calls - before.backend_calls <= 8


async def test_flood_of_unknown_tokens(auth: AuthFramework) -> None:
    """A flood of well-formed unknown tokens: one backend read per token per negative_ttl;
    a flood of junk: none at all."""
    unknown = [auth._codec.mint(ACCESS).token for _ in range(30)]
    junk = [secrets.token_urlsafe(43) for _ in range(300)]

    async def refuse(token: str) -> None:
        with pytest.raises(InvalidToken):
            await auth.verify(token)

    for _ in range(5):
        await asyncio.gather(*(refuse(t) for t in unknown + junk))
    stats = cache_of(auth).cache_statistics()
    assert stats.batched_keys == 30 and stats.misses == 30
    await asyncio.sleep(0.55)  # negative_ttl
    await asyncio.gather(*(refuse(t) for t in unknown))
    assert cache_of(auth).cache_statistics().batched_keys == 60


async def test_reads_that_never_wait_are_not_batched() -> None:
    """A backend that answers without I/O (in-memory) never has a read in flight, so there
    is nothing to gather behind: every miss is read at once."""
    cache = CachedStorage(InMemoryStorage())
    await cache.open()
    tokens = [make_token() for _ in range(8)]
    for token in tokens:
        await cache.inner.store_token(token)
    assert await asyncio.gather(*(cache.get_token(t.token_id) for t in tokens)) == tokens
    assert cache.cache_statistics().batch_sizes == {1: 8}
    await cache.close()
