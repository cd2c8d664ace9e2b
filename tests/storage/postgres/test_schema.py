"""PostgreSQL schema: versioned migrations, the advisory lock, strict and manual modes, prefixes."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest

from authmw.errors import ConfigurationError, InvalidInput, StorageUnavailable
from authmw.storage.postgres import (
    PostgresConfig,
    PostgresMigrationMode,
    PostgresStorage,
    migrate_schema,
)
from authmw.storage.postgres._schema import latest_version, load_migrations, lock_key
from tests.backends.postgres import fresh_prefix
from tests.support.factories import make_session, make_token, make_user

SUFFIXES = {
    "users",
    "tokens",
    "sessions",
    "kv_store",
    "audit_log",
    "revoked_families",
    "schema_migrations",
}


async def _tables(url: str, prefix: str) -> set[str]:
    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE $1", prefix + "%"
        )
        return {r["tablename"][len(prefix) :] for r in rows}
    finally:
        await con.close()


async def _versions(url: str, prefix: str) -> list[int]:
    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch(f"SELECT version FROM {prefix}schema_migrations ORDER BY 1")
        return [r["version"] for r in rows]
    finally:
        await con.close()


def _config(url: str, prefix: str, **kw: object) -> PostgresConfig:
    return PostgresConfig(url=url, table_prefix=prefix, timeout=10, **kw)  # type: ignore[arg-type]


def test_packaged_migrations_are_numbered_and_readable() -> None:
    """The SQL files ship in the package, numbered 1..n, each with a checksum."""
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert latest_version() == len(migrations) >= 2
    for m in migrations:
        assert m.checksum == hashlib.sha256(m.template.encode()).hexdigest()
        assert "{prefix}" in m.template


async def test_auto_mode_creates_every_table_with_the_prefix(postgres_url: str) -> None:
    """open() in auto mode creates the six tables plus the version table, all prefixed."""
    prefix = fresh_prefix()
    storage = PostgresStorage.with_config(_config(postgres_url, prefix))
    await storage.open()
    try:
        assert await _tables(postgres_url, prefix) == SUFFIXES
        assert await _versions(postgres_url, prefix) == list(range(1, latest_version() + 1))
        assert await storage.schema_version() == latest_version()
    finally:
        await storage.close()


async def test_every_expiry_column_is_indexed(postgres_url: str) -> None:
    """Each expiry column of every table leads an index (what docs/postgres.md promises)."""
    prefix = fresh_prefix()
    await migrate_schema(_config(postgres_url, prefix))
    con = await asyncpg.connect(postgres_url)
    try:
        columns = await con.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_name LIKE $1 AND column_name LIKE '%expires_at'",
            prefix + "%",
        )
        leading = {
            (r["table"], r["column"])
            for r in await con.fetch(
                "SELECT c.relname AS table, a.attname AS column FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
                "WHERE c.relname LIKE $1",
                prefix + "%",
            )
        }
    finally:
        await con.close()
    expiries = {(r["table_name"], r["column_name"]) for r in columns}
    assert len(expiries) == 7
    assert expiries <= leading, expiries - leading


async def test_version_3_keeps_session_data_written_as_jsonb(postgres_url: str) -> None:
    """Sessions stored at version 2 (data as JSONB) read back unchanged after migrating to 3,
    which stores the JSON text (so NUL characters fit)."""
    prefix = fresh_prefix()
    assert await migrate_schema(_config(postgres_url, prefix), target=2) == [1, 2]
    session = make_session(data={"cart": [1, 2], "nested": {"a": "é"}, "n": None})
    con = await asyncpg.connect(postgres_url)
    try:
        await con.execute(
            f"INSERT INTO {prefix}sessions (session_id, user_id, verifier_digest, data, "
            "created_at, last_accessed, expires_at, absolute_expires_at) "
            "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8)",
            session.session_id,
            session.user_id,
            session.verifier_digest,
            '{"cart": [1, 2], "nested": {"a": "é"}, "n": null}',
            session.created_at,
            session.last_accessed,
            session.expires_at,
            session.absolute_expires_at,
        )
    finally:
        await con.close()
    storage = PostgresStorage.with_config(_config(postgres_url, prefix))
    await storage.open()
    try:
        assert await storage.schema_version() == latest_version()
        got = await storage.get_session(session.session_id)
        assert got is not None and got.data == session.data
    finally:
        await storage.close()


async def test_migration_may_wait_longer_than_the_request_timeout(postgres_url: str) -> None:
    """A migration waiting for another instance's migration lock is not bound by ``timeout``
    (which is for the request path): it applies once the lock is released."""
    prefix = fresh_prefix()
    holder = await asyncpg.connect(postgres_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", lock_key(prefix))
        waiting = asyncio.create_task(
            migrate_schema(PostgresConfig(url=postgres_url, table_prefix=prefix, timeout=1))
        )
        await asyncio.sleep(2.5)
        assert not waiting.done()
        await holder.execute("SELECT pg_advisory_unlock($1)", lock_key(prefix))
        assert await asyncio.wait_for(waiting, 60) == list(range(1, latest_version() + 1))
    finally:
        await holder.close()


async def test_secrets_are_stored_only_as_digests(postgres_url: str) -> None:
    """Token/session secret columns hold 32-byte digests; no column can hold a raw token."""
    prefix = fresh_prefix()
    storage = PostgresStorage.with_config(_config(postgres_url, prefix))
    await storage.open()
    try:
        con = await asyncpg.connect(postgres_url)
        try:
            cols = {
                (r["table_name"][len(prefix) :], r["column_name"]): r["data_type"]
                for r in await con.fetch(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns"
                    " WHERE table_name LIKE $1",
                    prefix + "%",
                )
            }
        finally:
            await con.close()
        assert cols[("tokens", "access_digest")] == "bytea"
        assert cols[("tokens", "refresh_digest")] == "bytea"
        assert cols[("sessions", "verifier_digest")] == "bytea"
        assert not any("access_token" in c or "refresh_token" in c for _, c in cols)
        with pytest.raises(InvalidInput):
            await storage.store_token(make_token(access_digest=b"raw-token-not-a-digest"))
        with pytest.raises(InvalidInput):
            await storage.store_session(make_session(verifier_digest=b"x" * 64))
    finally:
        await storage.close()


async def test_concurrent_opens_migrate_once(postgres_url: str) -> None:
    """Six instances opening together on an empty schema all succeed; each version once."""
    prefix = fresh_prefix()
    storages = [PostgresStorage.with_config(_config(postgres_url, prefix)) for _ in range(6)]
    try:
        await asyncio.gather(*(s.open() for s in storages))
        assert await _versions(postgres_url, prefix) == list(range(1, latest_version() + 1))
        await storages[0].create_user(make_user("shared"))
        assert await storages[-1].get_user("shared") is not None
    finally:
        await asyncio.gather(*(s.close() for s in storages))


async def test_concurrent_migrate_schema_calls(postgres_url: str) -> None:
    """Parallel migrate_schema calls: the versions are applied exactly once in total."""
    prefix = fresh_prefix()
    results = await asyncio.gather(
        *(migrate_schema(_config(postgres_url, prefix)) for _ in range(4))
    )
    applied = sorted(v for r in results for v in r)
    assert applied == list(range(1, latest_version() + 1))
    assert await migrate_schema(_config(postgres_url, prefix)) == []


async def test_strict_mode_refuses_missing_schema(postgres_url: str) -> None:
    """Strict mode on an empty database refuses to open, naming found and expected versions."""
    prefix = fresh_prefix()
    storage = PostgresStorage.with_config(
        _config(postgres_url, prefix, migration_mode=PostgresMigrationMode.STRICT)
    )
    with pytest.raises(ConfigurationError) as info:
        await storage.open()
    message = str(info.value)
    assert "version 0" in message and f"expects version {latest_version()}" in message
    assert "migrate-schema" in message
    assert await _tables(postgres_url, prefix) == set()


async def test_strict_mode_refuses_old_schema_then_accepts_migrated(postgres_url: str) -> None:
    """Strict mode names the version it found; after migrate_schema it opens."""
    prefix = fresh_prefix()
    assert await migrate_schema(_config(postgres_url, prefix), target=1) == [1]
    strict = _config(postgres_url, prefix, migration_mode=PostgresMigrationMode.STRICT)
    with pytest.raises(ConfigurationError) as info:
        await PostgresStorage.with_config(strict).open()
    assert "is at version 1" in str(info.value)
    assert "missing migrations [2" in str(info.value)
    assert await migrate_schema(f"{postgres_url}?table_prefix={prefix}") == list(
        range(2, latest_version() + 1)
    )
    storage = PostgresStorage.with_config(strict)
    await storage.open()
    await storage.close()


async def test_strict_mode_notices_an_edited_migration(postgres_url: str) -> None:
    """A recorded checksum that differs from the packaged file is refused in strict mode."""
    prefix = fresh_prefix()
    await migrate_schema(_config(postgres_url, prefix))
    con = await asyncpg.connect(postgres_url)
    await con.execute(f"UPDATE {prefix}schema_migrations SET checksum = 'x' WHERE version = 1")
    await con.close()
    strict = _config(postgres_url, prefix, migration_mode=PostgresMigrationMode.STRICT)
    with pytest.raises(ConfigurationError, match=r"migrations \[1\] differ"):
        await PostgresStorage.with_config(strict).open()


async def test_manual_mode_touches_nothing(postgres_url: str) -> None:
    """Manual mode opens without creating tables; calls fail with a hint until migrated."""
    prefix = fresh_prefix()
    storage = PostgresStorage.with_config(
        _config(postgres_url, prefix, migration_mode=PostgresMigrationMode.MANUAL)
    )
    await storage.open()
    try:
        assert await _tables(postgres_url, prefix) == set()
        with pytest.raises(StorageUnavailable, match="migrate-schema") as info:
            await storage.get_user("x")
        assert isinstance(info.value.__cause__, asyncpg.UndefinedTableError)
        assert await migrate_schema(_config(postgres_url, prefix)) == list(
            range(1, latest_version() + 1)
        )
        await storage.create_user(make_user("after-migrate"))
        assert await storage.get_user("after-migrate") is not None
    finally:
        await storage.close()


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "Auth_",
        "1abc_",
        "a-b",
        "auth; DROP TABLE x; --",
        'x"y',
        "a" * 33,
        "auth_ ",
        "é_",
    ],
)
def test_table_prefix_is_validated(prefix: str) -> None:
    """Prefixes that are not plain lower-case identifiers are refused before any SQL runs."""
    with pytest.raises(ConfigurationError, match="table_prefix"):
        PostgresConfig(url="postgresql://u@localhost/db", table_prefix=prefix)
    with pytest.raises(ConfigurationError, match="table_prefix"):
        PostgresStorage(f"postgresql://u@localhost/db?table_prefix={prefix}")


async def test_two_prefixes_are_isolated(postgres_url: str) -> None:
    """Two prefixes in one database keep separate data."""
    a = PostgresStorage.with_config(_config(postgres_url, fresh_prefix()))
    b = PostgresStorage.with_config(_config(postgres_url, fresh_prefix()))
    await a.open()
    await b.open()
    try:
        await a.create_user(make_user("only-in-a"))
        assert await b.get_user("only-in-a") is None
        assert (await b.get_statistics()).total_users == 0
    finally:
        await a.close()
        await b.close()
