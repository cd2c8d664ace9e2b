"""PostgreSQL backup and restore: round trips that compare every row, and refusals."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from authmw.errors import ConfigurationError
from authmw.models import AuditEvent, utcnow
from authmw.storage.postgres import PostgresConfig, PostgresMigrationMode, PostgresStorage
from tests.backends.postgres import fresh_prefix, run_async, with_database
from tests.support.factories import make_session, make_token, make_user

TABLES = ("users", "tokens", "sessions", "kv_store", "audit_log", "schema_migrations")


@pytest.fixture
def empty_db_url(postgres_admin_url: str) -> Iterator[str]:
    """A URL of a brand-new empty database, dropped after the test."""
    name = f"authmw_test_restore_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        con = await asyncpg.connect(postgres_admin_url)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    run_async(lambda: admin(f"CREATE DATABASE {name}"))
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        run_async(lambda: admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def source(postgres_url: str) -> AsyncIterator[PostgresStorage]:
    """A storage on a fresh prefix holding awkward data of every kind, expired rows included."""
    storage = PostgresStorage.with_config(
        PostgresConfig(url=postgres_url, table_prefix=fresh_prefix(), timeout=10)
    )
    await storage.open()
    for user_id in ("alice", "ünï cödé", "o'brien\"\\", "tab\there", "new\nline"):
        await storage.create_user(make_user(user_id, roles=("a,b", "{x}"), permissions=("p",)))
    await storage.store_token(make_token("alice", roles=("admin",), permissions=("r", "w")))
    await storage.store_token(make_token("alice", refresh_ttl=None))
    await storage.store_token(make_token("alice", ttl=-5, refresh_ttl=-1))  # expired, kept
    await storage.store_token(make_token("alice", revoked_at=utcnow(), revoke_reason="x\ty"))
    await storage.store_session(
        make_session(
            "alice",
            data={
                "cart": [1, 2.5, None, True],
                "s": 'quote" back\\slash \t tab \n nl ünï',
                "n": {},
            },
        )
    )
    await storage.store_session(make_session("bob", ttl=-1))
    await storage.kv_set("bin", bytes(range(256)), ttl=60)
    await storage.kv_set("esc\\key\t", b"\\N\n\t\\.", ttl=60)
    await storage.kv_incr("counter", 60)
    for i in range(5):
        await storage.append_audit(
            AuditEvent(
                action="login",
                outcome=i % 2 == 0,
                user_id="alice",
                ip_address="10.0.0.1",
                user_agent="ua\t1",
                metadata={"i": i, "s": "a\nb"},
                timestamp=utcnow() - timedelta(minutes=5 - i),
            )
        )
    yield storage
    await storage.close()


async def _dump_rows(url: str, prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    con = await asyncpg.connect(url)
    try:
        return {
            t: [tuple(r) for r in await con.fetch(f"SELECT * FROM {prefix}{t} ORDER BY 1")]
            for t in TABLES
            if t != "schema_migrations"
        } | {
            "schema_migrations": [
                tuple(r)
                for r in await con.fetch(
                    f"SELECT version, name, checksum FROM {prefix}schema_migrations ORDER BY 1"
                )
            ]
        }
    finally:
        await con.close()


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _target(url: str, prefix: str) -> PostgresStorage:
    # Manual mode: the restore itself must build the schema on the empty database.
    return PostgresStorage.with_config(
        PostgresConfig(
            url=url, table_prefix=prefix, timeout=10, migration_mode=PostgresMigrationMode.MANUAL
        )
    )


@pytest.mark.parametrize(
    ("made_with", "restore_with"),
    [
        ("pg_dump", "psql"),
        ("in-process", "in-process"),
        ("pg_dump", "in-process"),
        ("in-process", "psql"),
    ],
)
async def test_round_trip_restores_every_row(
    source: PostgresStorage,
    empty_db_url: str,
    tmp_path: Path,
    made_with: str,
    restore_with: str,
) -> None:
    """A backup, readable by its owner only, restored on an empty database reproduces every
    row of every table."""
    prefix = source.config.table_prefix
    path = tmp_path / "auth.sql"
    info = await source.create_backup(path, method=made_with)
    assert info.method == made_with
    text = path.read_text()
    assert f"-- made-with: {made_with}\n" in text and f"-- table-prefix: {prefix}\n" in text
    assert _names(tmp_path) == ["auth.sql"]  # no temp file left behind
    assert path.stat().st_mode & 0o777 == 0o600  # password hashes: the owner's eyes only

    target = _target(empty_db_url, prefix)
    restored = await target.restore_backup(path, method=restore_with)
    assert restored.schema_version == info.schema_version
    expected = await _dump_rows(source.config.url, prefix)
    assert await _dump_rows(empty_db_url, prefix) == expected
    assert len(expected["tokens"]) == 4 and len(expected["audit_log"]) == 5

    await target.open()
    try:
        assert await target.get_user("o'brien\"\\") == await source.get_user("o'brien\"\\")
        assert await target.kv_get("bin") == bytes(range(256))
        assert await target.kv_incr("counter", 60) == 2
        # The audit id sequence continues after the restored rows.
        await target.append_audit(AuditEvent(action="after", outcome=True))
        assert (await target.query_audit(limit=1))[0].action == "after"
    finally:
        await target.close()


async def test_restore_refuses_non_empty_tables_unless_replace(
    source: PostgresStorage,
    empty_db_url: str,
    tmp_path: Path,
) -> None:
    """Restoring over rows is refused; replace=True swaps them for the backup's rows."""
    prefix = source.config.table_prefix
    path = tmp_path / "b.sql"
    await source.create_backup(path)
    target = _target(empty_db_url, prefix)
    await target.restore_backup(path)
    with pytest.raises(ConfigurationError, match="not empty"):
        await target.restore_backup(path)
    await target.open()
    try:
        await target.create_user(make_user("extra"))
    finally:
        await target.close()
    for method in ("psql", "in-process"):
        await target.restore_backup(path, method=method, replace=True)
        assert await _dump_rows(empty_db_url, prefix) == await _dump_rows(source.config.url, prefix)


