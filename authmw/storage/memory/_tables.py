"""The in-memory backend's data: its maps, their indexes and the lock that guards writes.

Held by :class:`~authmw.storage.memory.InMemoryStorage` (the Protocol methods) and by its bulk
importer alike, so both keep the same indexes the same way. Every method that changes more
than one map is called with :attr:`Tables.lock` held.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import replace
from typing import Any

from ...models import AuditEvent, AuthToken, SessionData, UserRecord

__all__ = ["Tables"]

# Sessions are kept with their data as JSON text, so a caller mutating a dict it got back (or
# passed in) never changes what is stored, and non-JSON data fails here as it would in Redis.
_NO_DATA: dict[str, Any] = {}


class Tables:
    """Users, tokens (with refresh and per-user indexes), sessions, key-value, audit."""

    __slots__ = (
        "audit",
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
        self.user_tokens: dict[str, set[str]] = {}
        self.sessions: dict[str, tuple[SessionData, str]] = {}  # record without data, data JSON
        self.user_sessions: dict[str, set[str]] = {}
        self.kv: dict[str, tuple[bytes, float]] = {}  # value, expiry timestamp
        self.audit: deque[AuditEvent] = deque(maxlen=max_audit_events)

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
        self.user_tokens.setdefault(token.user_id, set()).add(token.token_id)

    def drop_token(self, token_id: str) -> AuthToken | None:
        """Remove a token record and its index entries (lock held); the record, if any."""
        token = self.tokens.pop(token_id, None)
        if token is None:
            return None
        if token.refresh_id:
            self.refresh.pop(token.refresh_id, None)
        ids = self.user_tokens.get(token.user_id)
        if ids is not None:
            ids.discard(token_id)
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
        self.user_sessions.setdefault(session.user_id, set()).add(session.session_id)

    def drop_session(self, session_id: str) -> SessionData | None:
        """Remove a session and its index entry (lock held); the record, if any."""
        entry = self.sessions.pop(session_id, None)
        if entry is None:
            return None
        ids = self.user_sessions.get(entry[0].user_id)
        if ids is not None:
            ids.discard(session_id)
            if not ids:
                del self.user_sessions[entry[0].user_id]
        return entry[0]

    def live_session(self, session_id: str, now: float) -> SessionData | None:
        """The session unless missing or expired at ``now``, with a fresh copy of its data."""
        entry = self.sessions.get(session_id)
        if entry is None or entry[0].expires_ts <= now:
            return None
        return entry[0].with_data(json.loads(entry[1]))
