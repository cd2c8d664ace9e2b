"""Batch import and lookup for :class:`authmw.storage.memory.InMemoryStorage`.

A mixin over the storage's own maps (see :mod:`authmw.storage.base` for the semantics). Each
batch is applied under the storage's lock, so it is atomic with respect to every other write.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..._time import from_ts, now_ts
from ...models import AuditEvent, AuthToken, SessionData, UserRecord
from ..base import KVEntry

__all__ = ["MemoryBulkMixin"]

_NO_DATA: dict[str, Any] = {}


class MemoryBulkMixin:
    """``BulkImport`` and ``BulkLookup`` for the in-memory backend."""

    # Provided by InMemoryStorage.
    _lock: threading.Lock
    _users: dict[str, UserRecord]
    _tokens: dict[str, AuthToken]
    _refresh: dict[str, str]
    _sessions: dict[str, tuple[SessionData, str]]
    _user_sessions: dict[str, set[str]]
    _kv: dict[str, tuple[bytes, float]]
    _audit: deque[AuditEvent]
    _default_ttl: float

    def _put_token(self, token: AuthToken) -> None:  # pragma: no cover - InMemoryStorage's
        raise NotImplementedError

    @property
    def audit_ids_unique(self) -> bool:
        """False: the in-memory audit log does not index event ids."""
        return False

    async def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """Insert the users whose ids are free."""
        out = []
        with self._lock:
            for user in batch:
                fresh = user.user_id not in self._users
                if fresh:
                    self._users[user.user_id] = user
                out.append(fresh)
        return out

    def _token_free(self, token: AuthToken, now: float) -> bool:
        current = self._tokens.get(token.token_id)
        if current is not None and current.storage_expires_ts > now:
            return False
        if token.refresh_id:
            holder = self._tokens.get(self._refresh.get(token.refresh_id, ""))
            if holder is not None and holder.token_id != token.token_id \
                    and holder.storage_expires_ts > now:
                return False  # the refresh selector belongs to another live token
        return True

    async def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """Insert the live token records whose ids (and refresh ids) are free."""
        out = []
        with self._lock:
            now = now_ts()
            for token in batch:
                fresh = token.storage_expires_ts > now and self._token_free(token, now)
                if fresh:
                    self._put_token(token)
                out.append(fresh)
        return out

    async def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """Insert the live sessions whose ids are free."""
        # Serialise first: non-JSON data raises TypeError before anything is stored.
        encoded = [json.dumps(s.data, separators=(",", ":")) for s in batch]
        out = []
        with self._lock:
            now = now_ts()
            for session, data_json in zip(batch, encoded, strict=True):
                current = self._sessions.get(session.session_id)
                fresh = session.expires_ts > now and (
                    current is None or current[0].expires_ts <= now)
                if fresh:
                    self._sessions[session.session_id] = (replace(session, data=_NO_DATA),
                                                          data_json)
                    self._user_sessions.setdefault(session.user_id, set()).add(
                        session.session_id)
                out.append(fresh)
        return out

    async def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """Insert the live entries whose keys are free."""
        out = []
        with self._lock:
            now = now_ts()
            for entry in batch:
                if default_ttl or entry.expires_at is None:
                    expires = now + self._default_ttl
                else:
                    expires = entry.expires_at.timestamp()
                current = self._kv.get(entry.key)
                fresh = expires > now and (current is None or current[1] <= now)
                if fresh:
                    self._kv[entry.key] = (bytes(entry.value), expires)
                out.append(fresh)
        return out

    async def import_audit(self, batch: Sequence[AuditEvent]) -> list[bool]:
        """Append every event (the caller deduplicates: :attr:`audit_ids_unique` is False)."""
        self._audit.extend(batch)
        return [True] * len(batch)

    async def lookup_users(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        """The users with these ids."""
        return [self._users.get(user_id) for user_id in user_ids]

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """The live token records with these ids."""
        now = now_ts()
        found = (self._tokens.get(token_id) for token_id in token_ids)
        return [t if t is not None and t.storage_expires_ts > now else None for t in found]

    async def lookup_sessions(self, session_ids: Sequence[str]) -> list[SessionData | None]:
        """The live sessions with these ids (fresh copies of their data)."""
        now = now_ts()
        out: list[SessionData | None] = []
        for session_id in session_ids:
            entry = self._sessions.get(session_id)
            if entry is None or entry[0].expires_ts <= now:
                out.append(None)
            else:
                out.append(replace(entry[0], data=json.loads(entry[1])))
        return out

    async def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """The live entries with these keys."""
        now = now_ts()
        out: list[KVEntry | None] = []
        for key in keys:
            entry = self._kv.get(key)
            out.append(None if entry is None or entry[1] <= now
                       else KVEntry(key, entry[0], from_ts(entry[1])))
        return out
