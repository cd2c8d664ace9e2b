"""CachedStorage: a process-local LRU in front of any storage, invalidated across processes.

``CachedStorage(RedisStorage(...), CacheConfig())`` (or ``storage_from_url(url, cache=True)``)
answers repeated token, session and user reads from memory, so a Redis- or PostgreSQL-backed
app verifies at in-memory speed. It satisfies the whole :class:`~authmw.storage.base.AuthStorage`
Protocol; reads it does not cache and every write go to the wrapped storage.

What it guarantees:

* an entry is served for at most ``ttl`` after it was read, and never past its record's own
  expiry (a missing record is remembered for ``negative_ttl``);
* a write through this cache drops the affected entries at once, and announces them on the
  backend's invalidation channel (Redis pub/sub, PostgreSQL ``LISTEN``/``NOTIFY``), so every
  other cache drops them within milliseconds. While that channel is down, nothing cached before
  the outage is trusted (see :mod:`authmw.storage.cached._invalidation`);
* concurrent misses for one key make one backend read; misses for different keys within
  ``batch_window`` go out as one bulk read (``MGET``, ``= ANY($1)``) when the backend has one;
* when the backend is unreachable: ``on_outage="fail_closed"`` (default) raises
  ``StorageUnavailable``; ``"serve_stale"`` answers from entries that were valid when last read,
  up to ``max_stale`` and never past the record's expiry. A dropped (revoked) entry is gone:
  it is never served stale.

Writes made without a ``CachedStorage`` (another tool on the same database) are not announced;
call :meth:`CachedStorage.invalidate_all` after them, or they show after at most ``ttl``.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, TypeVar

from ..._time import now_ts, seconds
from ...errors import ConfigurationError
from ...models import AuditEvent, AuthToken, SessionData, StorageStatistics, UserRecord
from ..base import (
    MISS,
    AuthStorage,
    BulkLookup,
    KVEntry,
    Miss,
    SupportsCallTimeout,
    SupportsInvalidation,
)
from ._config import CacheConfig, CacheStatistics
from ._invalidation import ALL, Invalidations
from ._table import Counters, Policy, Table

__all__ = ["CacheConfig", "CacheStatistics", "CachedStorage"]

log = logging.getLogger("authmw.storage.cached")
_time = now_ts
T = TypeVar("T")

_Packed = tuple[SessionData, str]  # a cached session: the record without data, data as JSON


def _pack(session: SessionData) -> _Packed:
    return replace(session, data={}), json.dumps(session.data, separators=(",", ":"))


def _touch(entries: OrderedDict[str, Any], key: str) -> None:
    """Mark ``key`` most recently used (the LRU order)."""
    # try/except, not contextlib.suppress: a suppress() costs more than the whole cache hit.
    try:  # noqa: SIM105
        entries.move_to_end(key)
    except KeyError:  # dropped by another thread meanwhile
        pass


def _unpack(packed: _Packed) -> SessionData:
    # A fresh copy of the data for every caller, as every backend hands out.
    return packed[0].with_data(json.loads(packed[1]))


class CachedStorage:
    """Any :class:`AuthStorage` behind a process-local LRU cache (see the module docstring).

    ``inner`` is the wrapped storage; use it for backend-specific methods. Raises what the
    wrapped storage raises; ``ConfigurationError`` when wrapping a ``CachedStorage``.
    """

    def __init__(self, inner: AuthStorage, config: CacheConfig | None = None) -> None:
        if isinstance(inner, CachedStorage):
            raise ConfigurationError("CachedStorage: the storage is already cached")
        self.inner = inner
        self.config = cfg = config or CacheConfig()
        self._ttl = seconds(cfg.ttl, "ttl")
        self._policy = Policy(
            max_entries=cfg.max_entries,
            ttl=self._ttl,
            negative_ttl=seconds(cfg.negative_ttl, "negative_ttl"),
            max_stale=seconds(cfg.max_stale, "max_stale"),
            serve_stale=cfg.on_outage == "serve_stale",
            batch_window=seconds(cfg.batch_window, "batch_window", allow_zero=True),
            batch_size=cfg.batch_size,
            retry_after_outage=seconds(cfg.retry_after_outage, "retry_after_outage"),
        )
        self._counters = Counters()
        bulk = inner if isinstance(inner, BulkLookup) else None
        self._tokens: Table[AuthToken] = Table(
            "token",
            self._policy,
            self._counters,
            fetch_one=inner.get_token,
            fetch_many=bulk.lookup_tokens if bulk else None,
            expiry=lambda t: t.storage_expires_ts,
            owner=lambda t: t.user_id,
        )
        self._sessions: Table[_Packed] = Table(
            "session",
            self._policy,
            self._counters,
            fetch_one=self._read_session,
            fetch_many=self._read_sessions if bulk else None,
            expiry=lambda p: p[0].expires_ts,
            # An anonymous session has no owner: "" is no user id, so no revocation matches it.
            owner=lambda p: p[0].user_id or "",
        )
        self._users: Table[UserRecord] = Table(
            "user",
            self._policy,
            self._counters,
            fetch_one=inner.get_user,
            fetch_many=bulk.lookup_users if bulk else None,
            expiry=None,
            owner=None,
        )
        self._tables = (self._tokens, self._sessions, self._users)
        # The hit paths read these dicts directly; the tables never replace them.
        self._token_entries = self._tokens.entries
        self._session_entries = self._sessions.entries
        self._user_entries = self._users.entries
        self._hits = 0
        self._negative_hits = 0
        #: Changes whenever a cached user answer may change: a user entry dropped, cleared,
        #: distrusted or refilled (``SupportsNowaitReads``). A plain attribute: verify reads it.
        self.user_generation = 0
        self._invalidations: Invalidations | None = None
        if cfg.invalidation and isinstance(inner, SupportsInvalidation):
            self._invalidations = Invalidations(
                inner.invalidation_channel(),
                secrets.token_hex(8),
                self._counters,
                apply=self._apply,
                distrust=self._distrust,
                health_check_interval=seconds(cfg.health_check_interval, "health_check_interval"),
                max_delay=seconds(cfg.resubscribe_max_delay, "resubscribe_max_delay"),
                republish_for=self._ttl + self._policy.negative_ttl,
                close_timeout=seconds(cfg.subscribe_timeout, "subscribe_timeout"),
            )

    def __repr__(self) -> str:
        return f"CachedStorage({self.inner!r}, entries={self._entry_count()})"

    @property
    def name(self) -> str:
        """``"cached-"`` and the wrapped storage's name."""
        return f"cached-{self.inner.name}"

    @property
    def call_timeout(self) -> float | None:
        """The wrapped storage's: a miss or a write waits for it."""
        return self.inner.call_timeout if isinstance(self.inner, SupportsCallTimeout) else None

    @property
    def subscribed(self) -> bool:
        """True while the invalidation channel is live (always False without one)."""
        return self._invalidations is not None and self._invalidations.subscribed

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the wrapped storage and subscribe to its invalidation channel (waiting at most
        ``subscribe_timeout`` for the subscription; it keeps retrying in the background)."""
        await self.inner.open()
        inv = self._invalidations
        if inv is not None and not inv.running:
            inv.start()
            timeout = seconds(self.config.subscribe_timeout, "subscribe_timeout")
            if not await inv.wait_subscribed(timeout):
                log.warning(
                    "cache invalidation channel not subscribed after %.1f s; caching "
                    "as a plain TTL cache until it is",
                    timeout,
                )

    async def close(self) -> None:
        """Stop the subscription, forget every entry and close the wrapped storage."""
        if self._invalidations is not None:
            await self._invalidations.aclose()
        for table in self._tables:
            await table.aclose()
        self.user_generation += 1
        await self.inner.close()

    # -- invalidation ----------------------------------------------------------------------

    def _entry_count(self) -> int:
        return sum(len(t) for t in self._tables)

    def _apply(self, keys: list[str]) -> None:
        """Drop what ``keys`` name (see :mod:`authmw.storage.cached._invalidation`)."""
        tokens, sessions, users = self._tokens, self._sessions, self._users
        for key in keys:
            kind, ident = key[:1], key[2:]
            if kind == "t":
                tokens.drop(ident)
            elif kind == "s":
                sessions.drop(ident)
            elif kind == "u":
                users.drop(ident)
                self.user_generation += 1
            elif kind == "T":
                tokens.drop_owner(ident)
            elif kind == "S":
                sessions.drop_owner(ident)
            else:  # "*" or a kind this version does not know: drop everything
                for table in self._tables:
                    table.clear()
                self.user_generation += 1

    def _distrust(self) -> None:
        self._counters.distrusts += 1
        for table in self._tables:
            table.distrust()
        self.user_generation += 1

    async def _changed(self, *keys: str) -> None:
        """A write through this cache changed ``keys``: drop them here, then tell the others."""
        self._apply(list(keys))
        self._counters.invalidations_local += len(keys)
        if self._invalidations is not None:
            await self._invalidations.publish(list(keys))

    async def _write(self, write: Awaitable[T], *keys: str) -> T:
        """Run a write of the wrapped storage, then drop and announce ``keys``. A write that
        failed may still have happened (a timeout after the commit): drop them too, and leave
        the announcement to the background retry rather than wait on a failing backend."""
        try:
            result = await write
        except BaseException:
            self._apply(list(keys))
            self._counters.invalidations_local += len(keys)
            if self._invalidations is not None:
                self._invalidations.retry_later(list(keys))
            raise
        await self._changed(*keys)
        return result

    async def invalidate_all(self) -> None:
        """Drop every entry here and in every other cache on the channel (after writes made
        without a cache, e.g. a restore)."""
        await self._changed(ALL)

    def cache_statistics(self) -> CacheStatistics:
        """What the cache counted so far (see :class:`CacheStatistics`)."""
        c = self._counters
        return CacheStatistics(
            entries=self._entry_count(),
            hits=self._hits,
            negative_hits=self._negative_hits,
            misses=c.misses,
            coalesced=c.coalesced,
            backend_calls=c.backend_calls,
            batches=c.batches,
            batched_keys=c.batched_keys,
            batch_sizes=dict(c.batch_sizes),
            stale_hits=c.stale_hits,
            evictions=c.evictions,
            invalidations_local=c.invalidations_local,
            invalidations_received=c.invalidations_received,
            messages_received=c.messages_received,
            messages_published=c.messages_published,
            publish_failures=c.publish_failures,
            subscribed=self.subscribed,
            subscriptions=c.subscriptions,
            subscription_losses=c.subscription_losses,
            distrusts=c.distrusts,
        )

    # -- the synchronous fast path (SupportsNowaitReads) -----------------------------------

    def get_token_nowait(self, token_id: str) -> AuthToken | Literal[Miss.MISS] | None:
        """The cached answer of :meth:`get_token` if fresh, else ``MISS``; any thread."""
        entries = self._token_entries
        entry = entries.get(token_id)
        if entry is not None and _time() < entry[1]:
            value = entry[0]
            if value is None:
                self._negative_hits += 1
            else:
                self._hits += 1
            # _touch inlined: this is the verify hot path.
            try:  # noqa: SIM105
                entries.move_to_end(token_id)
            except KeyError:  # dropped by another thread meanwhile
                pass
            return value
        return MISS

    def get_session_nowait(self, session_id: str) -> SessionData | Literal[Miss.MISS] | None:
        """The cached answer of :meth:`get_session` if fresh, else ``MISS``; any thread."""
        entries = self._session_entries
        entry = entries.get(session_id)
        if entry is not None and _time() < entry[1]:
            _touch(entries, session_id)
            packed = entry[0]
            if packed is None:
                self._negative_hits += 1
                return None
            self._hits += 1
            return _unpack(packed)
        return MISS

    def get_user_nowait(self, user_id: str) -> UserRecord | Literal[Miss.MISS] | None:
        """The cached answer of :meth:`get_user` if fresh, else ``MISS``; any thread."""
        entries = self._user_entries
        entry = entries.get(user_id)
        if entry is not None and _time() < entry[1]:
            # The verify hot path reads the user too (live roles): no LRU move here, the
            # token read beside it already costs one; a hot user is read again soon anyway.
            return entry[0]
        return MISS

    # -- users -----------------------------------------------------------------------------

    async def create_user(self, user: UserRecord) -> None:
        """Create through the wrapped storage; drop a cached "no such user"."""
        await self._write(self.inner.create_user(user), "u:" + user.user_id)

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The user, from the cache when fresh."""
        entries = self._user_entries
        entry = entries.get(user_id)
        if entry is not None and _time() < entry[1]:
            _touch(entries, user_id)
            if entry[0] is None:
                self._negative_hits += 1
            else:
                self._hits += 1
            return entry[0]
        user = await self._users.miss(user_id)
        self.user_generation += 1  # refilled: the answer may differ from the last one
        return user

    async def update_user(self, user: UserRecord) -> bool:
        """Replace through the wrapped storage; invalidate the user everywhere."""
        return await self._write(self.inner.update_user(user), "u:" + user.user_id)

    async def delete_user(self, user_id: str) -> bool:
        """Delete through the wrapped storage; invalidate the user everywhere."""
        return await self._write(self.inner.delete_user(user_id), "u:" + user_id)

    # -- tokens ----------------------------------------------------------------------------

    async def store_token(self, token: AuthToken) -> None:
        """Store through the wrapped storage; invalidate the token id everywhere."""
        await self._write(self.inner.store_token(token), "t:" + token.token_id)

    async def get_token(self, token_id: str) -> AuthToken | None:
        """The token record, from the cache when fresh."""
        entries = self._token_entries
        entry = entries.get(token_id)
        if entry is not None and _time() < entry[1]:
            _touch(entries, token_id)
            value = entry[0]
            if value is None:
                self._negative_hits += 1
            else:
                self._hits += 1
            return value
        return await self._tokens.miss(token_id)

    async def get_token_and_user(self, token_id: str) -> tuple[AuthToken | None, UserRecord | None]:
        """The token and its owner, each from the cache when fresh (``SupportsOwnerReads``;
        the framework reads through the memory path instead)."""
        token = await self.get_token(token_id)
        return token, None if token is None else await self.get_user(token.user_id)

    async def update_token(self, token: AuthToken) -> bool:
        """Replace through the wrapped storage (a revocation); invalidate it everywhere."""
        return await self._write(self.inner.update_token(token), "t:" + token.token_id)

    async def rotate_token(self, retired: AuthToken, new: AuthToken) -> bool:
        """Rotate through the wrapped storage; invalidate both ids everywhere."""
        return await self._write(
            self.inner.rotate_token(retired, new), "t:" + retired.token_id, "t:" + new.token_id
        )

    async def revoke_token_family(self, user_id: str, family_id: str, until: datetime) -> int:
        """Revoke through the wrapped storage (which serialises it with rotations); invalidate
        every token of the user everywhere (the family's members are not known here)."""
        return await self._write(
            self.inner.revoke_token_family(user_id, family_id, until), "T:" + user_id
        )

    async def delete_token(self, token_id: str) -> bool:
        """Delete through the wrapped storage; invalidate it everywhere."""
        return await self._write(self.inner.delete_token(token_id), "t:" + token_id)

    async def delete_user_tokens(self, user_id: str) -> int:
        """Delete through the wrapped storage; invalidate every token of the user everywhere."""
        return await self._write(self.inner.delete_user_tokens(user_id), "T:" + user_id)

    # -- sessions --------------------------------------------------------------------------

    async def _read_session(self, session_id: str) -> _Packed | None:
        session = await self.inner.get_session(session_id)
        return None if session is None else _pack(session)

    async def _read_sessions(self, session_ids: list[str] | Any) -> list[_Packed | None]:
        assert isinstance(self.inner, BulkLookup)
        found = await self.inner.lookup_sessions(session_ids)
        return [None if s is None else _pack(s) for s in found]

    async def store_session(self, session: SessionData) -> None:
        """Store through the wrapped storage; invalidate the session everywhere."""
        await self._write(self.inner.store_session(session), "s:" + session.session_id)

    async def get_session(self, session_id: str) -> SessionData | None:
        """The session with a fresh copy of its data, from the cache when fresh."""
        entries = self._session_entries
        entry = entries.get(session_id)
        if entry is not None and _time() < entry[1]:
            _touch(entries, session_id)
            packed = entry[0]
            if packed is None:
                self._negative_hits += 1
                return None
            self._hits += 1
        else:
            packed = await self._sessions.miss(session_id)
            if packed is None:
                return None
        return _unpack(packed)

    async def get_session_and_user(
        self, session_id: str
    ) -> tuple[SessionData | None, UserRecord | None]:
        """The session and its owner (None when anonymous), as :meth:`get_token_and_user`."""
        session = await self.get_session(session_id)
        if session is None or session.user_id is None:
            return session, None
        return session, await self.get_user(session.user_id)

    async def touch_session(
        self, session_id: str, last_accessed: datetime, expires_at: datetime
    ) -> bool:
        """Touch through the wrapped storage; invalidate the session everywhere."""
        return await self._write(
            self.inner.touch_session(session_id, last_accessed, expires_at), "s:" + session_id
        )

    async def update_session(self, session: SessionData) -> bool:
        """Update through the wrapped storage (which refuses a session gone meanwhile, so a
        stale cache entry can never make it live again); invalidate the session everywhere."""
        return await self._write(self.inner.update_session(session), "s:" + session.session_id)

    async def delete_session(self, session_id: str) -> bool:
        """Delete through the wrapped storage; invalidate it everywhere."""
        return await self._write(self.inner.delete_session(session_id), "s:" + session_id)

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete through the wrapped storage; invalidate every session of the user everywhere."""
        return await self._write(self.inner.delete_user_sessions(user_id), "S:" + user_id)

    # -- maintenance -----------------------------------------------------------------------

    async def cleanup_expired(self) -> dict[str, int]:
        """The wrapped storage's clean-up, plus ``cache`` (entries no longer servable)."""
        removed = await self.inner.cleanup_expired()
        now = _time()
        removed["cache"] = sum(table.purge(now) for table in self._tables)
        return removed

    async def get_statistics(self) -> StorageStatistics:
        """The wrapped storage's statistics under this storage's name, with the cache's own
        figures in ``extra["cache"]`` (see :class:`CacheStatistics`)."""
        stats = await self.inner.get_statistics()
        stats.backend = self.name
        stats.extra["cache"] = self.cache_statistics().as_dict()
        return stats

    # -- uncached: the wrapped storage answers -----------------------------------------------
    # Key-value entries carry login-failure counters and lockouts, which must be exact; lists,
    # counts, the audit log and the bulk iterators are on no hot path; a refresh token is read
    # once per refresh.

    async def ping(self) -> float:
        """The wrapped storage's ping."""
        return await self.inner.ping()

    async def get_token_by_refresh(self, refresh_id: str) -> AuthToken | None:
        """Not cached (used once per refresh): the wrapped storage's answer."""
        return await self.inner.get_token_by_refresh(refresh_id)

    async def list_user_tokens(self, user_id: str) -> list[AuthToken]:
        """Not cached: the wrapped storage's answer."""
        return await self.inner.list_user_tokens(user_id)

    async def list_user_sessions(self, user_id: str) -> list[SessionData]:
        """Not cached: the wrapped storage's answer."""
        return await self.inner.list_user_sessions(user_id)

    async def count_active_sessions(self) -> int:
        """Not cached: the wrapped storage's answer."""
        return await self.inner.count_active_sessions()

    async def list_users(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        role: str | None = None,
        active: bool | None = None,
    ) -> list[UserRecord]:
        """Not cached (an admin listing): the wrapped storage's answer."""
        return await self.inner.list_users(after=after, limit=limit, role=role, active=active)

    # -- key-value and audit: not cached (counters and lockouts must be exact) --------------

    async def kv_get(self, key: str) -> bytes | None:
        """The wrapped storage's answer."""
        return await self.inner.kv_get(key)

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Stored by the wrapped storage."""
        await self.inner.kv_set(key, value, ttl)

    async def kv_delete(self, key: str) -> bool:
        """Deleted by the wrapped storage."""
        return await self.inner.kv_delete(key)

    async def kv_incr(self, key: str, ttl: float) -> int:
        """Counted by the wrapped storage."""
        return await self.inner.kv_incr(key, ttl)

    async def append_audit(self, event: AuditEvent) -> None:
        """Appended by the wrapped storage."""
        await self.inner.append_audit(event)

    async def query_audit(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """The wrapped storage's answer."""
        return await self.inner.query_audit(
            user_id=user_id, action=action, since=since, until=until, limit=limit
        )

    # -- bulk iteration: straight from the wrapped storage ----------------------------------

    def iter_users(self, batch_size: int = 1000) -> AsyncIterator[list[UserRecord]]:
        """The wrapped storage's iterator."""
        return self.inner.iter_users(batch_size)

    def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list[AuthToken]]:
        """The wrapped storage's iterator."""
        return self.inner.iter_tokens(batch_size)

    def iter_sessions(self, batch_size: int = 1000) -> AsyncIterator[list[SessionData]]:
        """The wrapped storage's iterator."""
        return self.inner.iter_sessions(batch_size)

    def iter_kv(self, batch_size: int = 1000) -> AsyncIterator[list[KVEntry]]:
        """The wrapped storage's iterator."""
        return self.inner.iter_kv(batch_size)

    def iter_audit(self, batch_size: int = 1000) -> AsyncIterator[list[AuditEvent]]:
        """The wrapped storage's iterator."""
        return self.inner.iter_audit(batch_size)
