"""SQL text and row conversion for the PostgreSQL backend.

Every statement is built once per storage from the validated table prefix (see
``PostgresConfig.table_prefix``); all values travel as bind parameters. Reads compare expiries
with a ``now`` passed from Python, the same clock the memory backend and the records' own
expiries use, rather than the server's ``now()``, which is the transaction's start time and on
another host may drift from the application's clock.
"""

# ruff: noqa: S608 -- SQL is built only from the validated table prefix (an identifier
# regex in PostgresConfig) and fixed names; every value is a bind parameter.

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...models import AuditEvent, AuthToken, SessionData, UserRecord

__all__ = [
    "EVENT_COLS",
    "SESSION_COLS",
    "TABLE_SUFFIXES",
    "TOKEN_COLS",
    "USER_COLS",
    "Statements",
    "event_args",
    "row_to_event",
    "row_to_owner",
    "row_to_session",
    "row_to_token",
    "row_to_user",
    "session_args",
    "token_args",
    "user_args",
]

# Table names after the prefix, in an order safe for restore (no foreign keys between them).
TABLE_SUFFIXES = ("users", "tokens", "sessions", "kv_store", "audit_log")

USER_COLS = "user_id, password_hash, roles, permissions, is_active, created_at, updated_at"
TOKEN_COLS = (
    "token_id, user_id, access_digest, family_id, refresh_id, refresh_digest, token_type, "
    "expires_at, refresh_expires_at, storage_expires_at, created_at, revoked_at, revoke_reason, "
    "roles, permissions, login_at, ip_address, user_agent"
)
_TOKEN_SET = ", ".join(f"{col} = ${i}" for i, col in enumerate(TOKEN_COLS.split(", ")[1:], start=2))
SESSION_COLS = (
    "session_id, user_id, verifier_digest, data, roles, permissions, created_at, "
    "last_accessed, expires_at, absolute_expires_at, ip_address, user_agent"
)
EVENT_COLS = (
    "event_id, user_id, action, resource, outcome, ip_address, user_agent, created_at, metadata"
)


# A credential's owner read beside it (SupportsOwnerReads): the user's columns, renamed.
OWNER = "owner_"
_OWNER_COLS = ", ".join(f"u.{col} AS {OWNER}{col}" for col in USER_COLS.split(", "))


def _qualified(cols: str, alias: str) -> str:
    return ", ".join(f"{alias}.{col}" for col in cols.split(", "))


