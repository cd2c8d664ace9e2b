"""InMemoryStorage: every record in process memory, with background clean-up.

Reads never return an expired record (see the TTL rule in :mod:`authmw.storage.base`); the
clean-up task only reclaims memory. Mutations that touch several maps hold one lock, so the
store is safe from several threads as well as from many tasks on one loop; single-key reads
take no lock because one dict lookup is atomic under the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from ..._time import Duration, from_ts, now_ts, seconds, utcnow
from ...errors import ConfigurationError, UserExists
from ...models import AuditEvent, AuthToken, SessionData, StorageStatistics, UserRecord
from .._urls import backend_for, unknown_option
from .._users import page_of
from ..base import KVEntry
from ._import import MemoryBulk
from ._tables import Tables

__all__ = ["InMemoryConfig", "InMemoryStorage"]

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (``itertools.batched`` arrives in Python 3.12)."""
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


log = logging.getLogger("authmw.storage.memory")
_time = now_ts  # a module global: the hot read path calls the clock directly


@dataclass(frozen=True, slots=True)
class InMemoryConfig:
    """Settings for :class:`InMemoryStorage`.

    ``cleanup_interval`` (default 5 minutes): how often the background task reclaims expired
    records. ``default_ttl`` (default 1 hour): expiry of key-value entries stored without one.
    ``max_audit_events`` (default 100,000): the audit log keeps this many newest events.
    """

    cleanup_interval: Duration = timedelta(minutes=5)
    default_ttl: Duration = timedelta(hours=1)
    max_audit_events: int = 100_000

    def __post_init__(self) -> None:
        seconds(self.cleanup_interval, "cleanup_interval")
        seconds(self.default_ttl, "default_ttl")
        if self.max_audit_events < 1:
            raise ConfigurationError("max_audit_events: must be at least 1")

    def with_cleanup_interval(self, value: Duration) -> InMemoryConfig:
        """A copy with another clean-up interval."""
        return replace(self, cleanup_interval=value)

    def with_default_ttl(self, value: Duration) -> InMemoryConfig:
        """A copy with another default TTL."""
        return replace(self, default_ttl=value)

    def build(self) -> InMemoryStorage:
        """An :class:`InMemoryStorage` with these settings."""
        return InMemoryStorage(self)


