"""Reads over many keys for the Redis backend: paged ``MGET``/pipelines, ``SCAN`` without
duplicates, the bulk iterators, counting, index clean-up and statistics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..._time import from_ts, now_ts
from ...models import AuthToken, SessionData, StorageStatistics, UserRecord
from .._users import matches
from ..base import KVEntry
from ._executor import Executor
from ._keys import KeyLayout, glob_escape, ms

__all__ = ["Bulk", "parse_session"]

T = TypeVar("T")

_PAGE = 500  # keys fetched per MGET/pipeline round trip
_SCAN_COUNT = 1000
_SAMPLES = 16  # keys per kind measured with MEMORY USAGE for the memory estimate
_KINDS = (
    "token",
    "refresh",
    "marker",
    "session",
    "user",
    "index",
    "kv",
    "family",
    "audit",
    "other",
)


def parse_session(got: Sequence[bytes | None], now: float) -> SessionData | None:
    """A live session from ``HMGET key d la ex``, or None."""
    data_json, last_accessed, expires_at = got
    if data_json is None or last_accessed is None or expires_at is None:
        return None
    fields = json.loads(data_json.decode())  # str: json.loads would sniff the encoding
    fields["last_accessed"] = last_accessed.decode()
    fields["expires_at"] = expires_at.decode()
    session = SessionData.from_dict(fields)
    return session if session.expires_ts > now else None


def check_batch(batch_size: int) -> None:
    """``ValueError`` for a batch size below one (as every backend)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")


