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
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ..._time import Duration, from_ts, now_ts, seconds
from ...errors import ConfigurationError, UserExists
from ...models import AuditEvent, AuthToken, SessionData, StorageStatistics, UserRecord
from ..base import KVEntry
from ._import import MemoryBulkMixin

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

# Sessions are kept with their data as JSON text, so a caller mutating a dict it got back (or
# passed in) never changes what is stored, and non-JSON data fails here as it would in Redis.
_NO_DATA: dict[str, Any] = {}


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


class InMemoryStorage(MemoryBulkMixin):
    """Storage in process memory: fast, zero dependencies, gone when the process exits."""

    name = "memory"

    def __init__(self, config: InMemoryConfig | None = None) -> None:
        self.config = config or InMemoryConfig()
        self._cleanup_interval = seconds(self.config.cleanup_interval, "cleanup_interval")
        self._default_ttl = seconds(self.config.default_ttl, "default_ttl")
        self._lock = threading.Lock()
        self._users: dict[str, UserRecord] = {}
        self._tokens: dict[str, AuthToken] = {}
        self._refresh: dict[str, str] = {}
        self._user_tokens: dict[str, set[str]] = {}
        self._sessions: dict[str, tuple[SessionData, str]] = {}
        self._user_sessions: dict[str, set[str]] = {}
        self._kv: dict[str, tuple[bytes, float]] = {}
        self._audit: deque[AuditEvent] = deque(maxlen=self.config.max_audit_events)
        self._cleanup_task: asyncio.Task[None] | None = None

    @classmethod
    def with_config(
        cls, cleanup_interval: Duration = timedelta(minutes=5),
        default_ttl: Duration = timedelta(hours=1),
    ) -> InMemoryStorage:
        """A storage with the given clean-up interval and default TTL (the guide's shorthand)."""
        return cls(InMemoryConfig(cleanup_interval=cleanup_interval, default_ttl=default_ttl))

    def __repr__(self) -> str:
        return f"InMemoryStorage(tokens={len(self._tokens)}, sessions={len(self._sessions)})"

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
        with self._lock:
            if user.user_id in self._users:
                raise UserExists(user.user_id)
            self._users[user.user_id] = user

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The user, or None."""
        return self._users.get(user_id)

    async def update_user(self, user: UserRecord) -> bool:
        """Replace an existing user."""
        with self._lock:
            if user.user_id not in self._users:
                return False
            self._users[user.user_id] = user
            return True

    async def delete_user(self, user_id: str) -> bool:
        """Delete a user record."""
        with self._lock:
            return self._users.pop(user_id, None) is not None

    # -- tokens ----------------------------------------------------------------------------

    def _put_token(self, token: AuthToken) -> None:
        # Called with the lock held. Records are frozen, so the stored object can be handed out.
        token = token.stored()
        old = self._tokens.get(token.token_id)
        if old is not None and old.refresh_id and old.refresh_id != token.refresh_id:
            self._refresh.pop(old.refresh_id, None)
        self._tokens[token.token_id] = token
        if token.refresh_id:
            self._refresh[token.refresh_id] = token.token_id
        self._user_tokens.setdefault(token.user_id, set()).add(token.token_id)

    def _drop_token(self, token_id: str) -> AuthToken | None:
        # Called with the lock held.
        token = self._tokens.pop(token_id, None)
        if token is None:
            return None
        if token.refresh_id:
            self._refresh.pop(token.refresh_id, None)
        ids = self._user_tokens.get(token.user_id)
        if ids is not None:
            ids.discard(token_id)
            if not ids:
                del self._user_tokens[token.user_id]
        return token

    async def store_token(self, token: AuthToken) -> None:
        """Insert or replace a token record."""
        with self._lock:
            self._put_token(token)

    async def get_token(self, token_id: str) -> AuthToken | None:
        """The live token record, or None."""
        token = self._tokens.get(token_id)
        if token is None or token.storage_expires_ts <= _time():
            return None
        return token

    async def get_token_by_refresh(self, refresh_id: str) -> AuthToken | None:
        """The live token record holding this refresh selector, or None."""
        token_id = self._refresh.get(refresh_id)
        return None if token_id is None else await self.get_token(token_id)

    async def update_token(self, token: AuthToken) -> bool:
        """Replace an existing, live token record."""
        with self._lock:
            current = self._tokens.get(token.token_id)
            if current is None or current.storage_expires_ts <= now_ts():
                return False
            self._put_token(token)
            return True

    async def rotate_token(self, retired: AuthToken, new: AuthToken) -> bool:
        """Retire ``retired`` and store ``new`` in one step, unless already retired."""
        with self._lock:
            current = self._tokens.get(retired.token_id)
            if current is None or current.is_revoked or current.storage_expires_ts <= now_ts():
                return False
            self._put_token(retired)
            self._put_token(new)
            return True

    async def delete_token(self, token_id: str) -> bool:
        """Delete a token record."""
        with self._lock:
            token = self._drop_token(token_id)
        return token is not None and token.storage_expires_ts > now_ts()

    async def list_user_tokens(self, user_id: str) -> list[AuthToken]:
        """The user's live token records."""
        now = now_ts()
        with self._lock:
            ids = list(self._user_tokens.get(user_id, ()))
            tokens = [self._tokens.get(token_id) for token_id in ids]
        return [t for t in tokens if t is not None and t.storage_expires_ts > now]

    async def delete_user_tokens(self, user_id: str) -> int:
        """Delete all of the user's token records."""
        now = now_ts()
        with self._lock:
            dropped = [self._drop_token(i) for i in list(self._user_tokens.get(user_id, ()))]
        return sum(1 for t in dropped if t is not None and t.storage_expires_ts > now)

    # -- sessions --------------------------------------------------------------------------

    async def store_session(self, session: SessionData) -> None:
        """Insert or replace a session."""
        data_json = json.dumps(session.data, separators=(",", ":"))
        with self._lock:
            self._sessions[session.session_id] = (replace(session, data=_NO_DATA), data_json)
            self._user_sessions.setdefault(session.user_id, set()).add(session.session_id)

    def _live_session(self, session_id: str, now: float) -> SessionData | None:
        entry = self._sessions.get(session_id)
        if entry is None or entry[0].expires_ts <= now:
            return None
        return replace(entry[0], data=json.loads(entry[1]))

    async def get_session(self, session_id: str) -> SessionData | None:
        """The live session with a fresh copy of its data, or None."""
        return self._live_session(session_id, now_ts())

    async def touch_session(
        self, session_id: str, last_accessed: datetime, expires_at: datetime
    ) -> bool:
        """Move a live session's access time and expiry."""
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is None or entry[0].expires_ts <= now_ts():
                return False
            touched = replace(entry[0], last_accessed=last_accessed, expires_at=expires_at)
            self._sessions[session_id] = (touched, entry[1])
            return True

    def _drop_session(self, session_id: str) -> SessionData | None:
        # Called with the lock held.
        entry = self._sessions.pop(session_id, None)
        if entry is None:
            return None
        ids = self._user_sessions.get(entry[0].user_id)
        if ids is not None:
            ids.discard(session_id)
            if not ids:
                del self._user_sessions[entry[0].user_id]
        return entry[0]

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session."""
        with self._lock:
            session = self._drop_session(session_id)
        return session is not None and session.expires_ts > now_ts()

    async def list_user_sessions(self, user_id: str) -> list[SessionData]:
        """The user's live sessions."""
        now = now_ts()
        with self._lock:
            ids = list(self._user_sessions.get(user_id, ()))
        found = (self._live_session(i, now) for i in ids)
        return [s for s in found if s is not None]

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete all of the user's sessions."""
        now = now_ts()
        with self._lock:
            dropped = [self._drop_session(i) for i in list(self._user_sessions.get(user_id, ()))]
        return sum(1 for s in dropped if s is not None and s.expires_ts > now)

    async def count_active_sessions(self) -> int:
        """How many sessions are live."""
        now = now_ts()
        return sum(1 for s, _ in list(self._sessions.values()) if s.expires_ts > now)

    # -- key-value -------------------------------------------------------------------------

    async def kv_get(self, key: str) -> bytes | None:
        """The live value, or None."""
        entry = self._kv.get(key)
        if entry is None or entry[1] <= now_ts():
            return None
        return entry[0]

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store bytes for ``ttl`` seconds (default: ``default_ttl``)."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"kv values are bytes, got {type(value).__name__}")
        life = self._default_ttl if ttl is None else seconds(ttl, "ttl")
        self._kv[key] = (bytes(value), now_ts() + life)

    async def kv_delete(self, key: str) -> bool:
        """Delete a key."""
        entry = self._kv.pop(key, None)
        return entry is not None and entry[1] > now_ts()

    async def kv_incr(self, key: str, ttl: float) -> int:
        """Atomically increment a counter (fixed window of ``ttl`` seconds)."""
        life = seconds(ttl, "ttl")
        with self._lock:
            now = now_ts()
            entry = self._kv.get(key)
            if entry is None or entry[1] <= now:
                count, expires = 1, now + life
            else:
                count, expires = int(entry[0]) + 1, entry[1]
            self._kv[key] = (str(count).encode(), expires)
            return count

    # -- audit log -------------------------------------------------------------------------

    async def append_audit(self, event: AuditEvent) -> None:
        """Append an event (the oldest falls off past ``max_audit_events``)."""
        self._audit.append(event)

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
        for event in reversed(list(self._audit)):
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
        expired_tokens = [k for k, t in list(self._tokens.items()) if t.storage_expires_ts <= now]
        expired_sessions = [k for k, (s, _) in list(self._sessions.items()) if s.expires_ts <= now]
        expired_kv = [k for k, (_, exp) in list(self._kv.items()) if exp <= now]
        for chunk in batched(expired_tokens, 1000):
            with self._lock:
                for key in chunk:
                    token = self._tokens.get(key)
                    if token is not None and token.storage_expires_ts <= now:
                        self._drop_token(key)
                        removed["tokens"] += 1
            await asyncio.sleep(0)
        for chunk in batched(expired_sessions, 1000):
            with self._lock:
                for key in chunk:
                    entry = self._sessions.get(key)
                    if entry is not None and entry[0].expires_ts <= now:
                        self._drop_session(key)
                        removed["sessions"] += 1
            await asyncio.sleep(0)
        with self._lock:
            for key in expired_kv:
                kv = self._kv.get(key)
                if kv is not None and kv[1] <= now:
                    del self._kv[key]
                    removed["kv"] += 1
        return removed

    async def get_statistics(self) -> StorageStatistics:
        """Counts of live records."""
        now = now_ts()
        return StorageStatistics(
            backend=self.name,
            total_users=len(self._users),
            total_tokens=sum(1 for t in list(self._tokens.values()) if t.storage_expires_ts > now),
            active_sessions=await self.count_active_sessions(),
            kv_entries=sum(1 for _, exp in list(self._kv.values()) if exp > now),
            audit_events=len(self._audit),
        )

    # -- bulk iteration --------------------------------------------------------------------

    async def iter_users(self, batch_size: int = 1000) -> AsyncIterator[list[UserRecord]]:
        """Every user, in batches."""
        for batch in batched(list(self._users.values()), batch_size):
            yield batch

    async def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list[AuthToken]]:
        """Every live token record, in batches."""
        now = now_ts()
        live = [t for t in list(self._tokens.values()) if t.storage_expires_ts > now]
        for batch in batched(live, batch_size):
            yield batch

    async def iter_sessions(self, batch_size: int = 1000) -> AsyncIterator[list[SessionData]]:
        """Every live session, in batches."""
        now = now_ts()
        live = [s for s in (self._live_session(i, now) for i in list(self._sessions)) if s]
        for batch in batched(live, batch_size):
            yield batch

    async def iter_kv(self, batch_size: int = 1000) -> AsyncIterator[list[KVEntry]]:
        """Every live key-value entry, in batches."""
        now = now_ts()
        live = [KVEntry(k, v, from_ts(exp)) for k, (v, exp) in list(self._kv.items()) if exp > now]
        for batch in batched(live, batch_size):
            yield batch

    async def iter_audit(self, batch_size: int = 1000) -> AsyncIterator[list[AuditEvent]]:
        """Every audit event, oldest first, in batches."""
        for batch in batched(list(self._audit), batch_size):
            yield batch
