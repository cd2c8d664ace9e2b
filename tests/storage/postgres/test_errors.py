"""PostgreSQL failures: refused, bad credentials, missing database, exhaustion, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import replace

import asyncpg
import pytest

from authmw.errors import ConfigurationError, StorageUnavailable
from authmw.storage._urls import is_secret_option
from authmw.storage.postgres import PostgresConfig, PostgresSSLConfig, PostgresStorage
from tests.backends.postgres import PgCluster, free_port, fresh_prefix
from tests.support.factories import make_token, make_user

APP_PASSWORD = "app-Pa55word-xyz"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """A throwaway server with password (SCRAM) authentication for the ``app`` user."""
    server = PgCluster(
        hba=["host all postgres 127.0.0.1/32 trust", "host all all 127.0.0.1/32 scram-sha-256"],
        conf=["password_encryption = 'scram-sha-256'"],
    )
    try:
        server.init().start()
        server.psql(f"CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'")
        server.psql("CREATE DATABASE appdb OWNER app")
        yield server
    finally:
        server.destroy()


def _app_config(cluster: PgCluster, **kw: object) -> PostgresConfig:
    fields: dict[str, object] = {
        "url": cluster.url("app", APP_PASSWORD, "appdb"),
        "table_prefix": fresh_prefix(),
        "timeout": 5,
    }
    fields.update(kw)
    return PostgresConfig(**fields)  # type: ignore[arg-type]


async def test_refused_connection_is_storage_unavailable() -> None:
    """Nothing listening: open() raises StorageUnavailable with the socket error chained."""
    storage = PostgresStorage(f"postgresql://app:{APP_PASSWORD}@127.0.0.1:{free_port()}/x")
    with pytest.raises(StorageUnavailable) as info:
        await storage.open()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.backend == "postgres" and info.value.operation == "open"
    assert APP_PASSWORD not in str(info.value)


async def test_wrong_password_is_configuration_error(cluster: PgCluster) -> None:
    """A wrong password fails open() with ConfigurationError; no password in the message."""
    storage = PostgresStorage(cluster.url("app", "not-the-Password-9", "appdb"))
    with pytest.raises(ConfigurationError, match="authentication failed") as info:
        await storage.open()
    assert isinstance(info.value.__cause__, asyncpg.InvalidPasswordError)
    assert "not-the-Password-9" not in str(info.value)
    assert "not-the-Password-9" not in repr(storage)


# One distinct value per place a URL can carry a secret; the query names are all ones that
# storage._urls.is_secret_option flags (checked below, so the test cannot drift from the rule).
URL_SECRETS = {
    "userinfo": "Userinfo-Pa55-1",
    "password": "Query-Pa55-2",
    "sslpassword": "KEYPASS-Pa55-3",
    "passphrase": "Phrase-Pa55-4",
    "client_secret": "Client-Pa55-5",
    "auth_token": "Token-Pa55-6",
}


def _secret_query(*names: str) -> str:
    return "&".join(f"{name}={URL_SECRETS[name]}" for name in names)


def _exception_texts(exc: BaseException) -> list[str]:
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        texts += [str(seen), repr(seen), *map(str, seen.args)]
        seen = seen.__cause__ or seen.__context__
    return texts


async def test_no_secret_in_any_repr_or_error(
    cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """No repr of a config, SSL config or storage, and no error of a failed connection (wrong
    password, port or host) or a refused URL, shows a password or any secret query option."""
    caplog.set_level(logging.DEBUG)
    assert all(is_secret_option(name) for name in URL_SECRETS if name != "userinfo")
    options = _secret_query("sslpassword", "passphrase", "client_secret", "auth_token")
    userinfo = URL_SECRETS["userinfo"]
    with_port = f"127.0.0.1:{cluster.port}"
    wrong_userinfo = f"postgresql://app:{userinfo}@{with_port}/appdb?{options}"
    wrong_query = f"postgresql://app@{with_port}/appdb?{_secret_query('password')}&{options}"
    wrong_port = (
        f"postgresql://app:{userinfo}@127.0.0.1:{free_port()}/appdb"
        f"?{_secret_query('password')}&{options}"
    )
    wrong_host = f"postgresql://app:{userinfo}@no-such-host.invalid/appdb?{options}"
    texts: list[str] = []

    ssl_config = PostgresSSLConfig(ca_cert_path=__file__)
    for url in (wrong_userinfo, wrong_query, wrong_port, wrong_host):
        config = PostgresConfig.from_url(url + "&timeout=5&table_prefix=leak_")
        for shown in (
            config,
            PostgresConfig(url=url),
            config.with_ssl_config(ssl_config),
            ssl_config,
            PostgresStorage(url),
            PostgresStorage.with_config(config),
        ):
            texts += [repr(shown), str(shown)]
        assert "***" in repr(config)

    for url, expected in (
        (wrong_userinfo, ConfigurationError),
        (wrong_query, ConfigurationError),
        (wrong_port, StorageUnavailable),
        (wrong_host, StorageUnavailable),
    ):
        storage = PostgresStorage(url + "&timeout=5")
        with pytest.raises(expected) as info:
            await storage.open()
        texts += _exception_texts(info.value)
    for bad in (
        f"mysql://app:{userinfo}@h/db?{options}",
        f"postgresql://app:{userinfo}@h/db?{options}&pool_size=many",
    ):
        with pytest.raises(ConfigurationError) as refused:
            PostgresStorage(bad)
        texts += _exception_texts(refused.value)

    texts.append(caplog.text)
    for text in texts:
        for secret in URL_SECRETS.values():
            assert secret not in text, text


async def test_missing_database_is_configuration_error(cluster: PgCluster) -> None:
    """An unknown database name fails open() with ConfigurationError saying so."""
    storage = PostgresStorage(cluster.url("app", APP_PASSWORD, "no_such_db"))
    with pytest.raises(ConfigurationError, match="database does not exist") as info:
        await storage.open()
    assert isinstance(info.value.__cause__, asyncpg.InvalidCatalogNameError)


async def test_correct_password_works_and_is_never_logged(
    cluster: PgCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the right password the storage serves requests; no log line carries it."""
    caplog.set_level(logging.DEBUG)
    storage = PostgresStorage.with_config(_app_config(cluster))
    await storage.open()
    try:
        await storage.create_user(make_user("pw"))
        assert await storage.get_user("pw") is not None
        await storage.cleanup_expired()
    finally:
        await storage.close()
    assert f"127.0.0.1:{cluster.port}/appdb" in caplog.text
    assert APP_PASSWORD not in caplog.text


