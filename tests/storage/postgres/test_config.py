"""PostgreSQL configuration: URL options, builders, optimisation applied, no password leaks."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from authmw.errors import ConfigurationError, StorageUnavailable
from authmw.storage import storage_from_url
from authmw.storage.postgres import (
    PostgresConfig,
    PostgresMigrationMode,
    PostgresOptimization,
    PostgresSSLConfig,
    PostgresStorage,
)
from tests.backends.postgres import fresh_prefix

SECRET = "s3cr3t-p@ss/word"
SECRET_URL = "postgresql://alice:s3cr3t-p%40ss%2Fword@127.0.0.1:1/db"


def test_defaults_follow_the_guide() -> None:
    """Defaults: pool 10, timeout 5 s, prefix auth_, no SSL, auto migrations, audit on."""
    config = PostgresConfig(url="postgresql://u@localhost/db")
    assert config.pool_size == 10
    assert config.timeout == timedelta(seconds=5)
    assert config.table_prefix == "auth_"
    assert config.enable_ssl is False and config.ssl_config is None
    assert config.migration_mode is PostgresMigrationMode.AUTO
    assert config.enable_audit_log is True


def test_url_options_are_read_and_stripped() -> None:
    """Query options configure authmw and do not reach the driver; libpq ones pass through."""
    storage = PostgresStorage(
        "postgres://u@h:5433/db?pool_size=20&timeout=5&table_prefix=app_"
        "&migration_mode=strict&enable_audit_log=false&cleanup_interval=60&sslmode=disable"
    )
    config = storage.config
    assert (config.pool_size, config.timeout, config.table_prefix) == (20, 5.0, "app_")
    assert config.migration_mode is PostgresMigrationMode.STRICT
    assert config.enable_audit_log is False and config.cleanup_interval == 60.0
    assert config.driver_url == "postgres://u@h:5433/db?sslmode=disable"
    assert storage.name == "postgres"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h/db?pool_size=many",
        "postgresql://u@h/db?migration_mode=sometimes",
        "postgresql://u@h/db?enable_audit_log=maybe",
        "postgresql://u@h/db?pool_size=0",
        "mysql://u@h/db",
    ],
)
def test_bad_url_options_are_refused(url: str) -> None:
    """Unparsable or out-of-range options raise ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError):
        PostgresStorage(url)


def test_options_in_a_config_url_are_not_silently_ignored() -> None:
    """PostgresConfig(url=...) with authmw options in the URL is refused (use from_url)."""
    with pytest.raises(ConfigurationError, match="from_url"):
        PostgresConfig(url="postgresql://u@h/db?pool_size=3")


def test_builders_and_storage_from_url() -> None:
    """The guide's builder chain works and storage_from_url picks PostgresStorage."""
    config = (
        PostgresConfig(url="postgresql://u@h/db")
        .with_pool_size(20)
        .with_timeout(timedelta(seconds=3))
        .with_table_prefix("b_")
        .with_migration_mode(PostgresMigrationMode.MANUAL)
        .with_enable_audit_log(False)
        .with_cleanup_interval(timedelta(hours=1))
        .with_optimization(PostgresOptimization(connection_pool_size=7))
    )
    assert config.effective_pool_size == 7 and config.table_prefix == "b_"
    assert isinstance(PostgresStorage.with_config(config), PostgresStorage)
    for scheme in ("postgresql", "postgres"):
        assert isinstance(storage_from_url(f"{scheme}://u@h/db"), PostgresStorage)


def test_ssl_config_is_checked() -> None:
    """Missing certificate files and half client-cert pairs are refused up front."""
    with pytest.raises(ConfigurationError, match="no such file"):
        PostgresSSLConfig(ca_cert_path="/nonexistent/ca.crt")
    with pytest.raises(ConfigurationError, match="go together"):
        PostgresSSLConfig(client_cert_path=__file__)
    config = PostgresConfig(url="postgresql://u@h/db", enable_ssl=True)
    assert config.ssl_enabled and config.ssl_argument() is not None
    # Off is off: asyncpg gets ssl=False, not None (which would mean its default, prefer).
    assert PostgresConfig(url="postgresql://u@h/db").ssl_argument() is False