async def test_restore_checks_file_and_prefix(
    source: PostgresStorage,
    empty_db_url: str,
    tmp_path: Path,
) -> None:
    """A non-backup file and a backup of another prefix are refused."""
    junk = tmp_path / "junk.sql"
    junk.write_text("DROP TABLE everything;\n")
    with pytest.raises(ConfigurationError, match="not an authmw"):
        await _target(empty_db_url, source.config.table_prefix).restore_backup(junk)
    path = tmp_path / "b.sql"
    await source.create_backup(path)
    with pytest.raises(ConfigurationError, match="table prefix"):
        await _target(empty_db_url, fresh_prefix()).restore_backup(path)


async def test_in_process_restore_refuses_foreign_statements_atomically(
    source: PostgresStorage,
    empty_db_url: str,
    tmp_path: Path,
) -> None:
    """An injected statement stops the in-process restore and no row is left behind."""
    prefix = source.config.table_prefix
    path = tmp_path / "b.sql"
    await source.create_backup(path, method="in-process")
    tampered = tmp_path / "tampered.sql"
    tampered.write_text(path.read_text() + f"\nDROP TABLE {prefix}users;\n")
    target = _target(empty_db_url, prefix)
    with pytest.raises(ConfigurationError, match="not allowed"):
        await target.restore_backup(tampered, method="in-process")
    rows = await _dump_rows(empty_db_url, prefix)
    assert all(rows[t] == [] for t in TABLES if t != "schema_migrations")


async def test_backup_of_missing_schema_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    """Backing up a prefix whose tables do not exist fails clearly and writes no file."""
    storage = _target(empty_db_url, fresh_prefix())
    with pytest.raises(ConfigurationError, match="does not exist"):
        await storage.create_backup(tmp_path / "none.sql")
    assert _names(tmp_path) == []


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask (0), restored after the test."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("method", ["pg_dump", "in-process"])
@pytest.mark.usefixtures("open_umask")
async def test_backup_is_private_whatever_the_umask(
    source: PostgresStorage, tmp_path: Path, method: str
) -> None:
    """With umask 0 and a world-readable file already under the name, the backup (password
    hashes, token digests) ends up readable and writable by its owner only."""
    path = tmp_path / "auth.sql"
    path.write_text("old")
    path.chmod(0o644)
    await source.create_backup(path, method=method)
    assert path.stat().st_mode & 0o777 == 0o600
    assert _names(tmp_path) == ["auth.sql"]


async def test_auto_backup_falls_back_in_process_when_pg_dump_fails(
    source: PostgresStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pg_dump that fails makes the auto backup write in-process instead: a private file,
    complete, with no temporary file left."""
    tools = tmp_path / "bin"
    tools.mkdir()
    broken = tools / "pg_dump"
    broken.write_text("#!/bin/sh\necho 'pg_dump: error: broken on purpose' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "out"
    out.mkdir()
    path = out / "auth.sql"
    info = await source.create_backup(path, method="auto")
    assert info.method == "in-process"
    assert path.stat().st_mode & 0o777 == 0o600
    assert _names(out) == ["auth.sql"]
    assert "-- made-with: in-process\n" in path.read_text()
