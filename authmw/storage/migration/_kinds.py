"""What the migration needs to know about each kind of record.

One :class:`Kind` per record type: how to read it from a source, its key, its expiry, how a
target imports and looks it up (the batch capabilities of :mod:`authmw.storage.base` when
the target has them, one Protocol call per record otherwise), when two copies are the same, and
how to overwrite one. :mod:`authmw.storage.migration` runs them all through one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from ..._time import now_ts
from ...errors import UserExists
from ...models import AuditEvent, AuthToken, SessionData, UserRecord
from ..base import AuthStorage, BulkImport, BulkLookup, KVEntry

__all__ = ["AuditLookup", "Kind", "MigrationSource", "kinds"]

T = TypeVar("T")
R = TypeVar("R")

_FALLBACK_CONCURRENCY = 16  # Protocol calls in flight when a target has no batch capability


class MigrationSource(Protocol):
    """What a migration reads from: every :class:`AuthStorage` is one, so is a backup file."""

    @property
    def name(self) -> str:
        """A short name for reports."""
        ...

    async def open(self) -> None:
        """Make the records readable."""
        ...

    def iter_users(self, batch_size: int = 1000) -> AsyncIterator[list[UserRecord]]:
        """Every user, in batches."""
        ...

    def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list[AuthToken]]:
        """Every token record, in batches."""
        ...

    def iter_sessions(self, batch_size: int = 1000) -> AsyncIterator[list[SessionData]]:
        """Every session, in batches."""
        ...

    def iter_kv(self, batch_size: int = 1000) -> AsyncIterator[list[KVEntry]]:
        """Every key-value entry, in batches."""
        ...

    def iter_audit(self, batch_size: int = 1000) -> AsyncIterator[list[AuditEvent]]:
        """Every audit event, oldest first, in batches."""
        ...


@runtime_checkable
class AuditLookup(Protocol):
    """Audit events by id (backends whose log indexes event ids)."""

    async def lookup_audit(self, event_ids: Sequence[str]) -> list[AuditEvent | None]:
        """The events with these ids, in order, None where absent."""
        ...


async def bounded(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the calls with at most :data:`_FALLBACK_CONCURRENCY` in flight; results in order."""
    out: list[T] = []
    for start in range(0, len(calls), _FALLBACK_CONCURRENCY):
        chunk = calls[start : start + _FALLBACK_CONCURRENCY]
        out.extend(await asyncio.gather(*(call() for call in chunk)))
    return out


def _remaining(expires_at_ts: float) -> float:
    return max(expires_at_ts - now_ts(), 0.001)


@dataclass(frozen=True, slots=True)
class Kind:
    """How the migration treats one kind of record (``R`` is the record type)."""

    name: str
    stat: str  # the StorageStatistics field that counts this kind
    iterate: Callable[[Any, int], AsyncIterator[list[Any]]]
    key: Callable[[Any], str]
    expires: Callable[[Any], float | None]
    bulk_import: Callable[[BulkImport, Sequence[Any], bool], Awaitable[list[bool]]]
    bulk_lookup: Callable[[BulkLookup, Sequence[str]], Awaitable[list[Any]]]
    one_import: Callable[[AuthStorage, Any, bool], Awaitable[bool]]
    one_lookup: Callable[[AuthStorage, str], Awaitable[Any]]
    overwrite: Callable[[AuthStorage, Any, bool], Awaitable[None]]

    async def import_batch(
        self, target: AuthStorage, batch: Sequence[Any], default_ttl: bool
    ) -> list[bool]:
        """Insert-if-absent, batched when the target can."""
        if isinstance(target, BulkImport):
            return await self.bulk_import(target, batch, default_ttl)

        def call(record: Any) -> Callable[[], Awaitable[bool]]:
            return lambda: self.one_import(target, record, default_ttl)

        return await bounded([call(r) for r in batch])

    async def lookup_batch(self, target: AuthStorage, keys: Sequence[str]) -> list[Any]:
        """What the target holds under each key (None: nothing live)."""
        if isinstance(target, BulkLookup):
            return await self.bulk_lookup(target, keys)

        def call(key: str) -> Callable[[], Awaitable[Any]]:
            return lambda: self.one_lookup(target, key)

        return await bounded([call(k) for k in keys])


# -- per-record fallbacks over the AuthStorage Protocol ----------------------------------------


async def _user_one(target: AuthStorage, user: UserRecord, _: bool) -> bool:
    try:
        await target.create_user(user)
    except UserExists:
        return False
    return True