def test_password_never_in_repr() -> None:
    """Neither the config's nor the storage's repr shows the password."""
    storage = PostgresStorage(SECRET_URL)
    for text in (repr(storage), repr(storage.config), str(storage.config)):
        assert SECRET not in text and "s3cr3t" not in text
        assert "***" in text
    query_pw = PostgresStorage("postgresql://alice@h/db?password=hunter2hunter2")
    assert "hunter2" not in repr(query_pw)


async def test_password_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A failed open names the server but never the password, in the error or the log."""
    caplog.set_level(logging.DEBUG)
    storage = PostgresStorage(SECRET_URL + "?timeout=2")
    with pytest.raises(StorageUnavailable) as info:
        await storage.open()
    chain: list[BaseException] = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for text in [str(e) for e in chain] + [repr(e) for e in chain] + [caplog.text]:
        assert "s3cr3t" not in text
    assert "127.0.0.1:1/db" in str(info.value)


async def test_optimization_is_applied_to_the_pool(postgres_url: str) -> None:
    """Pool size, statement cache, JIT and application name reach asyncpg and the server."""
    config = PostgresConfig(
        url=postgres_url,
        table_prefix=fresh_prefix(),
        min_pool_size=2,
        optimization=PostgresOptimization(
            connection_pool_size=3, statement_cache_size=0, enable_prepared_statements=False
        ),
    )
    storage = PostgresStorage.with_config(config)
    await storage.open()
    try:
        pool = storage.pool
        assert pool.get_max_size() == 3 and pool.get_min_size() == 2
        async with pool.acquire() as con:
            assert await con.fetchval("SHOW jit") == "off"
            assert await con.fetchval("SHOW application_name") == "authmw"
            assert con._stmt_cache.get_max_size() == 0
    finally:
        await storage.close()
    plain = PostgresStorage.with_config(config).with_optimization(
        PostgresOptimization(enable_query_optimization=False, statement_cache_size=50)
    )
    await plain.open()
    try:
        async with plain.pool.acquire() as con:
            assert con._stmt_cache.get_max_size() == 50
        with pytest.raises(ConfigurationError):
            plain.with_optimization(PostgresOptimization())
    finally:
        await plain.close()


async def test_open_close_idempotent_and_lazy(postgres_url: str) -> None:
    """Calls before open() open once; close() twice is harmless; reopen works."""
    storage = PostgresStorage.with_config(
        PostgresConfig(url=postgres_url, table_prefix=fresh_prefix())
    )
    assert await storage.get_user("nobody") is None
    assert storage.pool is not None
    await storage.close()
    await storage.close()
    assert storage.pool is None
    await storage.open()
    assert await storage.ping() >= 0
    await storage.close()


def test_misspelled_url_option_is_a_configuration_error() -> None:
    """``?table_prefx=`` names itself and suggests ``table_prefix`` when the config is built,
    instead of a server refusal that looked like an outage (503) at every connection."""
    with pytest.raises(ConfigurationError) as info:
        storage_from_url("postgresql://postgres@127.0.0.1:5432/postgres?table_prefx=x_")
    assert "'table_prefx'" in str(info.value)
    assert "did you mean 'table_prefix'" in str(info.value)
    assert "min_pool_size" in str(info.value)  # the valid options are listed
    # libpq options and server settings still pass through.
    config = PostgresConfig.from_url("postgresql://h/db?sslmode=disable&application_name=app")
    assert "application_name=app" in config.url


async def test_unknown_server_setting_is_a_configuration_error_at_open(
    postgres_url: str,
) -> None:
    """An option that is no server setting fails open with a ConfigurationError naming
    authmw's options, not a StorageUnavailable retried for ever."""
    storage = storage_from_url(f"{postgres_url}?zzunknownzz=1&table_prefix={fresh_prefix()}")
    with pytest.raises(ConfigurationError, match="neither authmw's nor a server setting"):
        await storage.open()
    await storage.close()


def test_unparsable_url_is_a_configuration_error() -> None:
    """A URL urllib cannot split (an unclosed IPv6 bracket) is a ConfigurationError, like
    every other bad URL, not a bare ValueError (found by tests/reliability)."""
    from authmw.errors import ConfigurationError
    from authmw.storage import storage_from_url

    for url in ("postgresql://[", "postgresql://u:secret@[::1/db"):
        with pytest.raises(ConfigurationError) as caught:
            storage_from_url(url)
        assert "secret" not in str(caught.value)
