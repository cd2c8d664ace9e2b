"""Batch import and lookup for :class:`authmw.storage.redis.RedisStorage` (migration, restore).

Semantics in :mod:`authmw.storage.base`: insert-if-absent, one boolean per record.

* Users, key-value entries and audit events are single keys: one pipeline of ``SET ... NX``
  (``XADD``) per page, on a single server and on a cluster alike.
* Tokens and sessions come with index entries in other keys. On a single server one Lua
  script per page checks that each record is absent and writes it with its indexes, atomically.
  On a cluster each record goes through single-slot steps in the order the backend's own
  writes use (index raised before the record, lowered after a refused insert), many records
  at a time.

Every import is idempotent, so the executor may repeat it after a lost connection.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from ..._time import from_ts, now_ts
from ...models import AuditEvent, AuthToken, SessionData, UserRecord
from ..base import KVEntry
from ._config import RedisConfig
from ._executor import Executor
from ._keys import KeyLayout
from ._reads import Bulk, parse_session
from ._scripts import _LIBRARY, SLOT
from ._writes import ms

__all__ = ["RedisBulkMixin"]

_PAGE = 250  # records per script call or pipeline: keeps each server-side step short

_IMPORT_TOKENS = r"""
-- KEYS: (token, user index, refresh index) per token
-- ARGV: now, refopen, then (json, tid, exp, rid) per token -> {1|0 per token}
local now, refopen, out = ARGV[1], ARGV[2], {}
for i = 0, #KEYS / 3 - 1 do
  local tkey, uidx, rkey = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local json, tid, exp, rid = ARGV[4 * i + 3], ARGV[4 * i + 4], ARGV[4 * i + 5], ARGV[4 * i + 6]
  local ok = 0
  if num(exp) > num(now) and redis.call('EXISTS', tkey) == 0 then
    local holder = rid ~= '' and redis.call('GET', rkey)
    if not holder or holder == tid then
      tok_store(tkey, uidx, rkey, json, tid, exp, now, rid, refopen)
      ok = 1
    end
  end
  out[i + 1] = ok
end
return out
"""

_IMPORT_SESSIONS = r"""
-- KEYS: (session, user index) per session
-- ARGV: now, then (json, la, ex, uid, sid, exp) per session -> {1|0 per session}
local now, out = ARGV[1], {}
for i = 0, #KEYS / 2 - 1 do
  local skey, uidx = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local a = 6 * i + 1
  local ok = 0
  if num(ARGV[a + 6]) > num(now) and redis.call('EXISTS', skey) == 0 then
    idx_set(uidx, ARGV[a + 5], ARGV[a + 6], now)
    ses_put(skey, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 6], now)
    ok = 1
  end
  out[i + 1] = ok
