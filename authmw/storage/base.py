"""The ``AuthStorage`` Protocol: everything the framework asks of a backend.

The TTL rule, followed by every backend
---------------------------------------
Each stored record has one expiry instant, computed from the record itself:

* a token: ``AuthToken.storage_expires_at`` (the later of access and refresh expiry);
* a session: ``SessionData.expires_at`` (already the earlier of idle and absolute deadlines);
* a key-value entry: the ``ttl`` given to ``kv_set``/``kv_incr`` (the backend's ``default_ttl``
  when ``kv_set`` gets ``None``);
* users and audit events do not expire (the audit log is capped by size instead).

A record whose expiry is at or before *now* is never returned by any read, counted or listed,
whatever the clean-up timer says. Clean-up only reclaims space; it never changes what reads see.
Backends with native expiry (Redis, PostgreSQL queries with ``expires_at > now()``) derive it
from the same instant.

Identity
--------
A token's ``token_id`` is the public half (selector) of its access token, so "get by access
token" is :meth:`AuthStorage.get_token`; ``refresh_id`` is the selector of its refresh token.
Backends never see a raw token or session secret, only SHA-256 digests.

Errors
------
Every method raises :class:`authmw.errors.StorageUnavailable` (with the driver error chained)
when the backend cannot answer; ``create_user`` raises :class:`authmw.errors.UserExists`.

Optional capabilities
---------------------
A backend shared by several processes may also offer :class:`SupportsInvalidation`: a channel
on which :class:`authmw.storage.cached.CachedStorage` instances tell each other which cached
records a write changed (Redis pub/sub, PostgreSQL ``LISTEN``/``NOTIFY``). A storage that can
answer some reads from process memory without any I/O offers :class:`SupportsNowaitReads`, so
synchronous callers (the WSGI middleware) need no event loop for them. A backend with a
versioned schema offers :class:`SupportsSchema`, and one with a backup format of its own (a
database dump) :class:`SupportsNativeBackup`; the command line uses both. Callers check every
capability with ``isinstance`` and work without it.

Batch capabilities (migration, backup, restore)
-----------------------------------------------
:class:`BulkImport` and :class:`BulkLookup` add what makes moving many records fast.
:class:`authmw.storage.migration.StorageMigration` checks for them at run time
(``isinstance(target, BulkImport)``) and falls back to one Protocol call per record when a
backend (a wrapper, a third-party store) lacks them.

Insert-if-absent: ``import_*`` writes each record of the batch only when the backend holds no
record under its key (user id, token id, session id, kv key, audit event id), and never changes
an existing one. It returns one boolean per record, in batch order: True when it was written
now. This is what makes a migration idempotent and safe to rerun: a second run writes nothing,
and a record the target already holds is compared, not overwritten. Records are written as they
are (the token and session digests move unchanged), with their indexes; an already expired
record is not written and reported False.

Audit events have no natural per-event index in every backend: ``audit_ids_unique`` is True when
``import_audit`` itself refuses an event id it already holds (PostgreSQL); otherwise
``import_audit`` appends every event and the caller deduplicates (the migration reads the
target's event ids first).

``lookup_*`` reads many records by key in as few round trips as the backend allows; one result
per key, in order, None where nothing live is stored.
"""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from ..models import AuditEvent, AuthToken, SessionData, StorageStatistics, UserRecord

__all__ = [
    "MISS",
    "AuthStorage",
    "BulkImport",
    "BulkLookup",
    "InvalidationChannel",
    "InvalidationSubscription",
    "KVEntry",
    "Miss",
    "NativeBackupInfo",
    "SupportsCallTimeout",
    "SupportsInvalidation",
    "SupportsNativeBackup",
    "SupportsNowaitReads",
    "SupportsOwnerReads",
    "SupportsSchema",
]


@dataclass(frozen=True, slots=True)
class KVEntry:
    """One key-value pair as the bulk iterator yields it (``expires_at`` None: no expiry)."""

    key: str
    value: bytes
    expires_at: datetime | None


