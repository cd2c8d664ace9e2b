"""PostgresStorage: every record in PostgreSQL tables, through an asyncpg pool.

Reads filter on each row's expiry against the application's clock, so an expired row is never
returned, whatever the clean-up timer has done (see the TTL rule in
:mod:`authmw.storage.base`). Races are settled by the database: user creation is one
``INSERT ... ON CONFLICT DO NOTHING``, token rotation a transaction whose conditional
``UPDATE`` takes the row lock, counters one ``INSERT ... ON CONFLICT DO UPDATE``.

The storage is composed of helpers it holds: the :class:`~._pool.Database` (pool, lifecycle,
error boundary; reads are retried once when a pooled connection turns out to be dead, writes
never are), the :class:`~._sql.Statements` built from the table prefix, the
:class:`~._import.Importer` (bulk import and lookup) and the :class:`~._notify.PostgresChannel`
(``LISTEN``/``NOTIFY``). Driver errors become :class:`~authmw.errors.StorageUnavailable` in one
place (:mod:`authmw.storage.postgres._driver`). The schema is versioned
(:mod:`authmw.storage.postgres._schema`); backups are described in
:mod:`authmw.storage.postgres._backup`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

# The driver, imported first thing: without it this module fails to import and
# storage_from_url names the extra to install. (The queries themselves live in _pool and _sql.)
import asyncpg  # noqa: F401

from ..._time import seconds, utcnow
from ...errors import ConfigurationError, UserExists
from ...models import AuditEvent, AuthToken, SessionData, StorageStatistics, UserRecord
from .._urls import redact_url
from ..base import KVEntry, NativeBackupInfo
from . import _backup as backup
from . import _schema as schema
from ._config import (
    PostgresConfig,
    PostgresMigrationMode,
    PostgresOptimization,
    PostgresSSLConfig,
)
from ._import import Importer
from ._notify import PostgresChannel
from ._pool import Database, affected, config_of
from ._sql import (
    Statements,
    event_args,
    row_to_event,
    row_to_owner,
    row_to_session,
    row_to_token,
    row_to_user,
    session_args,
    token_args,
    user_args,
)

__all__ = [
    "PostgresBackupInfo",
    "PostgresConfig",
    "PostgresMigrationMode",
    "PostgresOptimization",
    "PostgresSSLConfig",
    "PostgresStorage",
    "migrate_schema",
]

PostgresBackupInfo = NativeBackupInfo
"""What a native backup file holds (the name this package has always exported)."""


class PostgresStorage:
    """Storage in PostgreSQL: durable, shared by every app instance, ACID.

    ``PostgresStorage(url)`` reads options from the URL's query (see :class:`PostgresConfig`);
    ``PostgresStorage.with_config(config)`` takes a config. Call :meth:`open` (or use any
    method, which opens once) and :meth:`close`. ``open`` raises ``ConfigurationError`` for a
    wrong password, a missing database, an untrusted server certificate or (strict mode) a
    schema at the wrong version, and ``StorageUnavailable`` when the server cannot be reached.

    Besides :class:`~authmw.storage.base.AuthStorage` it offers the optional capabilities
    ``BulkImport``, ``BulkLookup``, ``SupportsInvalidation``, ``SupportsOwnerReads``,
    ``SupportsSchema`` and ``SupportsNativeBackup`` of :mod:`authmw.storage.base`.
    """

    def __init__(self, url_or_config: str | PostgresConfig) -> None:
        self.config = config_of(url_or_config)
        self._default_ttl = seconds(self.config.default_ttl, "default_ttl")
        self._batch_size = self.config.optimization.batch_size
        self._db = Database(self.config, cleanup=self.cleanup_expired)
        self._sql = Statements(self.config.table_prefix)
        self._importer = Importer(self._db, self._default_ttl)
        self._channel = PostgresChannel(self._db)

    @classmethod
    def from_url(cls, url: str) -> PostgresStorage:
        """A storage from a ``postgresql://`` or ``postgres://`` URL (``storage_from_url``)."""
        return cls(PostgresConfig.from_url(url))

    @classmethod
    def with_config(cls, config: PostgresConfig) -> PostgresStorage:
        """A storage with these settings."""
        return cls(config)

    def with_optimization(self, optimization: PostgresOptimization) -> PostgresStorage:
        """A new, unopened storage with these performance settings (the guide's builder).
        Raises ``ConfigurationError`` on an opened storage, whose pool is already built."""
        if self._db.is_open:
            raise ConfigurationError("with_optimization: call it before open()")
        return PostgresStorage(replace(self.config, optimization=optimization))

    @property
    def name(self) -> str:
        """``"postgres"``."""
        return "postgres"

    @property
    def call_timeout(self) -> float | None:
        """The longest one call takes: ``timeout`` (the wait for a pooled connection included)."""
        return self._db.timeout

    @property
    def pool(self) -> Any:
        """The asyncpg pool while open (for diagnostics and benchmarks), else None."""
        return self._db.pool

    def __repr__(self) -> str:
        state = "open" if self._db.is_open else "closed"
        return (
            f"PostgresStorage(url={redact_url(self.config.url)!r}, "
            f"table_prefix={self.config.table_prefix!r}, {state})"
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Prepare the schema (per ``migration_mode``), build the pool and start the
        background clean-up. Idempotent."""
        await self._db.open()

    async def close(self) -> None:
        """Stop the clean-up task and close the pool (terminating it past ``timeout``)."""
        await self._db.close()

    async def ping(self) -> float:
        """Round-trip ``SELECT 1``; return the latency in seconds."""
        start = time.perf_counter()
        await self._db.query("ping", "fetchval", "SELECT 1", read=True)
        return time.perf_counter() - start

    def invalidation_channel(self) -> PostgresChannel:
        """The ``LISTEN``/``NOTIFY`` channel of this database and table prefix, on which
        caches in front of this storage tell each other what changed (no I/O until used)."""
        return self._channel

    # -- schema (SupportsSchema) -----------------------------------------------------------

    @property
    def latest_schema_version(self) -> int:
        """The schema version this authmw expects (the number of packaged migrations)."""
        return schema.latest_version()

    async def schema_version(self) -> int:
        """The schema version in the database (0: none). Opens the storage if needed."""
        return (await self._db.schema_state()).version

    async def migrate_schema(self, target: int | None = None) -> list[int]:
        """Apply the missing migrations up to ``target`` (default: all) on a connection of
        their own, whether or not the storage is open; return the versions applied now."""
        return await self._db.migrate_schema(target)

    def inspecting(self) -> PostgresStorage:
        """A new, unopened storage on the same database and prefix whose ``open()`` never
        migrates (``migration_mode=manual``), for health checks."""
        return PostgresStorage(replace(self.config, migration_mode=PostgresMigrationMode.MANUAL))

    # -- users -----------------------------------------------------------------------------

    async def create_user(self, user: UserRecord) -> None:
        """Insert a user; ``UserExists`` if the id is taken, even by a concurrent insert."""
        status = await self._db.query(
            "create_user", "execute", self._sql.create_user, *user_args(user)
        )
        if affected(status) == 0:
            raise UserExists(user.user_id)

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The user, or None."""
        row = await self._db.query("get_user", "fetchrow", self._sql.get_user, user_id, read=True)
        return None if row is None else row_to_user(row)

    async def update_user(self, user: UserRecord) -> bool:
        """Replace an existing user."""
        status = await self._db.query(
            "update_user", "execute", self._sql.update_user, *user_args(user)
        )
        return affected(status) == 1

    async def delete_user(self, user_id: str) -> bool:
        """Delete a user record."""
        status = await self._db.query("delete_user", "execute", self._sql.delete_user, user_id)
        return affected(status) == 1

    async def list_users(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        role: str | None = None,
        active: bool | None = None,
    ) -> list[UserRecord]:
        """A page of users, ``ORDER BY user_id COLLATE "C"`` (see ``AuthStorage.list_users``)."""
        rows = await self._db.query(
            "list_users",
            "fetch",
            self._sql.list_users,
            after,
            role,
            active,
            max(0, limit),
            read=True,
        )
        return [row_to_user(row) for row in rows]

    # -- tokens ----------------------------------------------------------------------------

    async def store_token(self, token: AuthToken) -> None:
        """Insert or replace a token record (only digests are stored)."""
        await self._db.query("store_token", "execute", self._sql.store_token, *token_args(token))

    async def get_token(self, token_id: str) -> AuthToken | None:
        """The live token record, or None."""
        row = await self._db.query(
            "get_token", "fetchrow", self._sql.get_token, token_id, utcnow(), read=True
        )
        return None if row is None else row_to_token(row)

    async def get_token_and_user(self, token_id: str) -> tuple[AuthToken | None, UserRecord | None]:
        """The live token and its owner, in one statement (a join)."""
        row = await self._db.query(
            "get_token", "fetchrow", self._sql.get_token_and_user, token_id, utcnow(), read=True
        )
        return (None, None) if row is None else (row_to_token(row), row_to_owner(row))

    async def get_token_by_refresh(self, refresh_id: str) -> AuthToken | None:
        """The live token record holding this refresh selector, or None."""
        row = await self._db.query(
            "get_token_by_refresh",
            "fetchrow",
            self._sql.get_token_by_refresh,
            refresh_id,
            utcnow(),
            read=True,
        )
        return None if row is None else row_to_token(row)

    async def update_token(self, token: AuthToken) -> bool:
        """Replace an existing, live token record."""
        status = await self._db.query(
            "update_token", "execute", self._sql.update_token, *token_args(token), utcnow()
        )
        return affected(status) == 1

    async def rotate_token(self, retired: AuthToken, new: AuthToken) -> bool:
        """Retire ``retired`` and store ``new`` in one transaction, unless already retired."""
        now = utcnow()

        async def rotate(con: Any) -> bool:
            async with con.transaction():
                # Serialise with revoke_token_family: each sees all or nothing of the other.
                await con.execute(self._sql.lock_family, self._family_key(retired.family_id))
                status = await con.execute(self._sql.retire_token, *token_args(retired), now)
                if affected(status) != 1:
                    return False
                await con.execute(self._sql.store_token, *token_args(new))
                return True

        return await self._db.with_connection("rotate_token", rotate)

    def _family_key(self, family_id: str) -> int:
        """The advisory lock id (signed 64-bit) of one refresh family of this prefix."""
        digest = hashlib.sha256(f"authmw-family:{self.config.table_prefix}:{family_id}".encode())
        return int.from_bytes(digest.digest()[:8], "big", signed=True)

    async def revoke_token_family(self, user_id: str, family_id: str, until: datetime) -> int:
        """In one transaction under the family's advisory lock (which rotations take too):
        record the family in ``revoked_families``, then revoke its live tokens."""
        now = utcnow()

        async def revoke(con: Any) -> int:
            async with con.transaction():
                await con.execute(self._sql.lock_family, self._family_key(family_id))
                await con.execute(self._sql.mark_family, family_id, user_id, max(until, now))
                status = await con.execute(self._sql.revoke_family, family_id, user_id, now)
                return affected(status)

        count: int = await self._db.with_connection("revoke_token_family", revoke)
        return count

    async def delete_token(self, token_id: str) -> bool:
        """Delete a token record; True if a live one was deleted."""
        live = await self._db.query(
            "delete_token", "fetchval", self._sql.delete_token, token_id, utcnow()
        )
        return live is True

    async def list_user_tokens(self, user_id: str) -> list[AuthToken]:
        """The user's live token records, revoked ones included."""
        rows = await self._db.query(
            "list_user_tokens", "fetch", self._sql.list_user_tokens, user_id, utcnow(), read=True
        )
        return [row_to_token(row) for row in rows]

    async def delete_user_tokens(self, user_id: str) -> int:
        """Delete all of the user's token records; return how many live ones there were."""
        count: int = await self._db.query(
            "delete_user_tokens", "fetchval", self._sql.delete_user_tokens, user_id, utcnow()
        )
        return count

    # -- sessions --------------------------------------------------------------------------

    async def store_session(self, session: SessionData) -> None:
        """Insert or replace a session. ``TypeError`` (``ValueError`` for NaN/infinity) if its
        data is not JSON, and nothing is stored."""
        data_json = json.dumps(session.data, separators=(",", ":"), allow_nan=False)
        await self._db.query(
            "store_session", "execute", self._sql.store_session, *session_args(session, data_json)
        )

    async def get_session(self, session_id: str) -> SessionData | None:
        """The live session with a fresh copy of its data, or None."""
        row = await self._db.query(
            "get_session", "fetchrow", self._sql.get_session, session_id, utcnow(), read=True
        )
        return None if row is None else row_to_session(row)

    async def get_session_and_user(
        self, session_id: str
    ) -> tuple[SessionData | None, UserRecord | None]:
        """The live session and its owner (None when anonymous), in one statement."""
        row = await self._db.query(
            "get_session",
            "fetchrow",
            self._sql.get_session_and_user,
            session_id,
            utcnow(),
            read=True,
        )
        return (None, None) if row is None else (row_to_session(row), row_to_owner(row))

    async def touch_session(
        self, session_id: str, last_accessed: datetime, expires_at: datetime
    ) -> bool:
        """Move a live session's access time and expiry."""
        status = await self._db.query(
            "touch_session",
            "execute",
            self._sql.touch_session,
            session_id,
            last_accessed,
            expires_at,
            utcnow(),
        )
        return affected(status) == 1

    async def update_session(self, session: SessionData) -> bool:
        """Write data, access time and expiry of a live session (one ``UPDATE ... WHERE``, no
        upsert); False, nothing written, when it is gone or expired."""
        data_json = json.dumps(session.data, separators=(",", ":"), allow_nan=False)
        status = await self._db.query(
            "update_session",
            "execute",
            self._sql.update_session,
            session.session_id,
            data_json,
            session.last_accessed,
            session.expires_at,
            utcnow(),
        )
        return affected(status) == 1

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session; True if a live one was deleted."""
        live = await self._db.query(
            "delete_session", "fetchval", self._sql.delete_session, session_id, utcnow()
        )
        return live is True

    async def list_user_sessions(self, user_id: str) -> list[SessionData]:
        """The user's live sessions."""
        rows = await self._db.query(
            "list_user_sessions",
            "fetch",
            self._sql.list_user_sessions,
            user_id,
            utcnow(),
            read=True,
        )
        return [row_to_session(row) for row in rows]

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete all of the user's sessions; return how many live ones there were."""
        count: int = await self._db.query(
            "delete_user_sessions", "fetchval", self._sql.delete_user_sessions, user_id, utcnow()
        )
        return count

    async def count_active_sessions(self) -> int:
        """How many sessions are live."""
        count: int = await self._db.query(
            "count_active_sessions", "fetchval", self._sql.count_sessions, utcnow(), read=True
        )
        return count

    # -- key-value -------------------------------------------------------------------------

    async def kv_get(self, key: str) -> bytes | None:
        """The live value, or None."""
        value: bytes | None = await self._db.query(
            "kv_get", "fetchval", self._sql.kv_get, key, utcnow(), read=True
        )
        return value

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store bytes for ``ttl`` seconds (default: ``default_ttl``)."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"kv values are bytes, got {type(value).__name__}")
        life = self._default_ttl if ttl is None else seconds(ttl, "ttl")
        await self._db.query(
            "kv_set",
            "execute",
            self._sql.kv_set,
            key,
            bytes(value),
            utcnow() + timedelta(seconds=life),
        )

    async def kv_delete(self, key: str) -> bool:
        """Delete a key; True if a live one was deleted."""
        live = await self._db.query("kv_delete", "fetchval", self._sql.kv_delete, key, utcnow())
        return live is True

    async def kv_incr(self, key: str, ttl: float) -> int:
        """Atomically increment a counter (fixed window of ``ttl`` seconds)."""
        life = seconds(ttl, "ttl")
        now = utcnow()
        count: int = await self._db.query(
            "kv_incr", "fetchval", self._sql.kv_incr, key, now, now + timedelta(seconds=life)
        )
        return count

    # -- audit log -------------------------------------------------------------------------

    async def append_audit(self, event: AuditEvent) -> None:
        """Append an event (dropped when ``enable_audit_log`` is False)."""
        if not self.config.enable_audit_log:
            return
        await self._db.query("append_audit", "execute", self._sql.append_audit, *event_args(event))

    async def query_audit(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Matching events, newest first (empty when ``enable_audit_log`` is False)."""
        if not self.config.enable_audit_log:
            return []
        sql, args = self._sql.query_audit(
            user_id=user_id, action=action, since=since, until=until, limit=limit
        )
        rows = await self._db.query("query_audit", "fetch", sql, *args, read=True)
        return [row_to_event(row) for row in rows]

    # -- maintenance -----------------------------------------------------------------------

    async def _delete_expired(self, operation: str, sql: str) -> int:
        # Bounded batches keep each DELETE's locks short on a large backlog.
        now, total = utcnow(), 0
        while True:
            status = await self._db.query(operation, "execute", sql, now, self._batch_size)
            removed = affected(status)
            total += removed
            if removed < self._batch_size:
                return total

    async def cleanup_expired_tokens(self) -> int:
        """Delete expired token records now; return how many."""
        return await self._delete_expired("cleanup_expired_tokens", self._sql.cleanup_tokens)

    async def cleanup_expired_sessions(self) -> int:
        """Delete expired sessions now; return how many."""
        return await self._delete_expired("cleanup_expired_sessions", self._sql.cleanup_sessions)

    async def cleanup_expired_families(self) -> int:
        """Delete expired revoked-family marks now; return how many."""
        return await self._delete_expired("cleanup_expired_families", self._sql.cleanup_families)

    async def cleanup_expired_kv(self) -> int:
        """Delete expired key-value entries now; return how many."""
        return await self._delete_expired("cleanup_expired_kv", self._sql.cleanup_kv)

    async def cleanup_expired(self) -> dict[str, int]:
        """Reclaim expired rows; also trim the audit log to ``max_audit_events`` if set.
        Returns counts for ``tokens``, ``sessions``, ``kv`` and ``audit``."""
        removed = {
            "tokens": await self.cleanup_expired_tokens(),
            "sessions": await self.cleanup_expired_sessions(),
            "kv": await self.cleanup_expired_kv(),
            "audit": 0,
        }
        await self.cleanup_expired_families()
        if self.config.max_audit_events is not None:
            status = await self._db.query(
                "cleanup_expired", "execute", self._sql.trim_audit, self.config.max_audit_events
            )
            removed["audit"] = affected(status)
        return removed

    async def get_statistics(self) -> StorageStatistics:
        """Counts of live rows, the database size and this prefix's table sizes."""
        row = await self._db.query(
            "get_statistics", "fetchrow", self._sql.statistics, utcnow(), read=True
        )
        pool = self._db.pool
        return StorageStatistics(
            backend=self.name,
            total_users=row["users"],
            total_tokens=row["tokens"],
            active_sessions=row["sessions"],
            kv_entries=row["kv"],
            audit_events=row["audit"],
            anonymous_sessions=row["anonymous_sessions"],
            database_size_mb=round(row["database_bytes"] / 1048576, 3),
            extra={
                "tables_size_mb": round(row["table_bytes"] / 1048576, 3),
                "table_prefix": self.config.table_prefix,
                "pool_size": pool.get_size() if pool is not None else 0,
                "pool_idle": pool.get_idle_size() if pool is not None else 0,
                "pool_max": self.config.effective_pool_size,
            },
        )

    # -- bulk iteration --------------------------------------------------------------------

    async def iter_users(self, batch_size: int = 1000) -> AsyncIterator[list[UserRecord]]:
        """Every user, in batches."""
        async for rows in self._db.pages("iter_users", self._sql.iter_users, "user_id", batch_size):
            yield [row_to_user(row) for row in rows]

    async def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list[AuthToken]]:
        """Every live token record, in batches."""
        async for rows in self._db.pages(
            "iter_tokens", self._sql.iter_tokens, "token_id", batch_size, utcnow()
        ):
            yield [row_to_token(row) for row in rows]

    async def iter_sessions(self, batch_size: int = 1000) -> AsyncIterator[list[SessionData]]:
        """Every live session, in batches."""
        async for rows in self._db.pages(
            "iter_sessions", self._sql.iter_sessions, "session_id", batch_size, utcnow()
        ):
            yield [row_to_session(row) for row in rows]

    async def iter_kv(self, batch_size: int = 1000) -> AsyncIterator[list[KVEntry]]:
        """Every live key-value entry, in batches."""
        async for rows in self._db.pages("iter_kv", self._sql.iter_kv, "key", batch_size, utcnow()):
            yield [KVEntry(row["key"], row["value"], row["expires_at"]) for row in rows]

    async def iter_audit(self, batch_size: int = 1000) -> AsyncIterator[list[AuditEvent]]:
        """Every audit event, oldest first, in batches."""
        async for rows in self._db.pages(
            "iter_audit", self._sql.iter_audit, "created_at,id", batch_size
        ):
            yield [row_to_event(row) for row in rows]

    # -- bulk import and lookup (BulkImport, BulkLookup): the importer does the work ----------

    @property
    def audit_ids_unique(self) -> bool:
        """True: ``event_id`` is unique, so ``import_audit`` skips known events itself."""
        return True

    async def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """Insert the users whose ids are free."""
        return await self._importer.import_users(batch)

    async def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """Insert the live tokens whose ids and refresh ids are free."""
        return await self._importer.import_tokens(batch)

    async def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """Insert the live sessions whose ids are free."""
        return await self._importer.import_sessions(batch)

    async def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """Insert the live entries whose keys are free."""
        return await self._importer.import_kv(batch, default_ttl)

    async def import_audit(self, batch: Sequence[AuditEvent]) -> list[bool]:
        """Append the events whose ids the log does not hold yet (all dropped, as
        ``append_audit`` drops them, when ``enable_audit_log`` is off)."""
        return await self._importer.import_audit(batch)

    async def lookup_users(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        """The users with these ids."""
        return await self._importer.lookup_users(user_ids)

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """The live token records with these ids."""
        return await self._importer.lookup_tokens(token_ids)

    async def lookup_sessions(self, session_ids: Sequence[str]) -> list[SessionData | None]:
        """The live sessions with these ids."""
        return await self._importer.lookup_sessions(session_ids)

    async def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """The live entries with these keys."""
        return await self._importer.lookup_kv(keys)

    async def lookup_audit(self, event_ids: Sequence[str]) -> list[AuditEvent | None]:
        """The audit events with these ids."""
        return await self._importer.lookup_audit(event_ids)

    # -- backup ----------------------------------------------------------------------------

    async def create_backup(
        self, path: str | os.PathLike[str], *, method: str = "auto"
    ) -> NativeBackupInfo:
        """Write every row of this prefix's tables to ``path`` (with ``pg_dump`` when
        installed, else in-process; ``method`` forces one: ``"pg_dump"``/``"in-process"``).
        The file's header says which made it, and only its owner may read it. Works whether
        or not the storage is open."""
        return await backup.create_backup(self.config, path, method=method)

    async def restore_backup(
        self, path: str | os.PathLike[str], *, method: str = "auto", replace: bool = False
    ) -> NativeBackupInfo:
        """Rebuild this prefix's tables from a backup file: the schema up to the backup's
        version, then every row in one transaction. The tables must be empty unless
        ``replace`` is True. ``method``: ``"auto"`` (psql when installed), ``"psql"`` or
        ``"in-process"``."""
        return await backup.restore_backup(self.config, path, method=method, replace=replace)


async def migrate_schema(
    url_or_config: str | PostgresConfig, *, target: int | None = None
) -> list[int]:
    """Apply the missing schema migrations (up to ``target``, default all) to the database
    and table prefix of ``url_or_config``; return the versions applied now (empty: already
    current). Safe while apps are running (``PostgresStorage.migrate_schema`` without a
    storage to hold)."""
    return await PostgresStorage(url_or_config).migrate_schema(target)