def _placeholders(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


def _pages(select: str, key: str, live: str) -> tuple[str, str]:
    # Parameters: with a "live" filter, $1 is now, $2 the batch size, $3 the last key seen;
    # without one, $1 is the batch size and $2 the last key seen.
    if live:
        return (
            f"{select} WHERE {live} ORDER BY {key} LIMIT $2",
            f"{select} WHERE {live} AND {key} > $3 ORDER BY {key} LIMIT $2",
        )
    return (
        f"{select} ORDER BY {key} LIMIT $1",
        f"{select} WHERE {key} > $2 ORDER BY {key} LIMIT $1",
    )


class Statements:
    """Every statement of the backend for one table prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        users, tokens, sessions = f"{prefix}users", f"{prefix}tokens", f"{prefix}sessions"
        kv, audit = f"{prefix}kv_store", f"{prefix}audit_log"
        families = f"{prefix}revoked_families"
        self.tables = tuple(f"{prefix}{suffix}" for suffix in TABLE_SUFFIXES)
        self.audit_table = audit

        # users
        self.create_user = (
            f"INSERT INTO {users} ({USER_COLS}) VALUES ({_placeholders(7)}) "
            "ON CONFLICT (user_id) DO NOTHING"
        )
        self.get_user = f"SELECT {USER_COLS} FROM {users} WHERE user_id = $1"
        self.update_user = (
            f"UPDATE {users} SET password_hash = $2, roles = $3, permissions = $4, "
            "is_active = $5, created_at = $6, updated_at = $7 WHERE user_id = $1"
        )
        self.delete_user = f"DELETE FROM {users} WHERE user_id = $1"
        # Byte order of UTF-8 ("C") is code-point order: the order Python gives str.
        self.list_users = (
            f"SELECT {USER_COLS} FROM {users} "
            'WHERE ($1::text IS NULL OR user_id > $1 COLLATE "C") '
            "AND ($2::text IS NULL OR $2 = ANY(roles)) "
            "AND ($3::boolean IS NULL OR is_active = $3) "
            'ORDER BY user_id COLLATE "C" LIMIT $4'
        )

        # tokens; $19 is "now" wherever it appears (after the 18 columns of TOKEN_COLS)
        self.store_token = (
            f"INSERT INTO {tokens} ({TOKEN_COLS}, updated_at) VALUES ({_placeholders(18)}, "
            f"now()) ON CONFLICT (token_id) DO UPDATE SET {_TOKEN_SET}, updated_at = now()"
        )
        self.get_token = (
            f"SELECT {TOKEN_COLS} FROM {tokens} WHERE token_id = $1 AND storage_expires_at > $2"
        )
        self.get_token_and_user = (
            f"SELECT {_qualified(TOKEN_COLS, 't')}, {_OWNER_COLS} FROM {tokens} t "
            f"LEFT JOIN {users} u ON u.user_id = t.user_id "
            "WHERE t.token_id = $1 AND t.storage_expires_at > $2"
        )
        self.get_token_by_refresh = (
            f"SELECT {TOKEN_COLS} FROM {tokens} WHERE refresh_id = $1 AND storage_expires_at > $2"
        )
        self.update_token = (
            f"UPDATE {tokens} SET {_TOKEN_SET}, updated_at = now() "
            "WHERE token_id = $1 AND storage_expires_at > $19"
        )
        # The row lock taken by this UPDATE serialises concurrent rotations of one token; a
        # loser re-reads the row after the winner commits, finds revoked_at set, updates nothing.
        # A family marked revoked is refused here too ($4 is the family id); the caller holds
        # the family's advisory lock, so the mark cannot appear between this check and commit.
        self.retire_token = (
            self.update_token + " AND revoked_at IS NULL AND NOT EXISTS (SELECT 1 FROM "
            f"{families} WHERE family_id = $4 AND expires_at > $19)"
        )
        # Transaction-level advisory lock of one family ($1: its 64-bit key), taken by every
        # rotation and family revocation before they read or write.
        self.lock_family = "SELECT pg_advisory_xact_lock($1)"
        self.mark_family = (
            f"INSERT INTO {families} (family_id, user_id, revoked_at, expires_at) "
            "VALUES ($1, $2, now(), $3) ON CONFLICT (family_id) DO UPDATE SET "
            f"expires_at = GREATEST({families}.expires_at, EXCLUDED.expires_at)"
        )
        self.revoke_family = (
            f"UPDATE {tokens} SET revoked_at = $3, revoke_reason = 'family_revoked', "
            "updated_at = now() WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL "
            "AND storage_expires_at > $3"
        )
        self.delete_token = (
            f"DELETE FROM {tokens} WHERE token_id = $1 RETURNING storage_expires_at > $2"
        )
        self.list_user_tokens = (
            f"SELECT {TOKEN_COLS} FROM {tokens} WHERE user_id = $1 AND storage_expires_at > $2"
        )
        self.delete_user_tokens = (
            f"WITH gone AS (DELETE FROM {tokens} WHERE user_id = $1 "
            "RETURNING storage_expires_at) "
            "SELECT count(*) FILTER (WHERE storage_expires_at > $2) FROM gone"
        )

        # sessions
        self.store_session = (
            f"INSERT INTO {sessions} ({SESSION_COLS}) VALUES ({_placeholders(12)}) "
            "ON CONFLICT (session_id) DO UPDATE SET user_id = $2, verifier_digest = $3, "
            "data = $4, roles = $5, permissions = $6, created_at = $7, last_accessed = $8, "
            "expires_at = $9, absolute_expires_at = $10, ip_address = $11, user_agent = $12"
        )
        self.get_session = (
            f"SELECT {SESSION_COLS} FROM {sessions} WHERE session_id = $1 AND expires_at > $2"
        )
        self.get_session_and_user = (
            f"SELECT {_qualified(SESSION_COLS, 's')}, {_OWNER_COLS} FROM {sessions} s "
            f"LEFT JOIN {users} u ON u.user_id = s.user_id "
            "WHERE s.session_id = $1 AND s.expires_at > $2"
        )
        self.touch_session = (
            f"UPDATE {sessions} SET last_accessed = $2, expires_at = $3 "
            "WHERE session_id = $1 AND expires_at > $4"
        )
        # A conditional write, never an upsert: a deleted or expired session stays gone.
        self.update_session = (
            f"UPDATE {sessions} SET data = $2, last_accessed = $3, expires_at = $4 "
            "WHERE session_id = $1 AND expires_at > $5"
        )
        self.delete_session = (
            f"DELETE FROM {sessions} WHERE session_id = $1 RETURNING expires_at > $2"
        )
        self.list_user_sessions = (
            f"SELECT {SESSION_COLS} FROM {sessions} WHERE user_id = $1 AND expires_at > $2"
        )
        self.delete_user_sessions = (
            f"WITH gone AS (DELETE FROM {sessions} WHERE user_id = $1 RETURNING expires_at) "
            "SELECT count(*) FILTER (WHERE expires_at > $2) FROM gone"
        )
        self.count_sessions = f"SELECT count(*) FROM {sessions} WHERE expires_at > $1"

        # key-value; counters are stored as ASCII decimal bytes, as the other backends do
        self.kv_get = f"SELECT value FROM {kv} WHERE key = $1 AND expires_at > $2"
        self.kv_set = (
            f"INSERT INTO {kv} (key, value, expires_at, created_at) VALUES ($1, $2, $3, now()) "
            "ON CONFLICT (key) DO UPDATE SET value = $2, expires_at = $3, created_at = now()"
        )
        self.kv_delete = f"DELETE FROM {kv} WHERE key = $1 RETURNING expires_at > $2"
        # $2 is now, $3 is now + ttl. A live counter keeps its expiry (fixed window); a missing
        # or expired one restarts at 1. The row lock of ON CONFLICT makes it atomic.
        self.kv_incr = (
            f"INSERT INTO {kv} AS cur (key, value, expires_at, created_at) "
            "VALUES ($1, '\\x31'::bytea, $3, now()) "
            "ON CONFLICT (key) DO UPDATE SET "
            "value = CASE WHEN cur.expires_at > $2 THEN convert_to("
            "(convert_from(cur.value, 'UTF8')::bigint + 1)::text, 'UTF8') "
            "ELSE '\\x31'::bytea END, "
            "expires_at = CASE WHEN cur.expires_at > $2 THEN cur.expires_at "
            "ELSE EXCLUDED.expires_at END, "
            "created_at = CASE WHEN cur.expires_at > $2 THEN cur.created_at ELSE now() END "
            "RETURNING convert_from(value, 'UTF8')::bigint"
        )

        # audit
        self.append_audit = (
            f"INSERT INTO {audit} ({EVENT_COLS}) VALUES ({_placeholders(9)}) "
            "ON CONFLICT (event_id) DO NOTHING"
        )
        self.audit_select = f"SELECT {EVENT_COLS} FROM {audit}"
        self.trim_audit = (
            f"DELETE FROM {audit} WHERE id <= "
            f"(SELECT id FROM {audit} ORDER BY id DESC OFFSET $1 LIMIT 1)"
        )

        # clean-up in bounded batches; SKIP LOCKED lets several instances clean side by side
        self.cleanup_tokens = (
            f"DELETE FROM {tokens} WHERE token_id IN (SELECT token_id FROM {tokens} "
            "WHERE storage_expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
        )
        self.cleanup_sessions = (
            f"DELETE FROM {sessions} WHERE session_id IN (SELECT session_id FROM {sessions} "
            "WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
        )
        self.cleanup_families = (
            f"DELETE FROM {families} WHERE family_id IN (SELECT family_id FROM {families} "
            "WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
        )
        self.cleanup_kv = (
            f"DELETE FROM {kv} WHERE key IN (SELECT key FROM {kv} "
            "WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
        )

        # statistics; sizes are of our tables with their indexes and TOAST
        table_sizes = " + ".join(
            f"pg_total_relation_size('{name}'::regclass)" for name in self.tables
        )
        self.statistics = (
            f"SELECT (SELECT count(*) FROM {users}) AS users, "
            f"(SELECT count(*) FROM {tokens} WHERE storage_expires_at > $1) AS tokens, "
            f"(SELECT count(*) FROM {sessions} WHERE expires_at > $1) AS sessions, "
            f"(SELECT count(*) FROM {sessions} WHERE user_id IS NULL AND expires_at > $1) "
            "AS anonymous_sessions, "
            f"(SELECT count(*) FROM {kv} WHERE expires_at > $1) AS kv, "
            f"(SELECT count(*) FROM {audit}) AS audit, "
            "pg_database_size(current_database()) AS database_bytes, "
            f"{table_sizes} AS table_bytes"
        )

        # bulk iteration: keyset pages, one short query per batch; (first page, next pages)
        self.iter_users = _pages(f"SELECT {USER_COLS} FROM {users}", "user_id", "")
        self.iter_tokens = _pages(
            f"SELECT {TOKEN_COLS} FROM {tokens}", "token_id", "storage_expires_at > $1"
        )
        self.iter_sessions = _pages(
            f"SELECT {SESSION_COLS} FROM {sessions}", "session_id", "expires_at > $1"
        )
        self.iter_kv = _pages(f"SELECT key, value, expires_at FROM {kv}", "key", "expires_at > $1")
        self.iter_audit = (
            f"SELECT id, {EVENT_COLS} FROM {audit} ORDER BY created_at, id LIMIT $1",
            f"SELECT id, {EVENT_COLS} FROM {audit} WHERE (created_at, id) > ($2, $3) "
            "ORDER BY created_at, id LIMIT $1",
        )

    def query_audit(
        self,
        *,
        user_id: str | None,
        action: str | None,
        since: Any,
        until: Any,
        limit: int,
    ) -> tuple[str, list[Any]]:
        """The audit query for these filters and its arguments (values are bound, never
        spliced)."""
        conditions: list[str] = []
        args: list[Any] = []
        for column, op, value in (
            ("user_id", "=", user_id),
            ("action", "=", action),
            ("created_at", ">=", since),
            ("created_at", "<=", until),
        ):
            if value is not None:
                args.append(value)
                conditions.append(f"{column} {op} ${len(args)}")
        args.append(max(limit, 0))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"{self.audit_select}{where} ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
        return sql, args


def user_args(user: UserRecord) -> tuple[Any, ...]:
    """Bind arguments for ``create_user``/``update_user``."""
    return (
        user.user_id,
        user.password_hash,
        user.roles,
        user.permissions,
        user.is_active,
        user.created_at,
        user.updated_at,
    )


def row_to_user(row: Mapping[str, Any], prefix: str = "") -> UserRecord:
    """A user from a row of ``USER_COLS`` (each column name after ``prefix``)."""
    return UserRecord(
        user_id=row[f"{prefix}user_id"],
        password_hash=row[f"{prefix}password_hash"],
        created_at=row[f"{prefix}created_at"],
        updated_at=row[f"{prefix}updated_at"],
        roles=tuple(row[f"{prefix}roles"]),
        permissions=tuple(row[f"{prefix}permissions"]),
        is_active=row[f"{prefix}is_active"],
    )


def row_to_owner(row: Mapping[str, Any]) -> UserRecord | None:
    """The owner read beside a credential (the ``owner_`` columns), or None if none."""
    return None if row[f"{OWNER}user_id"] is None else row_to_user(row, OWNER)


def token_args(token: AuthToken) -> tuple[Any, ...]:
    """Bind arguments ($1..$18) for the token statements, in ``TOKEN_COLS`` order."""
    return (
        token.token_id,
        token.user_id,
        token.access_digest,
        token.family_id,
        token.refresh_id,
        token.refresh_digest,
        token.token_type,
        token.expires_at,
        token.refresh_expires_at,
        token.storage_expires_at,
        token.created_at,
        token.revoked_at,
        token.revoke_reason,
        token.roles,
        token.permissions,
        token.login_at,
        token.ip_address,
        token.user_agent,
    )


def row_to_token(row: Mapping[str, Any]) -> AuthToken:
    """A token record from a row of ``TOKEN_COLS``."""
    return AuthToken(
        token_id=row["token_id"],
        user_id=row["user_id"],
        access_digest=row["access_digest"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        family_id=row["family_id"],
        refresh_id=row["refresh_id"],
        refresh_digest=row["refresh_digest"],
        refresh_expires_at=row["refresh_expires_at"],
        roles=tuple(row["roles"]),
        permissions=tuple(row["permissions"]),
        token_type=row["token_type"],
        revoked_at=row["revoked_at"],
        revoke_reason=row["revoke_reason"],
        login_at=row["login_at"],
        ip_address=row["ip_address"],
        user_agent=row["user_agent"],
    )


def session_args(session: SessionData, data_json: str) -> tuple[Any, ...]:
    """Bind arguments for ``store_session`` (``data_json``: the data already serialised)."""
    return (
        session.session_id,
        session.user_id,
        session.verifier_digest,
        data_json,
        session.roles,
        session.permissions,
        session.created_at,
        session.last_accessed,
        session.expires_at,
        session.absolute_expires_at,
        session.ip_address,
        session.user_agent,
    )


def row_to_session(row: Mapping[str, Any]) -> SessionData:
    """A session from a row of ``SESSION_COLS``; its data is parsed afresh on every read."""
    return SessionData(
        session_id=row["session_id"],
        user_id=row["user_id"],
        verifier_digest=row["verifier_digest"],
        created_at=row["created_at"],
        last_accessed=row["last_accessed"],
        expires_at=row["expires_at"],
        absolute_expires_at=row["absolute_expires_at"],
        data=json.loads(row["data"]),
        roles=tuple(row["roles"]),
        permissions=tuple(row["permissions"]),
        ip_address=row["ip_address"],
        user_agent=row["user_agent"],
    )


def event_args(event: AuditEvent) -> tuple[Any, ...]:
    """Bind arguments for ``append_audit``."""
    return (
        event.event_id,
        event.user_id,
        event.action,
        event.resource,
        event.outcome,
        event.ip_address,
        event.user_agent,
        event.timestamp,
        json.dumps(event.metadata, separators=(",", ":")),
    )


def row_to_event(row: Mapping[str, Any]) -> AuditEvent:
    """An audit event from a row of ``EVENT_COLS``."""
    return AuditEvent(
        event_id=row["event_id"],
        action=row["action"],
        outcome=row["outcome"],
        user_id=row["user_id"],
        timestamp=row["created_at"],
        resource=row["resource"],
        ip_address=row["ip_address"],
        user_agent=row["user_agent"],
        metadata=json.loads(row["metadata"]),
    )
