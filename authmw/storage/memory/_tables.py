"""The in-memory backend's data: its maps, their indexes and the lock that guards writes.

Held by :class:`~authmw.storage.memory.InMemoryStorage` (the Protocol methods) and by its bulk
importer alike, so both keep the same indexes the same way. Every method that changes more
than one map is called with :attr:`Tables.lock` held.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections import deque
from dataclasses import replace
from typing import Any

from ...models import AuditEvent, AuthToken, SessionData, UserRecord

__all__ = ["Tables", "deep_size"]

# Sessions are kept with their data as JSON text, so a caller mutating a dict it got back (or
# passed in) never changes what is stored, and non-JSON data fails here as it would in Redis.
_NO_DATA: dict[str, Any] = {}


def deep_size(obj: Any, seen: set[int]) -> int:
    """``sys.getsizeof`` of ``obj`` and of everything it holds (containers, dataclass fields),
    each object counted once across calls sharing ``seen``. An estimate: allocator overhead and
    memory shared with the rest of the process (interned strings) are not told apart."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, (str, bytes, int, float, bool)) or obj is None:
        return size
    if isinstance(obj, dict):
        return size + sum(deep_size(k, seen) + deep_size(v, seen) for k, v in list(obj.items()))
    if isinstance(obj, (list, tuple, set, frozenset, deque)):
        return size + sum(deep_size(item, seen) for item in list(obj))
    if dataclasses.is_dataclass(obj):
        return size + sum(deep_size(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    return size


class Tables:
    """Users, tokens (with refresh and per-user indexes), sessions, key-value, audit."""

    __slots__ = (
        "audit",
        "families",
        "kv",
        "lock",
        "refresh",
        "sessions",
        "tokens",
        "user_sessions",
        "user_tokens",
        "users",
    )

    def __init__(self, max_audit_events: int) -> None:
        self.lock = threading.Lock()
        self.users: dict[str, UserRecord] = {}
        self.tokens: dict[str, AuthToken] = {}
        self.refresh: dict[str, str] = {}  # refresh selector -> token id
        # Per-user indexes are dicts used as ordered sets: a dict entry costs about half a set
        # entry (tracemalloc: about 85 B less per stored token).
        self.user_tokens: dict[str, dict[str, None]] = {}
        self.sessions: dict[str, tuple[SessionData, str]] = {}  # record without data, data JSON
        self.user_sessions: dict[str, dict[str, None]] = {}
        self.kv: dict[str, tuple[bytes, float]] = {}  # value, expiry timestamp
        self.families: dict[str, float] = {}  # revoked refresh family -> mark expiry timestamp
        self.audit: deque[AuditEvent] = deque(maxlen=max_audit_events)

    def memory_bytes(self) -> int:
        """An estimate of the bytes every map and record holds (see :func:`deep_size`)."""
        seen: set[int] = set()
        return sum(
            deep_size(table, seen)
            for table in (
                self.users,
                self.tokens,
                self.refresh,
                self.user_tokens,
                self.sessions,
                self.user_sessions,
                self.kv,
                self.families,
                self.audit,
            )
        )

    def put_token(self, token: AuthToken) -> None:
        """Store a token record with its indexes (lock held)."""
        # Records are frozen, so the stored object can be handed out.
        token = token.stored()
        old = self.tokens.get(token.token_id)
        if old is not None and old.refresh_id and old.refresh_id != token.refresh_id:
            self.refresh.pop(old.refresh_id, None)
        self.tokens[token.token_id] = token
        if token.refresh_id:
            self.refresh[token.refresh_id] = token.token_id
        self.user_tokens.setdefault(token.user_id, {})[token.token_id] = None

    def drop_token(self, token_id: str) -> AuthToken | None:
        """Remove a token record and its index entries (lock held); the record, if any."""
        token = self.tokens.pop(token_id, None)
        if token is None:
            return None
        if token.refresh_id:
            self.refresh.pop(token.refresh_id, None)
        ids = self.user_tokens.get(token.user_id)
        if ids is not None:
            ids.pop(token_id, None)
            if not ids:
                del self.user_tokens[token.user_id]
        return token

    @staticmethod
    def encode_session(session: SessionData) -> str:
        """The session's data as JSON (``TypeError`` for data JSON cannot hold)."""
        return json.dumps(session.data, separators=(",", ":"))

    def put_session(self, session: SessionData, data_json: str) -> None:
        """Store a session (its data already encoded) with its user index (lock held)."""
        self.sessions[session.session_id] = (replace(session, data=_NO_DATA), data_json)
        if session.user_id is not None:  # an anonymous session is in no user's index
            self.user_sessions.setdefault(session.user_id, {})[session.session_id] = None

    def drop_session(self, session_id: str) -> SessionData | None:
        """Remove a session and its index entry (lock held); the record, if any."""
        entry = self.sessions.pop(session_id, None)
        if entry is None:
            return None
        owner = entry[0].user_id
        ids = None if owner is None else self.user_sessions.get(owner)
        if owner is not None and ids is not None:
            ids.pop(session_id, None)
            if not ids:
                del self.user_sessions[owner]
        return entry[0]

    def live_session(self, session_id: str, now: float) -> SessionData | None:
        """The session unless missing or expired at ``now``, with a fresh copy of its data."""
        entry = self.sessions.get(session_id)
        if entry is None or entry[0].expires_ts <= now:
            return None
        return entry[0].with_data(json.loads(entry[1]))