end
return out
"""

# Cluster steps, one hash slot each.
_SES_ADD = r"""
-- KEYS: session | ARGV: json, la, ex, uid, exp, now -> 1 written, 0 already there
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
ses_put(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"""

_IDX_SETTLE = r"""
-- KEYS: index | ARGV: member, score, now, keep ('1': set the exact score, '0': remove)
if ARGV[4] == '1' then idx_set(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
else redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""

_REF_ADD = r"""
-- KEYS: refresh index | ARGV: tid, exp, now
put_string(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
"""

_SOURCES = {
    name: _LIBRARY + body
    for name, body in {
        "import_tokens": _IMPORT_TOKENS,
        "import_sessions": _IMPORT_SESSIONS,
        "ses_add": _SES_ADD,
        "idx_settle": _IDX_SETTLE,
        "ref_add": _REF_ADD,
    }.items()
}
# The cluster import raises index scores exactly as the backend's own cluster writes do.
_SOURCES["idx_raise"] = SLOT["idx_raise"]
_SHAS = {name: hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest()
         for name, src in _SOURCES.items()}


async def _eval(x: Executor, op: str, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Run one of this module's scripts through the executor (retries, errors, ``WAIT``)."""
    command = ("EVALSHA", _SHAS[name], len(keys), *keys, *args)

    async def run() -> Any:
        try:
            return await x._write(*command)
        except NoScriptError:  # not loaded yet on this server (or it restarted)
            await x.client.script_load(_SOURCES[name])
            return await x._write(*command)

    return await x.call(op, run)


def _pages(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + _PAGE] for i in range(0, len(items), _PAGE)]


class RedisBulkMixin:
    """``BulkImport`` and ``BulkLookup`` for the Redis backend."""

    # Provided by RedisStorage.
    keys: KeyLayout
    config: RedisConfig
    _default_ttl: float

    @property
    def _x(self) -> Executor:  # pragma: no cover - RedisStorage's property wins
        raise NotImplementedError

    @property
    def audit_ids_unique(self) -> bool:
        """False: the audit stream does not index event ids."""
        return False

    async def _pipeline(self, op: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        x = self._x
        wait = x._wait if not x.cluster else 0
        out: list[Any] = []
        for page in _pages(commands):
            # WAIT rides at the end of the page's pipeline: it covers that connection's writes.
            extra = [("WAIT", wait, x._wait_ms)] if wait else []
            got = await Bulk(x, self.keys).pipeline(op, [*page, *extra])
            out.extend(got[:len(page)])
        return out

    async def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """``SET NX`` per user, pipelined."""
        got = await self._pipeline("import_users", [
            ("SET", self.keys.user(u.user_id), u.to_json(), "NX") for u in batch])
        return [bool(g) for g in got]

    async def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """``SET NX PXAT`` per entry, pipelined; already expired entries are not written."""
        now = now_ts()
        commands: list[tuple[Any, ...]] = []
        live: list[int] = []
        for i, entry in enumerate(batch):
            if default_ttl or entry.expires_at is None:
                expires = now + self._default_ttl
            else:
                expires = entry.expires_at.timestamp()
            if ms(expires) > ms(now):
                live.append(i)
                commands.append(("SET", self.keys.kv(entry.key), bytes(entry.value), "NX",
                                 "PXAT", ms(expires)))
        out = [False] * len(batch)
        for i, done in zip(live, await self._pipeline("import_kv", commands), strict=True):
            out[i] = bool(done)
        return out

    async def import_audit(self, batch: Sequence[AuditEvent]) -> list[bool]:
        """``XADD`` per event, pipelined (the caller deduplicates)."""
        await self._pipeline("import_audit", [
            ("XADD", self.keys.audit, "MAXLEN", "~", self.config.max_audit_events, "*",
             "e", event.to_json()) for event in batch])
        return [True] * len(batch)

    async def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """Each live token whose id (and refresh id) is free, with its indexes."""
        x, k = self._x, self.keys
        out: list[bool] = []
        if x.cluster:
            return list(await asyncio.gather(*(self._cluster_token(t) for t in batch)))
        for page in _pages(batch):
            keys: list[str] = []
            args: list[Any] = [ms(now_ts()), k.refresh_open]
            for t in page:
                rid = t.refresh_id or ""
                keys += [k.token(t.token_id), k.user_tokens(t.user_id),
                         k.refresh(rid) if rid else k.token(t.token_id)]
                args += [t.stored().to_json(), t.token_id, ms(t.storage_expires_ts), rid]
            got = await _eval(x, "import_tokens", "import_tokens", keys, args)
            out.extend(bool(g) for g in got)
        return out

    async def _cluster_token(self, t: AuthToken) -> bool:
        x, k, op = self._x, self.keys, "import_tokens"
        index, exp = k.user_tokens(t.user_id), ms(t.storage_expires_ts)
        if exp <= ms(now_ts()):
            return False
        if t.refresh_id:
            # A refresh selector held by another live token is a conflict (checked, not
            # locked: the keys live in different slots).
            holder = await x.read(op, "GET", k.refresh(t.refresh_id))
            if holder is not None and holder.decode() != t.token_id \
                    and await x.read(op, "EXISTS", k.token(holder.decode())):
                return False
        state = int(await _eval(x, op, "idx_raise", [index], [t.token_id, exp, ms(now_ts())]))
        done = await x.call(op, x._write, "SET", k.token(t.token_id), t.stored().to_json(),
                            "NX", "PXAT", exp)
        if done and t.refresh_id:
            await _eval(x, op, "ref_add", [k.refresh(t.refresh_id)],
                        [t.token_id, exp, ms(now_ts())])
        if not done and state == 2:
            # Keep the entry when the record there is this user's (a retried SET NX that had
            # in fact succeeded reads as refused); drop it when the id belongs to another user.
            raw = await x.read(op, "GET", k.token(t.token_id))
            if raw is not None and AuthToken.from_json(raw).user_id == t.user_id:
                state = 0
        if (done and state == 1) or (not done and state == 2):
            await _eval(x, op, "idx_settle", [index],
                        [t.token_id, exp, ms(now_ts()), "1" if done else "0"])
        return bool(done)

    async def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """Each live session whose id is free, with its user index entry."""
        x, k = self._x, self.keys
        out: list[bool] = []
        # Serialise first: non-JSON data raises TypeError before anything is written.
        fields = [(s.to_json(), s.last_accessed.isoformat(), s.expires_at.isoformat())
                  for s in batch]
        if x.cluster:
            return list(await asyncio.gather(*(
                self._cluster_session(s, f) for s, f in zip(batch, fields, strict=True))))
        for start in range(0, len(batch), _PAGE):
            page = batch[start:start + _PAGE]
            keys: list[str] = []
            args: list[Any] = [ms(now_ts())]
            for s, (data, la, ex) in zip(page, fields[start:start + _PAGE], strict=True):
                keys += [k.session(s.session_id), k.user_sessions(s.user_id)]
                args += [data, la, ex, s.user_id, s.session_id, ms(s.expires_ts)]
            got = await _eval(x, "import_sessions", "import_sessions", keys, args)
            out.extend(bool(g) for g in got)
        return out

    async def _cluster_session(self, s: SessionData, f: tuple[str, str, str]) -> bool:
        x, k, op = self._x, self.keys, "import_sessions"
        index, exp = k.user_sessions(s.user_id), ms(s.expires_ts)
        if exp <= ms(now_ts()):
            return False
        state = int(await _eval(x, op, "idx_raise", [index], [s.session_id, exp, ms(now_ts())]))
        done = await _eval(x, op, "ses_add", [k.session(s.session_id)],
                           [*f, s.user_id, exp, ms(now_ts())])
        if not done and state == 2:
            owner = await x.read(op, "HGET", k.session(s.session_id), "u")
            if owner is not None and owner.decode() == s.user_id:
                state = 0
        if (done and state == 1) or (not done and state == 2):
            await _eval(x, op, "idx_settle", [index],
                        [s.session_id, exp, ms(now_ts()), "1" if done else "0"])
        return bool(done)

    async def lookup_users(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        """``MGET`` of the user keys."""
        raws = await Bulk(self._x, self.keys).mget(
            "lookup_users", [self.keys.user(u) for u in user_ids])
        return [None if r is None else UserRecord.from_json(r) for r in raws]

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """``MGET`` of the token keys; expired records read as None."""
        raws = await Bulk(self._x, self.keys).mget(
            "lookup_tokens", [self.keys.token(t) for t in token_ids])
        now = now_ts()
        out: list[AuthToken | None] = []
        for raw in raws:
            token = None if raw is None else AuthToken.from_json(raw)
            out.append(token if token is not None and token.storage_expires_ts > now else None)
        return out

    async def lookup_sessions(self, session_ids: Sequence[str]) -> list[SessionData | None]:
        """``HMGET`` per session, pipelined."""
        got = await Bulk(self._x, self.keys).pipeline("lookup_sessions", [
            ("HMGET", self.keys.session(s), "d", "la", "ex") for s in session_ids])
        now = now_ts()
        return [parse_session(g, now) for g in got]

    async def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """``GET`` and ``PTTL`` per key, pipelined."""
        got = await Bulk(self._x, self.keys).pipeline("lookup_kv", [
            c for key in keys for c in (("GET", self.keys.kv(key)), ("PTTL", self.keys.kv(key)))])
        now = now_ts()
        out: list[KVEntry | None] = []
        for key, value, pttl in zip(keys, got[::2], got[1::2], strict=True):
            if value is None or pttl == -2:
                out.append(None)
            else:
                out.append(KVEntry(key, value, from_ts(now + pttl / 1000) if pttl >= 0 else None))
        return out
