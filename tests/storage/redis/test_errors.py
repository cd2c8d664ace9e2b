"""Driver errors become StorageUnavailable with the cause attached, on real servers."""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.exceptions import (
    AuthenticationError,
    ClusterError,
    ConnectionError,
    ReadOnlyError,
    TimeoutError,
)

from authmw._outage import OutageLog
from authmw.errors import StorageUnavailable
from authmw.storage.redis import RedisConfig, RedisStorage
from authmw.storage.redis._executor import _retryable
from tests.backends.redis import RedisServer, opened, prefix, wait_until
from tests.support.factories import make_token, make_user

PASSWORD = "err-test-password"
STORAGE_LOGGER = "authmw.storage.redis"


@pytest.fixture(scope="module")
def primary() -> Iterator[RedisServer]:
    """A throwaway password-protected server these tests may pause and reconfigure."""
    server = RedisServer([f"requirepass {PASSWORD}"], password=PASSWORD)
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def replica(primary: RedisServer) -> Iterator[RedisServer]:
    """A read-only replica of ``primary``, in sync."""
    server = RedisServer(
        [
            f"replicaof 127.0.0.1 {primary.port}",
            f"masterauth {PASSWORD}",
            f"requirepass {PASSWORD}",
        ],
        password=PASSWORD,
    )
    try:
        server.start()
        with server.client() as client:
            assert wait_until(lambda: client.info("replication")["master_link_status"] == "up", 15)
        with primary.client() as client:
            assert wait_until(
                lambda: client.info("replication").get("slave0", {}).get("state") == "online", 15
            )
        yield server
    finally:
        server.destroy()


def admin_ping(server: RedisServer) -> bool:
    """True once the server answers again."""
    with server.client() as client:
        return bool(client.ping())


def fast(url: str, **overrides: object) -> RedisConfig:
    """A config that gives up quickly (short timeout, two quick retries)."""
    fields: dict[str, object] = {
        "url": url,
        "timeout": 0.5,
        "retry_attempts": 2,
        "retry_delay": 0.01,
        "key_prefix": prefix(),
    }
    fields.update(overrides)
    return RedisConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def storage(primary: RedisServer) -> AsyncIterator[RedisStorage]:
    """An opened storage on the throwaway primary."""
    async for s in opened(fast(primary.url)):
        yield s


async def test_connection_refused() -> None:
    """Nothing listening: open() and every call raise StorageUnavailable from ConnectionError."""
    storage = RedisStorage(fast("redis://127.0.0.1:1/0"))
    with pytest.raises(StorageUnavailable) as at_open:
        await storage.open()
    assert isinstance(at_open.value.__cause__, ConnectionError)
    with pytest.raises(StorageUnavailable) as info:
        await storage.get_token("anything")
    await storage.close()
    assert info.value.backend == "redis" and info.value.operation == "get_token"
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "127.0.0.1:1" in str(info.value)


async def test_timeout(primary: RedisServer) -> None:
    """A server that stops answering: StorageUnavailable from a timeout, within bounds."""
    async for storage in opened(fast(primary.url, timeout=0.3)):
        await storage.kv_set("warm", b"1", ttl=60)  # a pooled connection exists
        with primary.client() as admin:
            admin.execute_command("CLIENT", "PAUSE", 6000, "ALL")
            started = time.monotonic()
            with pytest.raises(StorageUnavailable) as info:
                await storage.kv_get("warm")
            elapsed = time.monotonic() - started
        # The call's deadline (builtins.TimeoutError) or the driver's read timeout, whichever
        # expired first.
        assert isinstance(info.value.__cause__, (TimeoutError, builtins.TimeoutError))
        # Refused while the server was still paused (6 s): bounded by the 0.3 s timeout, not
        # a wait for the server; the margin is for a busy machine.
        assert elapsed < 5.5, elapsed
        assert wait_until(lambda: admin_ping(primary), 10)  # the pause ends by itself


async def test_auth_failure_after_open(primary: RedisServer, storage: RedisStorage) -> None:
    """A password changed under a running storage: StorageUnavailable from the auth error."""
    await storage.kv_set("before", b"1", ttl=60)
    with primary.client() as admin:
        admin.config_set("requirepass", "rotated-password")
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    try:
        with pytest.raises(StorageUnavailable) as info:
            await storage.kv_get("before")
        assert isinstance(info.value.__cause__, AuthenticationError)
        assert "rotated-password" not in str(info.value) and PASSWORD not in str(info.value)
    finally:
        with redis.Redis(port=primary.port, password="rotated-password") as admin:
            admin.config_set("requirepass", PASSWORD)


async def test_readonly_replica(replica: RedisServer) -> None:
    """Writes to a read-only replica are retried, then StorageUnavailable from READONLY."""
    async for storage in opened(fast(replica.url)):
        with pytest.raises(StorageUnavailable) as info:
            await storage.store_token(make_token())
        assert isinstance(info.value.__cause__, ReadOnlyError)
        assert info.value.operation == "store_token"
        assert await storage.get_token("missing") is None  # reads still work