async def _token_one(target: AuthStorage, token: AuthToken, _: bool) -> bool:
    # Check-then-write: a concurrent writer of the same id could slip in between; the
    # migration's read-back (verify_data) reports it.
    if await target.get_token(token.token_id) is not None:
        return False
    await target.store_token(token)
    return True


async def _session_one(target: AuthStorage, session: SessionData, _: bool) -> bool:
    if await target.get_session(session.session_id) is not None:
        return False
    await target.store_session(session)
    return True


def _kv_ttl(entry: KVEntry, default_ttl: bool) -> float | None:
    if default_ttl or entry.expires_at is None:
        return None
    return _remaining(entry.expires_at.timestamp())


async def _kv_one(target: AuthStorage, entry: KVEntry, default_ttl: bool) -> bool:
    if await target.kv_get(entry.key) is not None:
        return False
    await target.kv_set(entry.key, entry.value, _kv_ttl(entry, default_ttl))
    return True


async def _kv_lookup_one(target: AuthStorage, key: str) -> KVEntry | None:
    value = await target.kv_get(key)
    # The Protocol cannot tell a key's expiry: None means "unknown" to the comparison.
    return None if value is None else KVEntry(key, value, None)


async def _audit_one(target: AuthStorage, event: AuditEvent, _: bool) -> bool:
    await target.append_audit(event)
    return True


async def _no_lookup(target: AuthStorage, key: str) -> None:
    return None


async def _overwrite_user(target: AuthStorage, user: UserRecord, _: bool) -> None:
    if not await target.update_user(user):
        await target.create_user(user)


async def _overwrite_token(target: AuthStorage, token: AuthToken, _: bool) -> None:
    await target.store_token(token)


async def _overwrite_session(target: AuthStorage, session: SessionData, _: bool) -> None:
    await target.store_session(session)


async def _overwrite_kv(target: AuthStorage, entry: KVEntry, default_ttl: bool) -> None:
    await target.kv_set(entry.key, entry.value, _kv_ttl(entry, default_ttl))


async def _overwrite_audit(target: AuthStorage, event: AuditEvent, _: bool) -> None:
    # An audit log is append-only: a conflicting event id stays as the target has it.
    return None


async def _audit_bulk_lookup(target: Any, keys: Sequence[str]) -> list[Any]:
    if isinstance(target, AuditLookup):
        return await target.lookup_audit(keys)
    return [None] * len(keys)


def _kv_expiry(entry: KVEntry) -> float | None:
    return None if entry.expires_at is None else entry.expires_at.timestamp()


def kinds() -> dict[str, Kind]:
    """Every kind, in the order ``migrate_all`` moves them."""
    return {
        "users": Kind(
            "users",
            "total_users",
            lambda s, n: s.iter_users(n),
            lambda r: r.user_id,
            lambda r: None,
            lambda t, b, _: t.import_users(b),
            lambda t, k: t.lookup_users(k),
            _user_one,
            lambda t, k: t.get_user(k),
            _overwrite_user,
        ),
        "tokens": Kind(
            "tokens",
            "total_tokens",
            lambda s, n: s.iter_tokens(n),
            lambda r: r.token_id,
            lambda r: r.storage_expires_ts,
            lambda t, b, _: t.import_tokens(b),
            lambda t, k: t.lookup_tokens(k),
            _token_one,
            lambda t, k: t.get_token(k),
            _overwrite_token,
        ),
        "sessions": Kind(
            "sessions",
            "active_sessions",
            lambda s, n: s.iter_sessions(n),
            lambda r: r.session_id,
            lambda r: r.expires_ts,
            lambda t, b, _: t.import_sessions(b),
            lambda t, k: t.lookup_sessions(k),
            _session_one,
            lambda t, k: t.get_session(k),
            _overwrite_session,
        ),
        "kv": Kind(
            "kv",
            "kv_entries",
            lambda s, n: s.iter_kv(n),
            lambda r: r.key,
            _kv_expiry,
            lambda t, b, d: t.import_kv(b, d),
            lambda t, k: t.lookup_kv(k),
            _kv_one,
            _kv_lookup_one,
            _overwrite_kv,
        ),
        "audit": Kind(
            "audit",
            "audit_events",
            lambda s, n: s.iter_audit(n),
            lambda r: r.event_id,
            lambda r: None,
            lambda t, b, _: t.import_audit(b),
            _audit_bulk_lookup,
            _audit_one,
            _no_lookup,
            _overwrite_audit,
        ),
    }