class Bulk:
    """Multi-key reads through one :class:`Executor`."""

    def __init__(self, x: Executor, keys: KeyLayout) -> None:
        self.x = x
        self.k = keys

    async def live_members(self, op: str, index: str) -> list[bytes]:
        """Members of an index sorted set whose expiry is still ahead."""
        found: list[bytes] = await self.x.read(
            op, "ZRANGEBYSCORE", index, f"({ms(now_ts())}", "+inf"
        )
        return found

    async def mget(self, op: str, keys: Sequence[str | bytes]) -> list[bytes | None]:
        """Values of ``keys`` (a cluster splits the read per slot)."""
        out: list[bytes | None] = []
        for start in range(0, len(keys), _PAGE):
            out.extend(await self.x.mget(op, keys[start : start + _PAGE]))
        return out

    async def pipeline(self, op: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in pipelines of :data:`_PAGE` (not transactions)."""
        out: list[Any] = []
        for start in range(0, len(commands), _PAGE):
            out.extend(await self.x.pipeline(op, commands[start : start + _PAGE]))
        return out

    async def scan(self, op: str, pattern: str) -> AsyncIterator[list[bytes]]:
        """Batches of distinct keys matching ``pattern`` (on every primary of a cluster)."""
        seen: set[bytes] = set()
        async for keys in self.x.scan(op, pattern, _SCAN_COUNT):
            fresh = [k for k in keys if k not in seen]  # SCAN may return a key twice
            seen.update(fresh)
            if fresh:
                yield fresh

    async def records(
        self,
        op: str,
        opening: str,
        batch_size: int,
        load: Callable[[str, list[bytes]], Awaitable[list[T]]],
    ) -> AsyncIterator[list[T]]:
        """Every record of one namespace, loaded and re-batched to ``batch_size``."""
        check_batch(batch_size)
        pending: list[T] = []
        async for keys in self.scan(op, self.k.pattern(opening)):
            pending.extend(await load(op, keys))
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending:
            yield pending

    async def user_page(
        self, after: str | None, limit: int, role: str | None, active: bool | None
    ) -> list[UserRecord]:
        """A page of ``list_users``: every user key is listed (``SCAN``: Redis keeps no
        ordered index, and one index key could not change atomically with the user keys of
        other cluster slots), the ids above ``after`` sorted, then records read in pages
        until ``limit`` pass the filters. One ``SCAN`` pass per page: fine for an admin
        listing, not for a hot path."""
        op, opening = "list_users", self.k.user_open
        ids: list[str] = []
        async for keys in self.scan(op, self.k.pattern(opening)):
            ids.extend(k.decode()[len(opening) : -1] for k in keys)
        ids = sorted(i for i in ids if after is None or i > after)
        out: list[UserRecord] = []
        step = max(limit, 50)
        for start in range(0, len(ids), step):
            if len(out) >= limit:
                break
            chunk = [self.k.user(i) for i in ids[start : start + step]]
            out.extend(u for u in await self.users(op, chunk) if matches(u, role, active))
        return out[: max(0, limit)]

    async def users(self, op: str, keys: Sequence[bytes | str]) -> list[UserRecord]:
        """Users stored under ``keys``."""
        return [UserRecord.from_json(r) for r in await self.mget(op, keys) if r is not None]

    async def tokens(self, op: str, keys: Sequence[bytes | str]) -> list[AuthToken]:
        """Live tokens stored under ``keys``."""
        raws = await self.mget(op, keys)
        now = now_ts()
        tokens = (AuthToken.from_json(r) for r in raws if r is not None)
        return [t for t in tokens if t.storage_expires_ts > now]

    async def sessions(self, op: str, keys: Sequence[bytes | str]) -> list[SessionData]:
        """Live sessions stored under ``keys``."""
        got = await self.pipeline(op, [("HMGET", k, "d", "la", "ex") for k in keys])
        now = now_ts()
        return [s for s in (parse_session(g, now) for g in got) if s is not None]

    async def kv(self, op: str, keys: list[bytes]) -> list[KVEntry]:
        """Live key-value entries stored under ``keys``, with their expiry."""
        got = await self.pipeline(op, [c for k in keys for c in (("GET", k), ("PTTL", k))])
        now, out = now_ts(), []
        for key, value, pttl in zip(keys, got[::2], got[1::2], strict=True):
            if value is not None and pttl != -2:
                expires = from_ts(now + pttl / 1000) if pttl >= 0 else None
                out.append(KVEntry(self.k.kv_name(key), value, expires))
        return out

    async def count(self, op: str, opening: str) -> int:
        """How many records one namespace holds (``SCAN``; Redis skips expired keys)."""
        total = 0
        async for keys in self.scan(op, self.k.pattern(opening)):
            total += len(keys)
        return total

    async def cleanup(self) -> dict[str, int]:
        """Prune expired members from every per-user index."""
        removed = {"tokens": 0, "sessions": 0, "kv": 0, "index_keys": 0}
        for kind, suffix in (
            ("tokens", self.k.tokens_suffix),
            ("sessions", self.k.sessions_suffix),
        ):
            async for keys in self.scan("cleanup_expired", self.k.index_pattern(suffix)):
                now = ms(now_ts())
                counts = await self.pipeline(
                    "cleanup_expired", [("ZREMRANGEBYSCORE", k, "-inf", now) for k in keys]
                )
                removed[kind] += sum(int(c) for c in counts)
                removed["index_keys"] += len(keys)
        return removed

    def classify(self, key: str) -> str:
        """Which kind of authmw key ``key`` is (``"other"`` if none)."""
        k, record = self.k, key.endswith("}")
        if key.startswith(k.token_open):
            return "token" if record else "marker"
        if key.startswith(k.user_open):
            return "user" if record else "index"
        for kind, opening in (
            ("refresh", k.refresh_open),
            ("session", k.session_open),
            ("kv", k.kv_open),
            ("family", k.family_open),
        ):
            if key.startswith(opening):
                return kind
        return "audit" if key == k.audit else "other"

    async def statistics(self, backend: str, mode: str) -> StorageStatistics:
        """Live records counted in one ``SCAN`` pass; memory estimated from samples."""
        op = "get_statistics"
        counts = dict.fromkeys(_KINDS, 0)
        samples: dict[str, list[bytes]] = {kind: [] for kind in _KINDS}
        async for batch in self.scan(op, glob_escape(self.k.prefix) + "*"):
            for key in batch:
                kind = self.classify(key.decode(errors="replace"))
                counts[kind] += 1
                if len(samples[kind]) < _SAMPLES:
                    samples[kind].append(key)
        sampled = [(kind, key) for kind in _KINDS if kind != "other" for key in samples[kind]]
        usage = await self.pipeline(op, [("MEMORY", "USAGE", key) for _, key in sampled])
        per_kind: dict[str, list[int]] = {}
        for (kind, _), size in zip(sampled, usage, strict=True):
            if size is not None:
                per_kind.setdefault(kind, []).append(int(size))
        averages = {kind: sum(sizes) / len(sizes) for kind, sizes in per_kind.items()}
        estimate = round(sum(averages.get(kind, 0.0) * n for kind, n in counts.items()))
        audit_events = int(await self.x.read(op, "XLEN", self.k.audit))
        # Anonymous sessions are indexed under the empty user id (never a real one): their
        # index's live members are the count.
        anonymous = int(
            await self.x.read(op, "ZCOUNT", self.k.user_sessions(""), f"({ms(now_ts())}", "+inf")
        )
        info = await self.x.info(op, "memory")
        # A cluster answers with one section per node; a single server with the section itself.
        sections = [info] if "used_memory" in info else list(info.values())
        return StorageStatistics(
            backend=backend,
            total_users=counts["user"],
            total_tokens=counts["token"],
            active_sessions=counts["session"],
            kv_entries=counts["kv"],
            audit_events=audit_events,
            anonymous_sessions=anonymous,
            memory_bytes=estimate,
            extra={
                "mode": mode,
                "key_counts": {k: v for k, v in counts.items() if v},
                "bytes_per_key": {k: round(v) for k, v in averages.items()},
                "server_used_memory": sum(int(s.get("used_memory", 0)) for s in sections),
            },
        )