async def test_unacknowledged_write(primary: RedisServer) -> None:
    """wait_replicas without enough replicas: the write is refused as not acknowledged."""
    async for storage in opened(
        fast(f"redis://:{PASSWORD}@127.0.0.1:{primary.port}/0", wait_replicas=2, wait_timeout=0.1)
    ):
        with pytest.raises(StorageUnavailable) as info:
            await storage.kv_set("k", b"v", ttl=60)
        assert "acknowledged by" in str(info.value) and "of 2 replica" in str(info.value)


async def test_unacknowledged_import(primary: RedisServer) -> None:
    """An import page is a write like any other: refused when too few replicas acknowledge it."""
    async for storage in opened(
        fast(f"redis://:{PASSWORD}@127.0.0.1:{primary.port}/0", wait_replicas=2, wait_timeout=0.1)
    ):
        with pytest.raises(StorageUnavailable) as info:
            await storage.import_users([make_user("imported")])
        assert info.value.operation == "import_users"
        assert "acknowledged by" in str(info.value) and "of 2 replica" in str(info.value)


async def test_acknowledged_write_reaches_replica(
    primary: RedisServer,
    replica: RedisServer,
) -> None:
    """With wait_replicas=1 a returned write is already on the replica."""
    async for storage in opened(fast(primary.url, wait_replicas=1, wait_timeout=2)):
        token = make_token()
        await storage.store_token(token)
        with replica.client() as client:
            assert client.exists(storage.keys.token(token.token_id)) == 1
        assert await storage.import_users([make_user("copied")]) == [True]
        with replica.client() as client:
            assert client.exists(storage.keys.user("copied")) == 1


async def test_errors_carry_the_operation_and_no_secret() -> None:
    """The message names backend and operation; the password never appears."""
    storage = RedisStorage(fast(f"redis://:{PASSWORD}@127.0.0.1:1/0"))
    with pytest.raises(StorageUnavailable) as info:
        await storage.delete_user_sessions("u")
    await storage.close()
    assert str(info.value).startswith("redis storage unavailable during delete_user_sessions")
    assert PASSWORD not in str(info.value)


async def test_retry_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """50 failing calls (100 retries) log one retry warning; the next one, once the interval
    has passed, counts the 99 left out, and none shows the password."""
    storage = RedisStorage(fast(f"redis://:{PASSWORD}@127.0.0.1:1/0"))
    now = [100.0]
    executor = storage._x
    executor.retry_log = OutageLog(
        logging.getLogger(STORAGE_LOGGER), interval=10.0, clock=lambda: now[0]
    )
    try:
        with caplog.at_level(logging.WARNING, logger=STORAGE_LOGGER):
            for _ in range(50):
                with pytest.raises(StorageUnavailable):
                    await storage.get_token("anything")
            first = [r.getMessage() for r in caplog.records if r.name == STORAGE_LOGGER]
            now[0] += 10.5
            with pytest.raises(StorageUnavailable):
                await storage.get_token("anything")
        messages = [r.getMessage() for r in caplog.records if r.name == STORAGE_LOGGER]
    finally:
        await storage.close()
    assert len(first) == 1 and "get_token" in first[0] and "retry 1/2" in first[0], first
    assert len(messages) == 2, messages
    assert "and 99 more since the last such warning" in messages[1], messages
    assert not [m for m in messages if PASSWORD in m]


async def test_retry_warnings_bounded_on_the_real_clock(caplog: pytest.LogCaptureFixture) -> None:
    """With the default interval, 50 calls failing at once log at most two retry warnings."""
    storage = RedisStorage(fast("redis://127.0.0.1:1/0"))
    try:
        with caplog.at_level(logging.WARNING, logger=STORAGE_LOGGER):
            results = await asyncio.gather(
                *(storage.get_token("anything") for _ in range(50)), return_exceptions=True
            )
    finally:
        await storage.close()
    assert all(isinstance(r, StorageUnavailable) for r in results), results
    warnings = [r for r in caplog.records if r.name == STORAGE_LOGGER]
    assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]


def test_retry_policy() -> None:
    """Errors proving a command never ran are retried; ambiguous ones only when idempotent."""
    never_ran = [
        ConnectionError("Error 111 connecting to 127.0.0.1:1. Refused."),
        ReadOnlyError("READONLY"),
        ClusterError("TTL exhausted."),
        ConnectionError("The previous master is now a slave"),
    ]
    ambiguous = [
        ConnectionError("Connection closed by server."),
        TimeoutError("Timeout reading from 127.0.0.1:6379"),
    ]
    for exc in never_ran:
        assert _retryable(exc, idempotent=False)
    for exc in ambiguous:
        assert _retryable(exc, idempotent=True) and not _retryable(exc, idempotent=False)
    assert not _retryable(AuthenticationError("bad"), idempotent=True)


async def test_concurrency_beyond_pool_size_waits(primary: RedisServer) -> None:
    """More concurrent calls than pool_size queue for a connection (up to max_waiting)."""
    async for storage in opened(fast(primary.url, pool_size=2, max_waiting=48)):
        results = await asyncio.gather(*(storage.kv_incr("n", 60) for _ in range(50)))
        assert sorted(results) == list(range(1, 51))
