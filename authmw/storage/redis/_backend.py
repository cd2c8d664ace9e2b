"""RedisStorage: every record in Redis, on one server, behind sentinels, or on a cluster.

The storage is composed of helpers it holds: an executor that runs every command (connecting
on first use), the writes of its mode, the multi-key reads, the importer and the invalidation
channel. Records are JSON strings (sessions: a small hash) whose Redis expiry is the record's
own expiry (the TTL rule of :mod:`authmw.storage.base`); reads check that expiry again on the
client, so a clock difference of a few milliseconds never returns an expired record. Per-user
index sets are sorted sets scored by expiry, pruned on every write. Multi-key writes are Lua
scripts on a single server and ordered single-slot steps on a cluster (``_writes``). The key
layout, what is atomic where, and every option are in ``docs/redis.md``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial

from ..._time import now_ts, seconds, utcnow
from ...errors import ConfigurationError, UserExists
from ...models import AuditEvent, AuthToken, SessionData, StorageStatistics, UserRecord
from ..base import InvalidationChannel, KVEntry
from ._config import RedisConfig
from ._connect import connect
from ._executor import Executor
from ._import import Importer
from ._invalidation import Channel
from ._keys import KeyLayout, ms
from ._reads import Bulk, check_batch, parse_session
from ._scripts import scripts_for
from ._writes import AtomicWrites, SlotWrites

__all__ = ["RedisStorage"]

_MIN_VERSION = (6, 2)  # SET ... PXAT and exclusive XRANGE bounds arrived in 6.2
_AUDIT_PAGE = 500
_DECODED_MAX = 2048  # decoded token records kept, keyed by their exact stored bytes


class RedisStorage:
    """Storage in Redis: ``RedisStorage("redis://...")``, ``RedisStorage.with_config(cfg)``.

    Connects lazily; :meth:`open` checks the server (version, credentials, database) once.
    Every method raises ``StorageUnavailable`` when Redis cannot answer. Besides
    ``AuthStorage`` it offers ``BulkImport``, ``BulkLookup``, ``SupportsInvalidation`` and
    ``SupportsOwnerReads``.
    """

    def __init__(self, config: str | RedisConfig = "redis://localhost:6379") -> None:
        self.config = cfg = RedisConfig.from_url(config) if isinstance(config, str) else config
        self.keys = keys = KeyLayout(cfg.key_prefix)
        self._default_ttl = seconds(cfg.default_ttl, "default_ttl")
        self._x = x = Executor(
            partial(connect, cfg),
            cluster=cfg.is_cluster,
            scripts=scripts_for(cfg.is_cluster),
            attempts=cfg.retry_attempts,
            delay=seconds(cfg.retry_delay, "retry_delay", allow_zero=True),
            concurrency=cfg.pool_size,
            max_waiting=cfg.waiting_bound,
            deadline=seconds(cfg.timeout, "timeout"),
            wait_replicas=cfg.wait_replicas,
            wait_timeout=seconds(cfg.wait_timeout, "wait_timeout"),
        )
        # A cluster cannot run a script over keys in several slots: its writes are ordered steps.
        self._writes = SlotWrites(x, keys) if cfg.is_cluster else AtomicWrites(x, keys)
        self._reads = Bulk(x, keys)
        self._importer = Importer(
            x,
            keys,
            self._reads,
            default_ttl=self._default_ttl,
            max_audit_events=cfg.max_audit_events,
        )
        self._channel = Channel(x, keys.prefix)
        self._opened = False
        # Verifying one token again and again reads the same bytes: decode them once. Any
        # change to a record (a revocation, a role change) changes its bytes, so these never
        # serve stale data.
        self._token_from_json = functools.lru_cache(maxsize=_DECODED_MAX)(AuthToken.from_json)
        self._user = functools.lru_cache(maxsize=_DECODED_MAX)(UserRecord.from_json)

    @classmethod
    def with_config(cls, config: RedisConfig) -> RedisStorage:
        """A storage with these settings."""
        return cls(config)

    @classmethod
    def from_url(cls, url: str) -> RedisStorage:
        """A storage from a URL (see :meth:`RedisConfig.from_url`)."""
        return cls(RedisConfig.from_url(url))

    @property
    def name(self) -> str:
        """``"redis"``."""
        return "redis"

    @property
    def call_timeout(self) -> float | None:
        """The longest one call takes: ``timeout`` (plus ``wait_timeout`` with replicas)."""
        return self._x.deadline

    @property
    def mode(self) -> str:
        """``"standalone"``, ``"sentinel"`` or ``"cluster"``."""
        if self.config.is_cluster:
            return "cluster"
        return "sentinel" if self.config.failover is not None else "standalone"

    def __repr__(self) -> str:
        return f"RedisStorage(mode={self.mode!r}, config={self.config!r})"

    # -- connections -----------------------------------------------------------------------

    async def open(self) -> None:
        """Check the server once: reachable (else ``StorageUnavailable``), credentials and
        database accepted and version at least 6.2 (else ``ConfigurationError``)."""
        if self._opened:
            return
        found = await self._x.probe()
        version = tuple(int(p) for p in found.split(".")[:2])
        if version < _MIN_VERSION:
            raise ConfigurationError(
                f"redis at {self._x.describe} is version {found}; authmw needs 6.2+"
            )
        self._opened = True

    async def close(self) -> None:
        """Release every connection. The storage reconnects if used again."""
        self._opened = False
        await self._x.close()

    async def ping(self) -> float:
        """Round-trip one ``PING``; the latency in seconds."""
        start = time.perf_counter()
        await self._x.read("ping", "PING")
        return time.perf_counter() - start

    # -- users -----------------------------------------------------------------------------

    async def create_user(self, user: UserRecord) -> None:
        """``SET NX``: exactly one of several racing creations wins; ``UserExists`` otherwise."""
        created = await self._x.write(
            "create_user",
            "SET",
            self.keys.user(user.user_id),
            user.to_json(),
            "NX",
            idempotent=False,
        )
        if not created:
            raise UserExists(user.user_id)

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The user, or None."""
        raw = await self._x.read("get_user", "GET", self.keys.user(user_id))
        return None if raw is None else self._user(raw)

    async def update_user(self, user: UserRecord) -> bool:
        """``SET XX``: replaces only an existing user."""
        return bool(
            await self._x.write(
                "update_user", "SET", self.keys.user(user.user_id), user.to_json(), "XX"
            )
        )

    async def delete_user(self, user_id: str) -> bool:
        """Delete the user record."""
        return bool(await self._x.write("delete_user", "DEL", self.keys.user(user_id)))

    async def list_users(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        role: str | None = None,
        active: bool | None = None,
    ) -> list[UserRecord]:
        """A page of users in id order (``SCAN`` of the user keys, sorted here; see
        ``AuthStorage.list_users``)."""
        return await self._reads.user_page(after, limit, role, active)

    # -- tokens ----------------------------------------------------------------------------

    async def store_token(self, token: AuthToken) -> None:
        """Insert or replace a token with its refresh and user index entries."""
        await self._writes.store_token(token, "store")

    async def get_token(self, token_id: str) -> AuthToken | None:
        """One ``GET``: the live token record, or None."""
        raw = await self._x.read("get_token", "GET", self.keys.token(token_id))
        return None if raw is None else self._live_token(raw)

    def _live_token(self, raw: bytes) -> AuthToken | None:
        """The token stored as ``raw`` if it has not expired."""
        token = self._token_from_json(raw)
        return token if token.storage_expires_ts > now_ts() else None

    async def get_token_and_user(self, token_id: str) -> tuple[AuthToken | None, UserRecord | None]:
        """The live token and its owner: one script on a single server; on a cluster, where
        the two keys live in different slots, ``get_token`` then ``get_user``."""
        if self.config.is_cluster:
            token = await self.get_token(token_id)
            return token, None if token is None else await self.get_user(token.user_id)
        got = await self._x.read_script(
            "get_token", "token_owner", [self.keys.token(token_id)], [self.keys.user_open]
        )
        token = None if not got else self._live_token(got[0])
        if token is None:
            return None, None
        raw_user = got[1] if len(got) > 1 else None
        return token, None if raw_user is None else self._user(raw_user)

    async def get_token_by_refresh(self, refresh_id: str) -> AuthToken | None:
        """Follow the refresh index, then check the token still names this refresh id."""
        token_id = await self._x.read("get_token_by_refresh", "GET", self.keys.refresh(refresh_id))
        if token_id is None:
            return None
        token = await self.get_token(token_id.decode())
        return token if token is not None and token.refresh_id == refresh_id else None

    async def update_token(self, token: AuthToken) -> bool:
        """Replace an existing token record."""
        return await self._writes.store_token(token, "update")

    async def rotate_token(self, retired: AuthToken, new: AuthToken) -> bool:
        """Compare-and-set: retire ``retired`` unless already revoked, then store ``new``."""
        return await self._writes.rotate_token(retired, new)

    async def revoke_token_family(self, user_id: str, family_id: str, until: datetime) -> int:
        """Set the family's mark (``SET ... PXAT until``), then revoke each live member the
        user's index lists: a rotation checks the mark atomically with its write (on a
        cluster, after it), so none of the family outlives this call."""
        until_ms = ms(until.timestamp())
        if until_ms > ms(now_ts()):
            await self._x.write(
                "revoke_token_family", "SET", self.keys.family(family_id), "1", "PXAT", until_ms
            )
        revoked_at, count = utcnow(), 0
        for token in await self.list_user_tokens(user_id):
            if token.family_id != family_id or token.is_revoked:
                continue
            gone = replace(token, revoked_at=revoked_at, revoke_reason="family_revoked")
            count += await self._writes.store_token(gone, "update")
        return count

    async def delete_token(self, token_id: str) -> bool:
        """Delete a token record and its index entries."""
        return await self._writes.delete_token(token_id)

    async def list_user_tokens(self, user_id: str) -> list[AuthToken]:
        """The user's live tokens, from the user's index."""
        reads = self._reads
        ids = await reads.live_members("list_user_tokens", self.keys.user_tokens(user_id))
        tokens = await reads.tokens("list_user_tokens", [self.keys.token(i.decode()) for i in ids])
        return [t for t in tokens if t.user_id == user_id]

    async def delete_user_tokens(self, user_id: str) -> int:
        """Delete every token of the user; how many were live."""
        return await self._writes.delete_user_tokens(user_id)

    # -- sessions --------------------------------------------------------------------------

    async def store_session(self, session: SessionData) -> None:
        """Insert or replace a session (``TypeError`` for non-JSON data, nothing stored)."""
        await self._writes.store_session(session)

    async def get_session(self, session_id: str) -> SessionData | None:
        """The live session with a fresh copy of its data, or None."""
        got = await self._x.read(
            "get_session", "HMGET", self.keys.session(session_id), "d", "la", "ex"
        )
        return parse_session(got, now_ts())

    async def get_session_and_user(
        self, session_id: str
    ) -> tuple[SessionData | None, UserRecord | None]:
        """The live session and its owner (None when anonymous), as
        :meth:`get_token_and_user` reads them."""
        if self.config.is_cluster:
            session = await self.get_session(session_id)
            if session is None or session.user_id is None:
                return session, None
            return session, await self.get_user(session.user_id)
        got = await self._x.read_script(
            "get_session", "session_owner", [self.keys.session(session_id)], [self.keys.user_open]
        )
        session = parse_session(got[:3], now_ts())
        if session is None or session.user_id is None or got[3] is None:
            return session, None
        return session, self._user(got[3])

    async def touch_session(
        self, session_id: str, last_accessed: datetime, expires_at: datetime
    ) -> bool:
        """Move the access time and expiry (record, key TTL and index score)."""
        return await self._writes.touch_session(
            session_id, last_accessed.isoformat(), expires_at.isoformat(), expires_at.timestamp()
        )

    async def update_session(self, session: SessionData) -> bool:
        """Write data, access time and expiry of a session that still exists (one script
        checks and writes); False, nothing written, when it is gone."""
        return await self._writes.update_session(session)

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session and its index entry."""
        return await self._writes.delete_session(session_id)

    async def list_user_sessions(self, user_id: str) -> list[SessionData]:
        """The user's live sessions, from the user's index."""
        reads = self._reads
        ids = await reads.live_members("list_user_sessions", self.keys.user_sessions(user_id))
        sessions = await reads.sessions(
            "list_user_sessions", [self.keys.session(i.decode()) for i in ids]
        )
        return [s for s in sessions if s.user_id == user_id]

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete every session of the user; how many were live."""
        return await self._writes.delete_user_sessions(user_id)

    async def count_active_sessions(self) -> int:
        """Live sessions, counted with ``SCAN`` (never ``KEYS``)."""
        return await self._reads.count("count_active_sessions", self.keys.session_open)

    # -- key-value -------------------------------------------------------------------------

    async def kv_get(self, key: str) -> bytes | None:
        """The live value, or None."""
        value: bytes | None = await self._x.read("kv_get", "GET", self.keys.kv(key))
        return value

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """``SET PX``: bytes for ``ttl`` seconds (default ``default_ttl``)."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"kv values are bytes, got {type(value).__name__}")
        life = self._default_ttl if ttl is None else seconds(ttl, "ttl")
        await self._x.write(
            "kv_set", "SET", self.keys.kv(key), bytes(value), "PX", max(1, round(life * 1000))
        )

    async def kv_delete(self, key: str) -> bool:
        """Delete a key."""
        return bool(await self._x.write("kv_delete", "DEL", self.keys.kv(key)))

    async def kv_incr(self, key: str, ttl: float) -> int:
        """``INCR``, and the window's expiry on the first increment (one script)."""
        window = max(1, round(seconds(ttl, "ttl") * 1000))
        return int(
            await self._x.script(
                "kv_incr", "kv_incr", [self.keys.kv(key)], [window], idempotent=False
            )
        )

    # -- audit log -------------------------------------------------------------------------

    async def append_audit(self, event: AuditEvent) -> None:
        """``XADD`` to the audit stream, trimmed near ``max_audit_events``."""
        await self._x.write(
            "append_audit",
            "XADD",
            self.keys.audit,
            "MAXLEN",
            "~",
            self.config.max_audit_events,
            "*",
            "e",
            event.to_json(),
            idempotent=False,
        )

    async def query_audit(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Matching events, newest first (the stream read backwards, page by page)."""
        found: list[AuditEvent] = []
        high = "+"
        while len(found) < limit:
            page = await self._x.read(
                "query_audit", "XREVRANGE", self.keys.audit, high, "-", "COUNT", _AUDIT_PAGE
            )
            for _, fields in page:
                event = AuditEvent.from_json(fields[b"e"])
                if (
                    (user_id is None or event.user_id == user_id)
                    and (action is None or event.action == action)
                    and (since is None or event.timestamp >= since)
                    and (until is None or event.timestamp <= until)
                ):
                    found.append(event)
                    if len(found) >= limit:
                        break
            if len(page) < _AUDIT_PAGE:
                break
            high = "(" + page[-1][0].decode()
        return found

    # -- maintenance -----------------------------------------------------------------------

    async def cleanup_expired(self) -> dict[str, int]:
        """Prune expired members from every per-user index (Redis expires the records
        themselves): ``tokens``/``sessions`` count the index entries removed."""
        return await self._reads.cleanup()

    async def get_statistics(self) -> StorageStatistics:
        """Live records counted in one ``SCAN`` pass; ``memory_bytes`` estimated from
        ``MEMORY USAGE`` samples of each kind of key; the server's total in ``extra``."""
        return await self._reads.statistics(self.name, self.mode)

    # -- bulk iteration --------------------------------------------------------------------

    async def iter_users(self, batch_size: int = 1000) -> AsyncIterator[list[UserRecord]]:
        """Every user, in batches (``SCAN``)."""
        reads = self._reads
        async for batch in reads.records(
            "iter_users", self.keys.user_open, batch_size, reads.users
        ):
            yield batch

    async def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list[AuthToken]]:
        """Every live token, in batches (``SCAN``)."""
        reads = self._reads
        async for batch in reads.records(
            "iter_tokens", self.keys.token_open, batch_size, reads.tokens
        ):
            yield batch

    async def iter_sessions(self, batch_size: int = 1000) -> AsyncIterator[list[SessionData]]:
        """Every live session, in batches (``SCAN``)."""
        reads = self._reads
        async for batch in reads.records(
            "iter_sessions", self.keys.session_open, batch_size, reads.sessions
        ):
            yield batch

    async def iter_kv(self, batch_size: int = 1000) -> AsyncIterator[list[KVEntry]]:
        """Every live key-value entry with its expiry, in batches (``SCAN``)."""
        reads = self._reads
        async for batch in reads.records("iter_kv", self.keys.kv_open, batch_size, reads.kv):
            yield batch

    async def iter_audit(self, batch_size: int = 1000) -> AsyncIterator[list[AuditEvent]]:
        """Every audit event, oldest first (``XRANGE`` pages)."""
        check_batch(batch_size)
        low = "-"
        while True:
            page = await self._x.read(
                "iter_audit", "XRANGE", self.keys.audit, low, "+", "COUNT", batch_size
            )
            if page:
                yield [AuditEvent.from_json(fields[b"e"]) for _, fields in page]
            if len(page) < batch_size:
                return
            low = "(" + page[-1][0].decode()

    # -- batch import and lookup (BulkImport, BulkLookup) ------------------------------------

    @property
    def audit_ids_unique(self) -> bool:
        """False: the audit stream does not index event ids."""
        return False

    async def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """``SET NX`` per user, pipelined."""
        return await self._importer.import_users(batch)

    async def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """Each live token whose id (and refresh id) is free, with its indexes."""
        return await self._importer.import_tokens(batch)

    async def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """Each live session whose id is free, with its user index entry."""
        return await self._importer.import_sessions(batch)

    async def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """``SET NX PXAT`` per entry, pipelined; already expired entries are not written."""
        return await self._importer.import_kv(batch, default_ttl)

    async def import_audit(self, batch: Sequence[AuditEvent]) -> list[bool]:
        """``XADD`` per event, pipelined (the caller deduplicates)."""
        return await self._importer.import_audit(batch)

    async def lookup_users(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        """``MGET`` of the user keys."""
        return await self._importer.lookup_users(user_ids)

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """``MGET`` of the token keys; expired records read as None."""
        return await self._importer.lookup_tokens(token_ids)

    async def lookup_sessions(self, session_ids: Sequence[str]) -> list[SessionData | None]:
        """``HMGET`` per session, pipelined."""
        return await self._importer.lookup_sessions(session_ids)

    async def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """``GET`` and ``PTTL`` per key, pipelined."""
        return await self._importer.lookup_kv(keys)

    # -- cache invalidation (SupportsInvalidation) --------------------------------------------

    def invalidation_channel(self) -> InvalidationChannel:
        """Pub/sub on ``<key_prefix>invalidate`` (see :mod:`authmw.storage.cached`)."""
        return self._channel
