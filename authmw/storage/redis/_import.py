"""Batch import and lookup for :class:`authmw.storage.redis.RedisStorage` (migration, restore).

Semantics in :mod:`authmw.storage.base`: insert-if-absent, one boolean per record.

* Users, key-value entries and audit events are single keys: one pipeline of ``SET ... NX``
  (``XADD``) per page, on a single server and on a cluster alike, acknowledged by
  ``wait_replicas`` replicas like every write.
* Tokens and sessions come with index entries in other keys. On a single server one Lua
  script per page checks that each record is absent and writes it with its indexes, atomically.
  On a cluster each record goes through single-slot steps in the order the backend's own
  writes use (index raised before the record, lowered after a refused insert), many records
  at a time.

Every import is idempotent, so the executor may repeat it after a lost connection. Scripts
come from the one registry (:mod:`._scripts`) and run through the executor like every other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..._time import from_ts, now_ts
from ...models import AuditEvent, AuthToken, SessionData, UserRecord
from ..base import KVEntry
from ._executor import Executor
from ._keys import KeyLayout, ms
from ._reads import Bulk, parse_session

__all__ = ["Importer"]

_PAGE = 250  # records per script call or pipeline: keeps each server-side step short


def _pages(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + _PAGE] for i in range(0, len(items), _PAGE)]


class Importer:
    """``BulkImport`` and ``BulkLookup`` of the Redis backend, over its executor and reads."""

    def __init__(
        self,
        x: Executor,
        keys: KeyLayout,
        reads: Bulk,
        *,
        default_ttl: float,
        max_audit_events: int,
    ) -> None:
        self.x = x
        self.keys = keys
        self.reads = reads
        self.default_ttl = default_ttl
        self.max_audit_events = max_audit_events

    async def _pipeline(self, op: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        out: list[Any] = []
        for page in _pages(commands):
            out.extend(await self.x.pipeline(op, page, writes=True))
        return out

    async def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """``SET NX`` per user, pipelined."""
        got = await self._pipeline(
            "import_users", [("SET", self.keys.user(u.user_id), u.to_json(), "NX") for u in batch]
        )
        return [bool(g) for g in got]

    async def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """``SET NX PXAT`` per entry, pipelined; already expired entries are not written."""
        now = now_ts()
        commands: list[tuple[Any, ...]] = []
        live: list[int] = []
        for i, entry in enumerate(batch):
            if default_ttl or entry.expires_at is None:
                expires = now + self.default_ttl
            else:
                expires = entry.expires_at.timestamp()
            if ms(expires) > ms(now):
                live.append(i)
                commands.append(
                    ("SET", self.keys.kv(entry.key), bytes(entry.value), "NX", "PXAT", ms(expires))
                )
        out = [False] * len(batch)
        for i, done in zip(live, await self._pipeline("import_kv", commands), strict=True):
            out[i] = bool(done)
        return out

    async def import_audit(self, batch: Sequence[AuditEvent]) -> list[bool]:
        """``XADD`` per event, pipelined (the caller deduplicates)."""
        await self._pipeline(
            "import_audit",
            [
                (
                    "XADD",
                    self.keys.audit,
                    "MAXLEN",
                    "~",
                    self.max_audit_events,
                    "*",
                    "e",
                    event.to_json(),
                )
                for event in batch
            ],
        )
        return [True] * len(batch)

    async def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """Each live token whose id (and refresh id) is free, with its indexes."""
        x, k = self.x, self.keys
        out: list[bool] = []
        if x.cluster:
            return list(await asyncio.gather(*(self._cluster_token(t) for t in batch)))
        for page in _pages(batch):
            keys: list[str] = []
            args: list[Any] = [ms(now_ts()), k.refresh_open]
            for t in page:
                rid = t.refresh_id or ""
                keys += [
                    k.token(t.token_id),
                    k.user_tokens(t.user_id),
                    k.refresh(rid) if rid else k.token(t.token_id),
                ]
                args += [t.stored().to_json(), t.token_id, ms(t.storage_expires_ts), rid]
            got = await x.script("import_tokens", "import_tokens", keys, args)
            out.extend(bool(g) for g in got)
        return out

    async def _cluster_token(self, t: AuthToken) -> bool:
        x, k, op = self.x, self.keys, "import_tokens"
        index, exp = k.user_tokens(t.user_id), ms(t.storage_expires_ts)
        if exp <= ms(now_ts()):
            return False
        if t.refresh_id:
            # A refresh selector held by another live token is a conflict (checked, not
            # locked: the keys live in different slots).
            holder = await x.read(op, "GET", k.refresh(t.refresh_id))
            if (
                holder is not None
                and holder.decode() != t.token_id
                and await x.read(op, "EXISTS", k.token(holder.decode()))
            ):
                return False
        state = int(await x.script(op, "idx_raise", [index], [t.token_id, exp, ms(now_ts())]))
        done = await x.write(
            op, "SET", k.token(t.token_id), t.stored().to_json(), "NX", "PXAT", exp
        )
        if done and t.refresh_id:
            await x.script(
                op, "ref_set", [k.refresh(t.refresh_id)], [t.token_id, exp, ms(now_ts())]
            )
        if not done and state == 2:
            # Keep the entry when the record there is this user's (a retried SET NX that had
            # in fact succeeded reads as refused); drop it when the id belongs to another user.
            raw = await x.read(op, "GET", k.token(t.token_id))
            if raw is not None and AuthToken.from_json(raw).user_id == t.user_id:
                state = 0
        await self._settle(op, index, t.token_id, exp, bool(done), state)
        return bool(done)

    async def _settle(
        self, op: str, index: str, member: str, exp: int, done: bool, state: int
    ) -> None:
        """The index entry after an insert: its exact score if the record was written under a
        higher one (state 1), gone if the entry was added for a refused record (state 2)."""
        if done and state == 1:
            await self.x.script(op, "idx_set", [index], [member, exp, ms(now_ts())])
        elif not done and state == 2:
            await self.x.script(op, "idx_rem", [index], [ms(now_ts()), member])

    async def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """Each live session whose id is free, with its user index entry."""
        x, k = self.x, self.keys
        out: list[bool] = []
        # Serialise first: non-JSON data raises TypeError before anything is written.
        fields = [
            (s.to_json(), s.last_accessed.isoformat(), s.expires_at.isoformat()) for s in batch
        ]
        if x.cluster:
            return list(
                await asyncio.gather(
                    *(self._cluster_session(s, f) for s, f in zip(batch, fields, strict=True))
                )
            )
        for start in range(0, len(batch), _PAGE):
            page = batch[start : start + _PAGE]
            keys: list[str] = []
            args: list[Any] = [ms(now_ts())]
            for s, (data, la, ex) in zip(page, fields[start : start + _PAGE], strict=True):
                uid = s.user_id or ""  # anonymous: the empty user id's index (see _writes)
                keys += [k.session(s.session_id), k.user_sessions(uid)]
                args += [data, la, ex, uid, s.session_id, ms(s.expires_ts)]
            got = await x.script("import_sessions", "import_sessions", keys, args)
            out.extend(bool(g) for g in got)
        return out

    async def _cluster_session(self, s: SessionData, f: tuple[str, str, str]) -> bool:
        x, k, op = self.x, self.keys, "import_sessions"
        uid = s.user_id or ""  # anonymous: the empty user id's index (see _writes)
        index, exp = k.user_sessions(uid), ms(s.expires_ts)
        if exp <= ms(now_ts()):
            return False
        state = int(await x.script(op, "idx_raise", [index], [s.session_id, exp, ms(now_ts())]))
        done = await x.script(
            op, "ses_add", [k.session(s.session_id)], [*f, uid, exp, ms(now_ts())]
        )
        if not done and state == 2:
            owner = await x.read(op, "HGET", k.session(s.session_id), "u")
            if owner is not None and owner.decode() == uid:
                state = 0
        await self._settle(op, index, s.session_id, exp, bool(done), state)
        return bool(done)

    async def lookup_users(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        """``MGET`` of the user keys."""
        raws = await self.reads.mget("lookup_users", [self.keys.user(u) for u in user_ids])
        return [None if r is None else UserRecord.from_json(r) for r in raws]

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """``MGET`` of the token keys; expired records read as None."""
        raws = await self.reads.mget("lookup_tokens", [self.keys.token(t) for t in token_ids])
        now = now_ts()
        out: list[AuthToken | None] = []
        for raw in raws:
            token = None if raw is None else AuthToken.from_json(raw)
            out.append(token if token is not None and token.storage_expires_ts > now else None)
        return out

    async def lookup_sessions(self, session_ids: Sequence[str]) -> list[SessionData | None]:
        """``HMGET`` per session, pipelined."""
        got = await self.reads.pipeline(
            "lookup_sessions",
            [("HMGET", self.keys.session(s), "d", "la", "ex") for s in session_ids],
        )
        now = now_ts()
        return [parse_session(g, now) for g in got]

    async def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """``GET`` and ``PTTL`` per key, pipelined."""
        got = await self.reads.pipeline(
            "lookup_kv",
            [c for key in keys for c in (("GET", self.keys.kv(key)), ("PTTL", self.keys.kv(key)))],
        )
        now = now_ts()
        out: list[KVEntry | None] = []
        for key, value, pttl in zip(keys, got[::2], got[1::2], strict=True):
            if value is None or pttl == -2:
                out.append(None)
            else:
                out.append(KVEntry(key, value, from_ts(now + pttl / 1000) if pttl >= 0 else None))
        return out
