"""Batched insert-if-absent and lookup over the in-memory backend's tables (migration, restore).

The semantics are :mod:`authmw.storage.base`'s (``BulkImport``, ``BulkLookup``). Each batch is
applied under the tables' lock, so it is atomic with respect to every other write. Plain
methods: the storage's async Protocol methods call them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..._time import from_ts, now_ts
from ...models import AuthToken, SessionData, UserRecord
from ..base import KVEntry
from ._tables import Tables

__all__ = ["MemoryBulk"]


class MemoryBulk:
    """The batch writes and reads of :class:`~authmw.storage.memory.InMemoryStorage`."""

    def __init__(self, tables: Tables, default_ttl: float) -> None:
        self._t = tables
        self._default_ttl = default_ttl

    def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """Insert the users whose ids are free."""
        t, out = self._t, []
        with t.lock:
            for user in batch:
                fresh = user.user_id not in t.users
                if fresh:
                    t.users[user.user_id] = user
                out.append(fresh)
        return out

    def _token_free(self, token: AuthToken, now: float) -> bool:
        t = self._t
        current = t.tokens.get(token.token_id)
        if current is not None and current.storage_expires_ts > now:
            return False
        if token.refresh_id:
            holder = t.tokens.get(t.refresh.get(token.refresh_id, ""))
            if (
                holder is not None
                and holder.token_id != token.token_id
                and holder.storage_expires_ts > now
            ):
                return False  # the refresh selector belongs to another live token
        return True

    def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """Insert the live token records whose ids (and refresh ids) are free."""
        t, out = self._t, []
        with t.lock:
            now = now_ts()
            for token in batch:
                fresh = token.storage_expires_ts > now and self._token_free(token, now)
                if fresh:
                    t.put_token(token)
                out.append(fresh)
        return out

    def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """Insert the live sessions whose ids are free."""
        t = self._t
        # Serialise first: non-JSON data raises TypeError before anything is stored.
        encoded = [t.encode_session(s) for s in batch]
        out = []
        with t.lock:
            now = now_ts()
            for session, data_json in zip(batch, encoded, strict=True):
                current = t.sessions.get(session.session_id)
                fresh = session.expires_ts > now and (
                    current is None or current[0].expires_ts <= now
                )
                if fresh:
                    t.put_session(session, data_json)
                out.append(fresh)
        return out

    def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """Insert the live entries whose keys are free."""
        t, out = self._t, []
        with t.lock:
            now = now_ts()
            for entry in batch:
                if default_ttl or entry.expires_at is None:
                    expires = now + self._default_ttl
                else:
                    expires = entry.expires_at.timestamp()
                current = t.kv.get(entry.key)
                fresh = expires > now and (current is None or current[1] <= now)
                if fresh:
                    t.kv[entry.key] = (bytes(entry.value), expires)
                out.append(fresh)
        return out

    def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """The live token records with these ids."""
        now = now_ts()
        found = (self._t.tokens.get(token_id) for token_id in token_ids)
        return [t if t is not None and t.storage_expires_ts > now else None for t in found]

    def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """The live entries with these keys."""
        now = now_ts()
        out: list[KVEntry | None] = []
        for key in keys:
            entry = self._t.kv.get(key)
            out.append(
                None
                if entry is None or entry[1] <= now
                else KVEntry(key, entry[0], from_ts(entry[1]))
            )
        return out
