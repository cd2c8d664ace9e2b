"""``CachedStorage.close()`` returns whatever the server does: after its notification
connection was killed, with the server stopped (SIGSTOP) and with the server dead, on Redis and
PostgreSQL (throwaway servers; every wait is bounded so a regression fails, not hangs)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Iterator

import pytest

from authmw.storage import AuthStorage, CacheConfig, CachedStorage
from tests.backends.postgres import PgCluster
from tests.backends.redis import RedisServer
from tests.support.cache_helpers import SERVERS, inner_storage, namespace_for
from tests.support.hung import bound, kind_of, paused, throwaway, url_of

TIMEOUT = 1.0
LIMIT = bound(TIMEOUT)


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer | PgCluster]:
    """A throwaway server of each kind that these tests kill, stop and start again."""
    with throwaway(request.param) as server:
        yield server


def _ensure_running(server: RedisServer | PgCluster) -> None:
    if isinstance(server, RedisServer):
        if server.proc is None or server.proc.poll() is not None:
            server.start()
    elif not server.running:
        server.start()


async def _opened(server: RedisServer | PgCluster, *, subscribed: bool = True) -> CachedStorage:
    """A cached storage over ``server``, opened (and subscribed, unless told otherwise)."""
    _ensure_running(server)
    options: dict[str, object] = {"timeout": TIMEOUT}
    if isinstance(server, RedisServer):
        options["retry_attempts"] = 1
    inner: AuthStorage = inner_storage(
        kind_of(server), url_of(server), namespace_for(kind_of(server)), **options
    )
    cache = CachedStorage(inner, CacheConfig(subscribe_timeout=TIMEOUT, health_check_interval=0.05))
    async with asyncio.timeout(LIMIT):
        await cache.open()
    assert cache.subscribed or not subscribed
    return cache


def _kill_notification_connections(server: RedisServer | PgCluster) -> None:
    if isinstance(server, RedisServer):
        with server.client() as admin:
            admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    else:
        server.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )


async def closes(cache: CachedStorage) -> None:
    """``cache.close()`` returns within LIMIT; the test fails (instead of hanging) otherwise.

    Waited for with ``asyncio.wait``: a close() that swallowed its cancellation would hang an
    ``asyncio.timeout`` around it too.
    """
    task = asyncio.get_running_loop().create_task(cache.close())
    done, _ = await asyncio.wait({task}, timeout=LIMIT)
    assert task in done, f"close() did not return within {LIMIT} s"
    task.result()
    assert not cache.subscribed


async def test_close_while_notification_connections_are_killed(
    server: RedisServer | PgCluster,
) -> None:
    """With the subscriptions' connections killed over and over (CLIENT KILL TYPE pubsub,
    pg_terminate_backend), caches opened and closed at random moments of the reconnects that
    follow: close() returns every time."""
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            # A failed kill just means no kill this turn.
            with contextlib.suppress(Exception):
                _kill_notification_connections(server)
            stop.wait(random.random() * 0.01)  # noqa: S311 - jitter, not security

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        for _ in range(30):
            cache = await _opened(server, subscribed=False)
            await asyncio.sleep(random.random() * 0.05)  # noqa: S311 - jitter
            await closes(cache)
    finally:
        stop.set()
        thread.join(10)


async def test_close_with_the_server_stopped(server: RedisServer | PgCluster) -> None:
    """close() returns while every server process is stopped (SIGSTOP)."""
    cache = await _opened(server)
    await cache.kv_set("k", b"v", ttl=60)
    with paused(server):
        await closes(cache)


async def test_close_with_the_server_dead(server: RedisServer | PgCluster) -> None:
    """close() returns after the server was killed (and its subscription is retrying)."""
    cache = await _opened(server)
    if isinstance(server, RedisServer):
        server.kill()
    else:
        server.stop("immediate")
    await asyncio.sleep(0.3)  # the subscription notices and starts retrying
    await closes(cache)