@runtime_checkable
class AuthStorage(Protocol):
    """What a storage backend provides. Every method is a coroutine unless it is an iterator."""

    @property
    def name(self) -> str:
        """A short backend name for messages and statistics (``"memory"``, ``"redis"``...)."""
        ...

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and start background work. Idempotent; after ``close()`` it reconnects, on
        whichever event loop is running then. Raises ``ConfigurationError`` for settings the
        server rejects (wrong password, unknown database)."""
        ...

    async def close(self) -> None:
        """Stop background work and release connections. Idempotent."""
        ...

    async def ping(self) -> float:
        """Round-trip the backend once; return the latency in seconds."""
        ...

    # -- users -----------------------------------------------------------------------------

    async def create_user(self, user: UserRecord) -> None:
        """Insert a user atomically; raise ``UserExists`` if the id is taken (even in a race)."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The user, or None."""
        ...

    async def update_user(self, user: UserRecord) -> bool:
        """Replace an existing user; False if there is none (nothing is created)."""
        ...

    async def delete_user(self, user_id: str) -> bool:
        """Delete the user record (not its tokens or sessions); False if there was none."""
        ...

    async def list_users(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        role: str | None = None,
        active: bool | None = None,
    ) -> list[UserRecord]:
        """At most ``limit`` users in ascending order of user id, compared by code point (as
        Python compares ``str``; PostgreSQL ``COLLATE "C"``), starting after ``after`` (the
        last id of the previous page; None: from the first). ``role`` keeps users holding
        that role, ``active`` users whose ``is_active`` equals it. A stable order: paging
        with ``after`` visits every user that exists throughout exactly once."""
        ...

    # -- tokens ----------------------------------------------------------------------------

    async def store_token(self, token: AuthToken) -> None:
        """Insert or replace a token record (raw token strings are never kept)."""
        ...

    async def get_token(self, token_id: str) -> AuthToken | None:
        """The token whose id (access selector) is ``token_id``, or None."""
        ...

    async def get_token_by_refresh(self, refresh_id: str) -> AuthToken | None:
        """The token whose refresh selector is ``refresh_id``, or None."""
        ...

    async def update_token(self, token: AuthToken) -> bool:
        """Replace an existing token record; False if there is none."""
        ...

    async def rotate_token(self, retired: AuthToken, new: AuthToken) -> bool:
        """Atomically retire a token and store its successor.

        If the stored record ``retired.token_id`` exists and is not revoked, replace it with
        ``retired`` (a revoked form) and store ``new``; return True. Otherwise change nothing and
        return False. Two concurrent rotations of one token: exactly one returns True.

        A family marked by :meth:`revoke_token_family` is refused (False) whatever the retired
        record says, and ``new`` does not stay live: the check is atomic with the write (or,
        on a Redis cluster, made after it, revoking ``new`` when the mark is found).
        """
        ...

    async def revoke_token_family(self, user_id: str, family_id: str, until: datetime) -> int:
        """Mark the refresh family ``family_id`` of ``user_id`` revoked until ``until`` (at
        least the expiry of the longest-lived token the family can hold), then revoke each of
        its live, unrevoked tokens (``revoked_at`` now, reason ``"family_revoked"``); return
        how many were revoked now.

        Serialised with :meth:`rotate_token`: a rotation of the family either completed before
        the mark (its new token is revoked here) or is refused. No token of the family is
        live afterwards, whatever runs concurrently.
        """
        ...

    async def delete_token(self, token_id: str) -> bool:
        """Delete a token record; False if there was none."""
        ...

    async def list_user_tokens(self, user_id: str) -> list[AuthToken]:
        """Every unexpired token record of the user, revoked ones included."""
        ...

    async def delete_user_tokens(self, user_id: str) -> int:
        """Delete every token record of the user; return how many unexpired ones were deleted."""
        ...

    # -- sessions --------------------------------------------------------------------------

    async def store_session(self, session: SessionData) -> None:
        """Insert or replace a session (its ``data`` must be JSON-serialisable)."""
        ...

    async def get_session(self, session_id: str) -> SessionData | None:
        """The session with a fresh copy of its data, or None."""
        ...

    async def touch_session(
        self, session_id: str, last_accessed: datetime, expires_at: datetime
    ) -> bool:
        """Move ``last_accessed`` and the effective expiry forward; False if there is none
        (a missing or expired session is never created)."""
        ...

    async def update_session(self, session: SessionData) -> bool:
        """Write the session's ``data``, ``last_accessed`` and ``expires_at`` only if the stored
        session still exists and is unexpired, in one atomic step; False (nothing written)
        otherwise. A save never brings back a session that was deleted meanwhile (logout,
        ``delete_user_sessions``). ``TypeError``/``ValueError`` for data JSON cannot hold."""
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session; False if there was none."""
        ...

    async def list_user_sessions(self, user_id: str) -> list[SessionData]:
        """Every unexpired session of the user."""
        ...

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete every session of the user; return how many unexpired ones were deleted."""
        ...

    async def count_active_sessions(self) -> int:
        """How many unexpired sessions exist."""
        ...

    # -- key-value -------------------------------------------------------------------------

    async def kv_get(self, key: str) -> bytes | None:
        """The value, or None when missing or expired."""
        ...

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store bytes for ``ttl`` seconds (None: the backend's ``default_ttl``)."""
        ...

    async def kv_delete(self, key: str) -> bool:
        """Delete a key; False if there was none."""
        ...

    async def kv_incr(self, key: str, ttl: float) -> int:
        """Atomically add one to an integer counter and return the new value.

        A missing or expired key starts at 0 and gets an expiry ``ttl`` seconds from now; later
        increments keep that expiry (a fixed window).
        """
        ...

    # -- audit log -------------------------------------------------------------------------

    async def append_audit(self, event: AuditEvent) -> None:
        """Append an event to the audit log."""
        ...

    async def query_audit(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Events matching every given filter, newest first, at most ``limit``."""
        ...

    # -- maintenance -----------------------------------------------------------------------

    async def cleanup_expired(self) -> dict[str, int]:
        """Reclaim expired records now; return counts removed per kind
        (``tokens``, ``sessions``, ``kv``, plus backend-specific ones)."""
        ...

    async def get_statistics(self) -> StorageStatistics:
        """Counts of live records and what the backend knows of its size."""
        ...

    # -- bulk iteration (migration, backup) -------------------------------------------------

    def iter_users(self, batch_size: int = 1000) -> AsyncIterator[list[UserRecord]]:
        """Every user, in batches of at most ``batch_size``."""
        ...

    def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list[AuthToken]]:
        """Every unexpired token record, in batches."""
        ...

    def iter_sessions(self, batch_size: int = 1000) -> AsyncIterator[list[SessionData]]:
        """Every unexpired session, in batches."""
        ...

    def iter_kv(self, batch_size: int = 1000) -> AsyncIterator[list[KVEntry]]:
        """Every unexpired key-value entry, in batches."""
        ...

    def iter_audit(self, batch_size: int = 1000) -> AsyncIterator[list[AuditEvent]]:
        """Every audit event, oldest first, in batches."""
        ...


# -- optional capabilities --------------------------------------------------------------------


class InvalidationSubscription(Protocol):
    """One live subscription to an :class:`InvalidationChannel`, on a connection of its own."""

    async def receive(self, timeout: float) -> list[str]:  # noqa: ASYNC109 - a poll, not a deadline
        """The messages that arrive within ``timeout`` seconds (``[]`` when none did).

        Raises ``StorageUnavailable`` once the subscription is lost: messages published from
        then on are not delivered, and the caller must subscribe again.
        """
        ...

    async def ping(self, timeout: float) -> None:  # noqa: ASYNC109 - the answer's deadline
        """Round-trip the subscription's own connection; ``StorageUnavailable`` if it is gone
        or does not answer within ``timeout`` seconds (a silently dropped connection)."""
        ...

    async def close(self) -> None:
        """Unsubscribe and release the connection. Idempotent; never raises."""
        ...


class InvalidationChannel(Protocol):
    """A broadcast channel for short text messages among every process using one backend.

    Delivery is at most once and only to subscriptions live when the message is published, so
    a subscriber that lost its subscription must assume it missed messages.
    """

    async def publish(self, message: str) -> None:
        """Send ``message`` (at most 7,000 bytes of UTF-8) to every live subscription.
        Raises ``StorageUnavailable`` when the backend cannot take it."""
        ...

    async def subscribe(self) -> InvalidationSubscription:
        """Open a subscription on a dedicated connection; ``StorageUnavailable`` if it fails.
        Messages published after this returns are delivered to it."""
        ...


@runtime_checkable
class SupportsInvalidation(Protocol):
    """A backend that offers an :class:`InvalidationChannel` (Redis, PostgreSQL)."""

    def invalidation_channel(self) -> InvalidationChannel:
        """The channel of this backend's namespace (key or table prefix): processes sharing the
        namespace share the channel. Creating it does no I/O."""
        ...


@runtime_checkable
class SupportsCallTimeout(Protocol):
    """A backend that says how long one call may take: it ends within ``call_timeout``
    seconds with its answer or ``StorageUnavailable``. Synchronous fronts (the WSGI middleware)
    wait for a call a little longer than that, not without end."""

    @property
    def call_timeout(self) -> float | None:
        """The longest one call may take, in seconds (the wait for a connection and retries
        included); None when calls do no I/O (memory)."""
        ...


class Miss(enum.Enum):
    """The type of :data:`MISS`."""

    MISS = "MISS"


MISS: Literal[Miss.MISS] = Miss.MISS
"""Returned by the ``*_nowait`` reads when the answer needs I/O: ask the async method."""

WAITERS_PER_CONNECTION = 1000
"""The default waiting bound of the pooled backends, per pooled connection: how many calls may
wait for a free connection before more fail at once with ``StorageUnavailable``. Every call's
wait is already bounded by the storage's deadline; the bound only caps what waiting calls hold
while a server hangs. At 100 per connection, a burst of 1,000 logins in one process (three or
four short calls each, against a healthy Redis with 10 connections) had 995 refused."""


@runtime_checkable
class SupportsNowaitReads(Protocol):
    """Reads answered from process memory without I/O when possible, callable from any thread.

    Each returns what its async counterpart would (the record, or None for nothing stored) or
    :data:`MISS` when only the async method can tell.

    ``user_generation`` is a number that changes whenever a user answer of this storage may
    have changed (a user written, dropped from or refilled into memory): while it stays the
    same, a decision drawn from a user record read here still holds, so the framework need
    not read the user again on every verify.
    """

    user_generation: int

    def get_token_nowait(self, token_id: str) -> AuthToken | Literal[Miss.MISS] | None:
        """``get_token`` from memory, or ``MISS``."""
        ...

    def get_session_nowait(self, session_id: str) -> SessionData | Literal[Miss.MISS] | None:
        """``get_session`` from memory (a fresh copy of its data), or ``MISS``."""
        ...

    def get_user_nowait(self, user_id: str) -> UserRecord | Literal[Miss.MISS] | None:
        """``get_user`` from memory, or ``MISS``."""
        ...


@runtime_checkable
class SupportsOwnerReads(Protocol):
    """Reads of a credential together with its owner's user record, in one round trip.

    Every verify follows the user's account (disabled, deleted, changed roles), so a storage
    without a memory path would otherwise pay two round trips per request. Each returns what
    ``get_token``/``get_session`` would, and the owner as ``get_user`` would have answered
    (None when the record is None, the session anonymous or the user gone). The two reads need
    not be one snapshot: a user changed between them is followed on the next request.
    """

    async def get_token_and_user(self, token_id: str) -> tuple[AuthToken | None, UserRecord | None]:
        """``get_token`` and its owner's ``get_user``."""
        ...

    async def get_session_and_user(
        self, session_id: str
    ) -> tuple[SessionData | None, UserRecord | None]:
        """``get_session`` and its owner's ``get_user`` (None for an anonymous session)."""
        ...


@runtime_checkable
class BulkImport(Protocol):
    """Batched insert-if-absent writes (see the module docstring)."""

    @property
    def audit_ids_unique(self) -> bool:
        """True when :meth:`import_audit` itself skips event ids the backend already holds."""
        ...

    async def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """Insert the users that do not exist; True for each one written."""
        ...

    async def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """Insert the token records (with their refresh and user indexes) that do not exist."""
        ...

    async def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """Insert the sessions (with their user index) that do not exist."""
        ...

    async def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """Insert the key-value entries that do not exist, each expiring at its own
        ``expires_at`` (or after the backend's ``default_ttl`` when ``default_ttl`` is True
        or the entry has no expiry)."""
        ...

    async def import_audit(self, batch: Sequence[AuditEvent]) -> list[bool]:
        """Append the events (skipping known event ids when :attr:`audit_ids_unique`)."""
        ...


@runtime_checkable
class BulkLookup(Protocol):
    """Batched reads by key (one result per key, in order, None for nothing live)."""

    async def lookup_users(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        """The users with these ids."""
        ...

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """The live token records with these ids."""
        ...

    async def lookup_sessions(self, session_ids: Sequence[str]) -> list[SessionData | None]:
        """The live sessions with these ids."""
        ...

    async def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """The live key-value entries with these keys, with their expiry."""
        ...


@runtime_checkable
class SupportsSchema(Protocol):
    """A backend whose tables follow a versioned schema (PostgreSQL)."""

    @property
    def latest_schema_version(self) -> int:
        """The schema version this release of authmw expects."""
        ...

    async def schema_version(self) -> int:
        """The version the backend's schema is at now (0: no schema yet)."""
        ...

    async def migrate_schema(self, target: int | None = None) -> list[int]:
        """Apply the missing migrations up to ``target`` (default: all); return the versions
        applied now. Safe while other processes use the storage."""
        ...

    def inspecting(self) -> AuthStorage:
        """A storage on the same database whose ``open()`` never changes the schema, for health
        checks that must look at the schema as it is."""
        ...


@dataclass(frozen=True, slots=True)
class NativeBackupInfo:
    """What a native backup file holds: how it was made, what it covers, which schema version."""

    path: Path
    method: str
    tool: str
    table_prefix: str
    schema_version: int
    tables: tuple[str, ...]
    created_at: datetime


@runtime_checkable
class SupportsNativeBackup(Protocol):
    """A backend with a backup format of its own (a database dump), beside the portable one."""

    async def create_backup(
        self, path: str | os.PathLike[str], *, method: str = "auto"
    ) -> NativeBackupInfo:
        """Write the backend's data to ``path`` (readable by the owner only)."""
        ...

    async def restore_backup(
        self, path: str | os.PathLike[str], *, method: str = "auto", replace: bool = False
    ) -> NativeBackupInfo:
        """Rebuild the backend's data from a file made by :meth:`create_backup`."""
        ...
