"""Caches in several app instances sharing one Redis or PostgreSQL: invalidation across them."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from authmw import AuthFramework
from authmw.errors import InvalidToken
from authmw.models import utcnow
from authmw.storage import CachedStorage
from authmw.storage.postgres import PostgresStorage
from authmw.storage.redis import RedisStorage
from authmw.storage.redis._invalidation import client_name_for
from tests.backends.redis import RedisCluster, cluster_config, purge
from tests.conftest import TEST_SECRET
from tests.support import cache_peer
from tests.support.cache_helpers import (
    SERVERS,
    cache_of,
    eventually,
    framework,
    frameworks,
    inner_storage,
    namespace_for,
    refused_eventually,
)

ROOT = Path(__file__).resolve().parents[3]

# Quiet subscriptions are pinged every minute here, so a LISTEN connection's last query
# (what pg_stat_activity shows, and how the tests find it) stays the LISTEN.
QUIET = 60.0


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, url) of the run's Redis, then of its PostgreSQL database."""
    kind: str = request.param
    url: str = request.getfixturevalue("redis_url" if kind == "redis" else "postgres_url")
    return kind, url


@pytest.fixture
async def pair(server: tuple[str, str]) -> AsyncIterator[list[AuthFramework]]:
    """Two app instances, each with its own cache, on one namespace of the server."""
    kind, url = server
    async with frameworks(kind, url, health_check_interval=QUIET) as auths:
        yield auths


async def login(auth: AuthFramework, user: str = "alice") -> tuple[str, str]:
    """Register ``user`` and return (access token, refresh token)."""
    await auth.register_user(user, "password")
    token = await auth.authenticate(user, "password")
    return token.access_token, token.refresh_token


async def test_revocation_reaches_the_other_instance(pair: list[AuthFramework]) -> None:
    """A token revoked on one instance is refused on the other within 100 ms."""
    a, b = pair
    access, _ = await login(a)
    for _ in range(3):
        await b.verify(access)  # cached on b now
    before = cache_of(b).cache_statistics()
    assert await a.revoke(access)
    await refused_eventually(b, access)
    assert cache_of(b).cache_statistics().invalidations_received > before.invalidations_received


async def test_every_kind_of_write_reaches_the_other_instance(
    pair: list[AuthFramework],
) -> None:
    """Refresh rotation, logout, session saves, user changes and revoke_user all propagate."""
    a, b = pair
    access, refresh = await login(a, "bob")
    await b.verify(access)
    await a.refresh(refresh)
    await refused_eventually(b, access)

    session_id, record = await a.create_session("bob", {"cart": []})
    assert (await b.get_session(session_id)).data == {"cart": []}
    await a.save_session(record, {"cart": [7]})
    await eventually(lambda: b.get_session_nowait(session_id) is None)
    assert (await b.get_session(session_id)).data == {"cart": [7]}
    await a.destroy_session(session_id)
    await eventually(lambda: b.get_session_nowait(session_id) is None)
    with pytest.raises(InvalidToken):
        await b.get_session(session_id)

    fresh = (await a.authenticate("bob", "password")).access_token
    other_session, _ = await a.create_session("bob")
    await b.verify(fresh)
    await b.get_session(other_session)
    await a.revoke_user("bob")
    await refused_eventually(b, fresh)
    with pytest.raises(InvalidToken):
        await b.get_session(other_session)

    cache_a, cache_b = cache_of(a), cache_of(b)
    user = await cache_b.get_user("bob")
    assert user is not None and user.is_active
    await cache_a.update_user(dataclasses.replace(user, is_active=False))
    await eventually(lambda: "bob" not in cache_b._user_entries)
    got = await cache_b.get_user("bob")
    assert got is not None and not got.is_active


async def _kill_subscriptions(kind: str, url: str, auth: AuthFramework) -> int:
    """Kill the server side of ``auth``'s invalidation connection (and its peers' on the same
    namespace): CLIENT KILL on Redis, pg_terminate_backend on PostgreSQL. How many died."""
    inner = cache_of(auth).inner
    if isinstance(inner, RedisStorage):
        name = client_name_for(inner.keys.prefix)
        with redis.Redis.from_url(url, socket_timeout=5) as admin:
            ids = [c["id"] for c in admin.client_list() if c.get("name") == name]
            for client_id in ids:
                admin.client_kill_filter(_id=client_id)
            return len(ids)
    assert isinstance(inner, PostgresStorage)
    channel = inner.invalidation_channel()
    con = await asyncpg.connect(url)
    try:
        killed: int = await con.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query = $1",
            f'LISTEN "{channel.name}"',
        )  # type: ignore[attr-defined]
        return killed
    finally:
        await con.close()