async def test_pool_exhaustion_times_out(cluster: PgCluster) -> None:
    """Every pooled connection busy past `timeout`: StorageUnavailable, then recovery."""
    storage = PostgresStorage.with_config(_app_config(cluster, pool_size=1, timeout=0.5))
    await storage.open()
    try:
        held = await storage.pool.acquire()
        start = time.monotonic()
        with pytest.raises(StorageUnavailable, match="pool exhausted") as info:
            await storage.get_user("anyone")
        elapsed = time.monotonic() - start
        assert 0.4 <= elapsed < 3
        assert isinstance(info.value.__cause__, TimeoutError)
        await storage.pool.release(held)
        assert await storage.get_user("anyone") is None
    finally:
        await storage.close()


async def test_query_past_timeout_is_storage_unavailable(cluster: PgCluster) -> None:
    """A statement blocked past `timeout` (a row lock held elsewhere) is cancelled cleanly."""
    config = _app_config(cluster, timeout=0.5)
    storage = PostgresStorage.with_config(config)
    await storage.open()
    blocker = await asyncpg.connect(config.url)
    try:
        user = make_user("locked")
        await storage.create_user(user)
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            f"SELECT 1 FROM {config.table_prefix}users WHERE user_id = 'locked' FOR UPDATE"
        )
        with pytest.raises(StorageUnavailable, match="timed out") as info:
            await storage.update_user(replace(user, is_active=False))
        assert isinstance(info.value.__cause__, TimeoutError)
        await tx.rollback()
        assert await storage.update_user(replace(user, is_active=False)) is True
    finally:
        await blocker.close()
        await storage.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_server_restart_mid_run_recovers(cluster: PgCluster, mode: str) -> None:
    """A restart under load gives only StorageUnavailable; afterwards the same pool serves."""
    storage = PostgresStorage.with_config(_app_config(cluster, pool_size=8, timeout=3))
    await storage.open()
    pool = storage.pool
    known = make_token("restart")
    await storage.store_token(known)
    errors: list[BaseException] = []
    successes_after: list[int] = []
    restarted = asyncio.Event()
    all_recovered = asyncio.Event()
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        hard_deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < hard_deadline:
            try:
                if n % 2:
                    assert await storage.get_token(known.token_id) == known
                else:
                    await storage.store_token(make_token("restart"))
                if restarted.is_set():
                    successes_after.append(n)
                    if len(set(successes_after)) == 16:
                        all_recovered.set()
            except Exception as exc:  # collected and checked below
                errors.append(exc)
                await asyncio.sleep(0.02)
            await asyncio.sleep(0)

    workers = [asyncio.create_task(worker(n)) for n in range(16)]
    try:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(cluster.stop, mode)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(cluster.start)
        restarted.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_recovered.wait(), 10)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    try:
        assert errors, "the restart went unnoticed"
        unexpected = [e for e in errors if not isinstance(e, StorageUnavailable)]
        assert unexpected == []
        assert all(e.__cause__ is not None for e in errors)
        assert set(successes_after) == set(range(16)), "some callers never recovered"
        assert storage.pool is pool  # the same pool, not a reopened storage
        assert await storage.get_token(known.token_id) == known
        assert await storage.ping() >= 0
    finally:
        await storage.close()


async def _kill_pool_backends(storage: PostgresStorage, admin: asyncpg.Connection) -> None:
    held = [await storage.pool.acquire() for _ in range(storage.pool.get_max_size())]
    pids = [con.get_server_pid() for con in held]
    for con in held:
        await storage.pool.release(con)
    await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids)


async def test_killed_pool_connections_are_replaced(postgres_url: str) -> None:
    """Backends killed under idle pooled connections: reads still succeed; a write fails at
    most once, as StorageUnavailable, and the next one succeeds."""
    storage = PostgresStorage.with_config(
        PostgresConfig(
            url=postgres_url, table_prefix=fresh_prefix(), pool_size=2, min_pool_size=2, timeout=5
        )
    )
    await storage.open()
    admin = await asyncpg.connect(postgres_url)
    try:
        await storage.create_user(make_user("survivor"))
        await _kill_pool_backends(storage, admin)
        for _ in range(4):
            assert await storage.get_user("survivor") is not None
        assert await storage.ping() >= 0
        await _kill_pool_backends(storage, admin)
        token = make_token("survivor")
        try:
            await storage.store_token(token)
        except StorageUnavailable as exc:
            assert exc.__cause__ is not None
            await storage.store_token(token)
        assert await storage.get_token(token.token_id) == token
    finally:
        await admin.close()
        await storage.close()
