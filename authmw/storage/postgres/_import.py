"""Batch import and lookup of PostgreSQL rows: the helper behind PostgresStorage's bulk methods.

:class:`Importer` is held by :class:`authmw.storage.postgres.PostgresStorage`, whose
``import_*`` and ``lookup_*`` methods delegate to it.

Semantics in :mod:`authmw.storage.base` (insert-if-absent, one boolean per record). A batch is
one transaction on one connection: its rows are ``COPY``-ed into a temporary table, then moved
with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING key``, so the rows that were free
are inserted and the database says which. ``ON CONFLICT`` without a target covers every unique
constraint (a refresh id held by another token too). Audit event ids are unique here, so
``import_audit`` refuses the ones already present itself. Lookups are one ``= ANY($1)`` query.
"""

# ruff: noqa: S608 -- SQL is built only from the validated table prefix and fixed column
# lists; every value travels as a bind parameter or through COPY.

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from ..._time import now_ts, utcnow
from ...models import AuditEvent, AuthToken, SessionData, UserRecord
from ..base import KVEntry
from ._pool import Database
from ._sql import (
    EVENT_COLS,
    SESSION_COLS,
    TOKEN_COLS,
    USER_COLS,
    event_args,
    row_to_event,
    row_to_session,
    row_to_token,
    row_to_user,
    session_args,
    token_args,
    user_args,
)

__all__ = ["Importer"]

_KV_COLS = "key, value, expires_at"


def _columns(cols: str) -> list[str]:
    return [c.strip() for c in cols.split(",")]


class Importer:
    """``BulkImport``, ``BulkLookup`` and audit lookups on the tables of ``db``'s prefix.

    ``default_ttl`` (seconds) is the expiry of key-value entries imported without one.
    """

    def __init__(self, db: Database, default_ttl: float) -> None:
        self._db = db
        self._prefix = db.config.table_prefix
        self._audit = db.config.enable_audit_log
        self._default_ttl = default_ttl

    def _table(self, suffix: str) -> str:
        return f"{self._prefix}{suffix}"

    async def _import_rows(
        self, op: str, suffix: str, cols: str, key: str, rows: list[tuple[Any, ...]]
    ) -> set[Any]:
        """Insert the rows whose keys (and other unique columns) are free; the keys inserted."""
        if not rows:
            return set()
        table, temp = self._table(suffix), f"authmw_import_{secrets.token_hex(4)}"

        async def work(con: Any) -> set[Any]:
            async with con.transaction():
                await con.execute(
                    f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS "
                    f"SELECT {cols} FROM {table} WITH NO DATA"
                )
                await con.copy_records_to_table(temp, records=rows, columns=_columns(cols))
                done = await con.fetch(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM "
                    f"{temp} ON CONFLICT DO NOTHING RETURNING {key}"
                )
            return {row[0] for row in done}

        return await self._db.with_connection(op, work)

    async def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """Insert the users whose ids are free."""
        done = await self._import_rows(
            "import_users", "users", USER_COLS, "user_id", [user_args(u) for u in batch]
        )
        return [u.user_id in done for u in batch]

    async def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """Insert the live tokens whose ids and refresh ids are free."""
        now = now_ts()
        live = [t for t in batch if t.storage_expires_ts > now]
        done = await self._import_rows(
            "import_tokens", "tokens", TOKEN_COLS, "token_id", [token_args(t) for t in live]
        )
        return [t.token_id in done and t.storage_expires_ts > now for t in batch]

    async def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """Insert the live sessions whose ids are free."""
        now = now_ts()
        live = [s for s in batch if s.expires_ts > now]
        rows = [
            session_args(s, json.dumps(s.data, separators=(",", ":"), allow_nan=False))
            for s in live
        ]
        done = await self._import_rows(
            "import_sessions", "sessions", SESSION_COLS, "session_id", rows
        )
        return [s.session_id in done and s.expires_ts > now for s in batch]

    async def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """Insert the live entries whose keys are free."""
        now = utcnow()
        fallback = now + timedelta(seconds=self._default_ttl)
        rows = []
        for entry in batch:
            expires = fallback if default_ttl or entry.expires_at is None else entry.expires_at
            if expires > now:
                rows.append((entry.key, bytes(entry.value), expires))
        done = await self._import_rows("import_kv", "kv_store", _KV_COLS, "key", rows)
        live = {row[0] for row in rows}
        return [e.key in done and e.key in live for e in batch]

    async def import_audit(self, batch: Sequence[AuditEvent]) -> list[bool]:
        """Append the events whose ids the log does not hold yet (all dropped, as
        ``append_audit`` drops them, when ``enable_audit_log`` is off)."""
        if not self._audit:
            return [True] * len(batch)
        done = await self._import_rows(
            "import_audit", "audit_log", EVENT_COLS, "event_id", [event_args(e) for e in batch]
        )
        return [e.event_id in done for e in batch]

    async def _by_keys(
        self, op: str, cols: str, suffix: str, key: str, keys: Sequence[str], live: str = ""
    ) -> dict[str, Any]:
        sql = f"SELECT {cols} FROM {self._table(suffix)} WHERE {key} = ANY($1::text[])"
        args: list[Any] = [list(keys)]
        if live:
            sql += f" AND {live} > $2"
            args.append(utcnow())
        rows = await self._db.query(op, "fetch", sql, *args, read=True)
        return {row[key]: row for row in rows}

    async def lookup_users(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        """The users with these ids."""
        rows = await self._by_keys("lookup_users", USER_COLS, "users", "user_id", user_ids)
        return [row_to_user(rows[k]) if k in rows else None for k in user_ids]

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """The live token records with these ids."""
        rows = await self._by_keys(
            "lookup_tokens", TOKEN_COLS, "tokens", "token_id", token_ids, "storage_expires_at"
        )
        return [row_to_token(rows[k]) if k in rows else None for k in token_ids]

    async def lookup_sessions(self, session_ids: Sequence[str]) -> list[SessionData | None]:
        """The live sessions with these ids."""
        rows = await self._by_keys(
            "lookup_sessions", SESSION_COLS, "sessions", "session_id", session_ids, "expires_at"
        )
        return [row_to_session(rows[k]) if k in rows else None for k in session_ids]

    async def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """The live entries with these keys."""
        rows = await self._by_keys("lookup_kv", _KV_COLS, "kv_store", "key", keys, "expires_at")
        return [
            KVEntry(k, rows[k]["value"], rows[k]["expires_at"]) if k in rows else None for k in keys
        ]

    async def lookup_audit(self, event_ids: Sequence[str]) -> list[AuditEvent | None]:
        """The audit events with these ids."""
        rows = await self._by_keys("lookup_audit", EVENT_COLS, "audit_log", "event_id", event_ids)
        return [row_to_event(rows[k]) if k in rows else None for k in event_ids]