async def test_after_the_subscription_was_killed_and_restored(
    pair: list[AuthFramework],
    server: tuple[str, str],
) -> None:
    """Killing the subscription connection: the cache stops trusting what it held, resubscribes,
    and a revocation afterwards is again refused on the other instance within 100 ms."""
    kind, url = server
    a, b = pair
    access, _ = await login(a)
    other = (await a.authenticate("alice", "password")).access_token
    await b.verify(access)
    await b.verify(other)
    # A change the other instance is never told about (written past every cache), as if
    # its message had been lost while the subscription was down.
    record = await a.verify(other)
    await cache_of(a).inner.update_token(
        dataclasses.replace(record, revoked_at=utcnow(), revoke_reason="revoked")
    )
    await b.verify(other)  # still cached on b: nobody told it

    stats = cache_of(b).cache_statistics()
    assert await _kill_subscriptions(kind, url, b) >= 1
    await eventually(
        lambda: (
            cache_of(b).cache_statistics().subscriptions > stats.subscriptions
            and cache_of(b).subscribed
        )
    )
    after = cache_of(b).cache_statistics()
    assert after.subscription_losses > stats.subscription_losses
    assert after.distrusts >= stats.distrusts + 2  # on the loss, and again once back
    with pytest.raises(InvalidToken, match="revoked"):
        await b.verify(other)  # the lost change is seen: entries from before were re-read

    await b.verify(access)
    await eventually(lambda: cache_of(a).subscribed)
    assert await a.revoke(access)
    await refused_eventually(b, access)


@pytest.fixture
def peer_process(
    server: tuple[str, str],
    request: pytest.FixtureRequest,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A second OS process running tests/support/cache_peer.py; yields it and its namespace."""
    assert cache_peer.SECRET == TEST_SECRET
    kind, url = server
    namespace = request.getfixturevalue("peer_namespace")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.cache_peer", kind, url, namespace],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc, namespace
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def peer_namespace(server: tuple[str, str]) -> str:
    """The namespace the test and its peer process share."""
    return namespace_for(server[0])


def _ask(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


async def test_revocation_reaches_another_process(
    server: tuple[str, str],
    peer_process: tuple[subprocess.Popen[str], str],
) -> None:
    """Two OS processes, each with its own cache: a revocation here is refused there within
    100 ms (measured on the one wall clock both share)."""
    kind, url = server
    proc, namespace = peer_process
    auth = framework(CachedStorage(inner_storage(kind, url, namespace)))
    await auth.open()
    try:
        access, _ = await login(auth)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, _ask, proc, f"verify {access}") == "ok"
        assert await loop.run_in_executor(None, _ask, proc, f"watch {access}") == "watching"
        await auth.revoke(access)
        assert proc.stdout is not None
        answer = (await loop.run_in_executor(None, proc.stdout.readline)).split()
        assert answer[0] == "refused", answer  # the peer watches for 10 s at most
        assert await loop.run_in_executor(None, _ask, proc, f"verify {access}") == "refused revoked"
    finally:
        await auth.close()
        inner = cache_of(auth).inner
        if isinstance(inner, RedisStorage):
            await purge(inner)
            await inner.close()


async def test_cluster_invalidation(redis_cluster: RedisCluster) -> None:
    """On a Redis Cluster, a revocation on one instance is refused on another within 100 ms."""
    config = cluster_config(redis_cluster)
    a, b = (framework(CachedStorage(RedisStorage(config))) for _ in range(2))
    await a.open()
    await b.open()
    try:
        assert cache_of(a).subscribed and cache_of(b).subscribed
        access, _ = await login(a)
        await b.verify(access)
        await a.revoke(access)
        await refused_eventually(b, access)
    finally:
        await a.close()
        await b.close()
        inner = cache_of(a).inner
        assert isinstance(inner, RedisStorage)
        await purge(inner)
        await inner.close()