class InMemoryStorage:
    """Storage in process memory: fast, zero dependencies, gone when the process exits."""

    name = "memory"
    call_timeout: float | None = None
    """None: no call waits on I/O (``SupportsCallTimeout``)."""

    def __init__(self, config: InMemoryConfig | None = None) -> None:
        self.config = config or InMemoryConfig()
        self._cleanup_interval = seconds(self.config.cleanup_interval, "cleanup_interval")
        self._default_ttl = seconds(self.config.default_ttl, "default_ttl")
        self._t = Tables(self.config.max_audit_events)
        self._bulk = MemoryBulk(self._t, self._default_ttl)
        self._cleanup_task: asyncio.Task[None] | None = None
        #: Changes on every user write (``SupportsNowaitReads``): a plain attribute, the
        #: verify hot path reads it.
        self.user_generation = 0

    @classmethod
    def with_config(
        cls,
        cleanup_interval: Duration = timedelta(minutes=5),
        default_ttl: Duration = timedelta(hours=1),
    ) -> InMemoryStorage:
        """A storage with the given clean-up interval and default TTL (the guide's shorthand)."""
        return cls(InMemoryConfig(cleanup_interval=cleanup_interval, default_ttl=default_ttl))

    @classmethod
    def from_url(cls, url: str) -> InMemoryStorage:
        """A storage from ``memory://`` with optional ``?cleanup_interval=&default_ttl=`` (seconds)
        and ``&max_audit_events=``; ``ConfigurationError`` names a misspelled or bad option."""
        backend_for(url, "memory")
        options = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        known = ("cleanup_interval", "default_ttl", "max_audit_events")
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise unknown_option("memory", unknown[0], known)
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            try:
                kwargs[key] = int(value) if key == "max_audit_events" else float(value)
            except ValueError:
                raise ConfigurationError(
                    f"memory:// option {key}: not a number: {value!r}"
                ) from None
        return cls(InMemoryConfig(**kwargs))

    def __repr__(self) -> str:
        return f"InMemoryStorage(tokens={len(self._t.tokens)}, sessions={len(self._t.sessions)})"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the background clean-up task (once)."""
        if self._cleanup_task is None or self._cleanup_task.done():
            self._cleanup_task = asyncio.get_running_loop().create_task(
                self._cleanup_loop(), name="authmw-memory-cleanup"
            )

    async def close(self) -> None:
        """Stop the clean-up task. The data stays: reopening sees the same records."""
        task, self._cleanup_task = self._cleanup_task, None
        if task is None:
            return
        if task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            # Opened on another event loop (one storage shared by a thread's loop and the
            # main one): cancel it there; a loop that is already closed has no task to stop.
            with contextlib.suppress(RuntimeError):
                task.get_loop().call_soon_threadsafe(task.cancel)

    async def ping(self) -> float:
        """Always reachable; returns 0."""
        return 0.0

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                removed = await self.cleanup_expired()
                log.debug("memory clean-up removed %s", removed)
            except Exception:  # keep the loop alive: a failed pass is retried next interval
                log.exception("memory clean-up failed")

    # -- users -----------------------------------------------------------------------------

    async def create_user(self, user: UserRecord) -> None:
        """Insert a user; ``UserExists`` if taken."""
        with self._t.lock:
            if user.user_id in self._t.users:
                raise UserExists(user.user_id)
            self._t.users[user.user_id] = user
            self.user_generation += 1

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The user, or None."""
        return self._t.users.get(user_id)

    def get_user_nowait(self, user_id: str) -> UserRecord | None:
        """``get_user`` as a plain call (never ``MISS``)."""
        return self._t.users.get(user_id)

    async def update_user(self, user: UserRecord) -> bool:
        """Replace an existing user."""
        with self._t.lock:
            if user.user_id not in self._t.users:
                return False
            self._t.users[user.user_id] = user
            self.user_generation += 1
            return True

    async def delete_user(self, user_id: str) -> bool:
        """Delete a user record."""
        with self._t.lock:
            self.user_generation += 1
            return self._t.users.pop(user_id, None) is not None

    async def list_users(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        role: str | None = None,
        active: bool | None = None,
    ) -> list[UserRecord]:
        """A page of users in id order (see ``AuthStorage.list_users``)."""
        with self._t.lock:
            users = list(self._t.users.values())
        return page_of(users, after=after, limit=limit, role=role, active=active)

    # -- tokens ----------------------------------------------------------------------------

    async def store_token(self, token: AuthToken) -> None:
        """Insert or replace a token record."""
        with self._t.lock:
            self._t.put_token(token)

    async def get_token(self, token_id: str) -> AuthToken | None:
        """The live token record, or None."""
        return self._live_token(token_id)

    def get_token_nowait(self, token_id: str) -> AuthToken | None:
        """``get_token`` as a plain call (memory needs no I/O, so never ``MISS``): the
        framework's verify and the WSGI fast path skip creating and awaiting a coroutine."""
        return self._live_token(token_id)

    async def get_token_and_user(self, token_id: str) -> tuple[AuthToken | None, UserRecord | None]:
        """The live token and its owner (``SupportsOwnerReads``)."""
        token = self._live_token(token_id)
        return token, None if token is None else self._t.users.get(token.user_id)

    def _live_token(self, token_id: str) -> AuthToken | None:
        # Both reads share this rather than calling each other: a subclass may override one.
        token = self._t.tokens.get(token_id)
        if token is None or token.storage_expires_ts <= _time():
            return None
        return token

    async def get_token_by_refresh(self, refresh_id: str) -> AuthToken | None:
        """The live token record holding this refresh selector, or None."""
        token_id = self._t.refresh.get(refresh_id)
        return None if token_id is None else await self.get_token(token_id)

    async def update_token(self, token: AuthToken) -> bool:
        """Replace an existing, live token record."""
        with self._t.lock:
            current = self._t.tokens.get(token.token_id)
            if current is None or current.storage_expires_ts <= now_ts():
                return False
            self._t.put_token(token)
            return True

    async def rotate_token(self, retired: AuthToken, new: AuthToken) -> bool:
        """Retire ``retired`` and store ``new`` in one step, unless already retired."""
        with self._t.lock:
            now = now_ts()
            current = self._t.tokens.get(retired.token_id)
            if current is None or current.is_revoked or current.storage_expires_ts <= now:
                return False
            if self._t.families.get(new.family_id, 0.0) > now:
                return False  # the family was revoked: nothing of it may come back to life
            self._t.put_token(retired)
            self._t.put_token(new)
            return True

    async def revoke_token_family(self, user_id: str, family_id: str, until: datetime) -> int:
        """Mark the family revoked and revoke its live tokens, under the lock rotations take."""
        revoked_at = utcnow()
        with self._t.lock:
            now = now_ts()
            self._t.families[family_id] = max(
                self._t.families.get(family_id, 0.0), until.timestamp()
            )
            count = 0
            for token_id in list(self._t.user_tokens.get(user_id, ())):
                token = self._t.tokens.get(token_id)
                if (
                    token is None
                    or token.family_id != family_id
                    or token.is_revoked
                    or token.storage_expires_ts <= now
                ):
                    continue
                self._t.put_token(
                    replace(token, revoked_at=revoked_at, revoke_reason="family_revoked")
                )
                count += 1
            return count

    async def delete_token(self, token_id: str) -> bool:
        """Delete a token record."""
        with self._t.lock:
            token = self._t.drop_token(token_id)
        return token is not None and token.storage_expires_ts > now_ts()

    async def list_user_tokens(self, user_id: str) -> list[AuthToken]:
        """The user's live token records."""
        now = now_ts()
        with self._t.lock:
            ids = list(self._t.user_tokens.get(user_id, ()))
            tokens = [self._t.tokens.get(token_id) for token_id in ids]
        return [t for t in tokens if t is not None and t.storage_expires_ts > now]

    async def delete_user_tokens(self, user_id: str) -> int:
        """Delete all of the user's token records."""
        now = now_ts()
        with self._t.lock:
            dropped = [self._t.drop_token(i) for i in list(self._t.user_tokens.get(user_id, ()))]
        return sum(1 for t in dropped if t is not None and t.storage_expires_ts > now)

    # -- sessions --------------------------------------------------------------------------

    async def store_session(self, session: SessionData) -> None:
        """Insert or replace a session."""
        data_json = self._t.encode_session(session)
        with self._t.lock:
            self._t.put_session(session, data_json)

    async def get_session(self, session_id: str) -> SessionData | None:
        """The live session with a fresh copy of its data, or None."""
        return self._t.live_session(session_id, now_ts())

    async def get_session_and_user(
        self, session_id: str
    ) -> tuple[SessionData | None, UserRecord | None]:
        """The live session and its owner, None when anonymous (``SupportsOwnerReads``)."""
        session = self._t.live_session(session_id, now_ts())
        if session is None or session.user_id is None:
            return session, None
        return session, self._t.users.get(session.user_id)

    def get_session_nowait(self, session_id: str) -> SessionData | None:
        """``get_session`` as a plain call (never ``MISS``), as :meth:`get_token_nowait`."""
        return self._t.live_session(session_id, now_ts())

    async def touch_session(
        self, session_id: str, last_accessed: datetime, expires_at: datetime
    ) -> bool:
        """Move a live session's access time and expiry."""
        with self._t.lock:
            entry = self._t.sessions.get(session_id)
            if entry is None or entry[0].expires_ts <= now_ts():
                return False
            touched = replace(entry[0], last_accessed=last_accessed, expires_at=expires_at)
            self._t.sessions[session_id] = (touched, entry[1])
            return True

    async def update_session(self, session: SessionData) -> bool:
        """Write data, access time and expiry of a live session; never recreate one."""
        data_json = self._t.encode_session(session)
        with self._t.lock:
            entry = self._t.sessions.get(session.session_id)
            if entry is None or entry[0].expires_ts <= now_ts():
                return False
            updated = replace(
                entry[0], last_accessed=session.last_accessed, expires_at=session.expires_at
            )
            self._t.sessions[session.session_id] = (updated, data_json)
            return True

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session."""
        with self._t.lock:
            session = self._t.drop_session(session_id)
        return session is not None and session.expires_ts > now_ts()

    async def list_user_sessions(self, user_id: str) -> list[SessionData]:
        """The user's live sessions."""
        now = now_ts()
        with self._t.lock:
            ids = list(self._t.user_sessions.get(user_id, ()))
        found = (self._t.live_session(i, now) for i in ids)
        return [s for s in found if s is not None]

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete all of the user's sessions."""
        now = now_ts()
        with self._t.lock:
            dropped = [
                self._t.drop_session(i) for i in list(self._t.user_sessions.get(user_id, ()))
            ]
        return sum(1 for s in dropped if s is not None and s.expires_ts > now)

    async def count_active_sessions(self) -> int:
        """How many sessions are live."""
        now = now_ts()
        return sum(1 for s, _ in list(self._t.sessions.values()) if s.expires_ts > now)

    # -- key-value -------------------------------------------------------------------------

    async def kv_get(self, key: str) -> bytes | None:
        """The live value, or None."""
        entry = self._t.kv.get(key)
        if entry is None or entry[1] <= now_ts():
            return None
        return entry[0]

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store bytes for ``ttl`` seconds (default: ``default_ttl``)."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"kv values are bytes, got {type(value).__name__}")
        life = self._default_ttl if ttl is None else seconds(ttl, "ttl")
        self._t.kv[key] = (bytes(value), now_ts() + life)

    async def kv_delete(self, key: str) -> bool:
        """Delete a key."""
        entry = self._t.kv.pop(key, None)
        return entry is not None and entry[1] > now_ts()

    async def kv_incr(self, key: str, ttl: float) -> int:
        """Atomically increment a counter (fixed window of ``ttl`` seconds)."""
        life = seconds(ttl, "ttl")
        with self._t.lock:
            now = now_ts()
            entry = self._t.kv.get(key)
            if entry is None or entry[1] <= now:
                count, expires = 1, now + life
            else:
                count, expires = int(entry[0]) + 1, entry[1]
            self._t.kv[key] = (str(count).encode(), expires)
            return count

    # -- audit log -------------------------------------------------------------------------

    async def append_audit(self, event: AuditEvent) -> None:
        """Append an event (the oldest falls off past ``max_audit_events``)."""
        self._t.audit.append(event)

    async def query_audit(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Matching events, newest first."""
        found: list[AuditEvent] = []
        for event in reversed(list(self._t.audit)):
            if len(found) >= limit:
                break
            if user_id is not None and event.user_id != user_id:
                continue
            if action is not None and event.action != action:
                continue
            if since is not None and event.timestamp < since:
                continue
            if until is not None and event.timestamp > until:
                continue
            found.append(event)
        return found

    # -- maintenance -----------------------------------------------------------------------

    async def cleanup_expired(self) -> dict[str, int]:
        """Remove expired tokens, sessions and kv entries, yielding to the loop between chunks."""
        removed = {"tokens": 0, "sessions": 0, "kv": 0}
        now = now_ts()
        expired_tokens = [k for k, t in list(self._t.tokens.items()) if t.storage_expires_ts <= now]
        expired_sessions = [
            k for k, (s, _) in list(self._t.sessions.items()) if s.expires_ts <= now
        ]
        expired_kv = [k for k, (_, exp) in list(self._t.kv.items()) if exp <= now]
        for chunk in batched(expired_tokens, 1000):
            with self._t.lock:
                for key in chunk:
                    token = self._t.tokens.get(key)
                    if token is not None and token.storage_expires_ts <= now:
                        self._t.drop_token(key)
                        removed["tokens"] += 1
            await asyncio.sleep(0)
        for chunk in batched(expired_sessions, 1000):
            with self._t.lock:
                for key in chunk:
                    entry = self._t.sessions.get(key)
                    if entry is not None and entry[0].expires_ts <= now:
                        self._t.drop_session(key)
                        removed["sessions"] += 1
            await asyncio.sleep(0)
        with self._t.lock:
            for key in expired_kv:
                kv = self._t.kv.get(key)
                if kv is not None and kv[1] <= now:
                    del self._t.kv[key]
                    removed["kv"] += 1
            for family, until in list(self._t.families.items()):
                if until <= now:
                    del self._t.families[family]
        return removed

    async def get_statistics(self) -> StorageStatistics:
        """Counts of live records, and ``memory_bytes``: an estimate of what the stored
        records and their indexes take (``sys.getsizeof`` summed over every object they hold,
        each counted once; expired records not yet cleaned up included)."""
        now = now_ts()
        return StorageStatistics(
            backend=self.name,
            total_users=len(self._t.users),
            total_tokens=sum(
                1 for t in list(self._t.tokens.values()) if t.storage_expires_ts > now
            ),
            active_sessions=await self.count_active_sessions(),
            kv_entries=sum(1 for _, exp in list(self._t.kv.values()) if exp > now),
            audit_events=len(self._t.audit),
            memory_bytes=self._t.memory_bytes(),
            anonymous_sessions=sum(
                1
                for s, _ in list(self._t.sessions.values())
                if s.user_id is None and s.expires_ts > now
            ),
        )

    # -- bulk iteration --------------------------------------------------------------------

    async def iter_users(self, batch_size: int = 1000) -> AsyncIterator[list[UserRecord]]:
        """Every user, in batches."""
        for batch in batched(list(self._t.users.values()), batch_size):
            yield batch

    async def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list[AuthToken]]:
        """Every live token record, in batches."""
        now = now_ts()
        live = [t for t in list(self._t.tokens.values()) if t.storage_expires_ts > now]
        for batch in batched(live, batch_size):
            yield batch

    async def iter_sessions(self, batch_size: int = 1000) -> AsyncIterator[list[SessionData]]:
        """Every live session, in batches."""
        now = now_ts()
        live = [s for s in (self._t.live_session(i, now) for i in list(self._t.sessions)) if s]
        for batch in batched(live, batch_size):
            yield batch

    async def iter_kv(self, batch_size: int = 1000) -> AsyncIterator[list[KVEntry]]:
        """Every live key-value entry, in batches."""
        now = now_ts()
        live = [
            KVEntry(k, v, from_ts(exp)) for k, (v, exp) in list(self._t.kv.items()) if exp > now
        ]
        for batch in batched(live, batch_size):
            yield batch

    async def iter_audit(self, batch_size: int = 1000) -> AsyncIterator[list[AuditEvent]]:
        """Every audit event, oldest first, in batches."""
        for batch in batched(list(self._t.audit), batch_size):
            yield batch

    # -- batch capabilities (migration, backup, restore) -------------------------------------

    @property
    def audit_ids_unique(self) -> bool:
        """False: the in-memory audit log does not index event ids."""
        return False

    async def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """``BulkImport.import_users``."""
        written = self._bulk.import_users(batch)
        self.user_generation += 1
        return written

    async def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """``BulkImport.import_tokens``."""
        return self._bulk.import_tokens(batch)

    async def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """``BulkImport.import_sessions``."""
        return self._bulk.import_sessions(batch)

    async def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """``BulkImport.import_kv``."""
        return self._bulk.import_kv(batch, default_ttl)

    async def import_audit(self, batch: Sequence[AuditEvent]) -> list[bool]:
        """``BulkImport.import_audit``: appends every event (the caller deduplicates)."""
        self._t.audit.extend(batch)
        return [True] * len(batch)

    async def lookup_users(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        """``BulkLookup.lookup_users``."""
        return [self._t.users.get(user_id) for user_id in user_ids]

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """``BulkLookup.lookup_tokens``."""
        return self._bulk.lookup_tokens(token_ids)

    async def lookup_sessions(self, session_ids: Sequence[str]) -> list[SessionData | None]:
        """``BulkLookup.lookup_sessions``."""
        now = now_ts()
        return [self._t.live_session(session_id, now) for session_id in session_ids]

    async def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """``BulkLookup.lookup_kv``."""
        return self._bulk.lookup_kv(keys)
