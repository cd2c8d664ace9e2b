"""Builders for storage records, so contract tests read as behaviour, not field lists."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any, Literal

from authmw.models import AuthToken, SessionData, UserRecord, utcnow
from authmw.storage import InMemoryStorage
from authmw.storage.base import MISS, Miss


def make_user(user_id: str = "alice", **overrides: Any) -> UserRecord:
    """A user with a placeholder hash."""
    now = utcnow()
    fields: dict[str, Any] = {
        "user_id": user_id,
        "password_hash": "$argon2id$v=19$m=8,t=1,p=1$placeholder",
        "created_at": now,
        "updated_at": now,
    }
    fields.update(overrides)
    return UserRecord(**fields)


def make_token(
    user_id: str = "alice",
    *,
    ttl: float = 3600,
    refresh_ttl: float | None = 7200,
    family_id: str | None = None,
    now: datetime | None = None,
    **overrides: Any,
) -> AuthToken:
    """A token record with random selectors and digests."""
    now = now or utcnow()
    token_id = secrets.token_urlsafe(16)
    fields: dict[str, Any] = {
        "token_id": token_id,
        "user_id": user_id,
        "access_digest": hashlib.sha256(secrets.token_bytes(32)).digest(),
        "expires_at": now + timedelta(seconds=ttl),
        "created_at": now,
        "family_id": family_id or token_id,
    }
    if refresh_ttl is not None:
        fields["refresh_id"] = secrets.token_urlsafe(16)
        fields["refresh_digest"] = hashlib.sha256(secrets.token_bytes(32)).digest()
        fields["refresh_expires_at"] = now + timedelta(seconds=refresh_ttl)
    fields.update(overrides)
    return AuthToken(**fields)


def make_session(
    user_id: str | None = "alice",
    *,
    ttl: float = 3600,
    data: dict[str, Any] | None = None,
    **overrides: Any,
) -> SessionData:
    """A session record with a random selector and digest."""
    now = utcnow()
    fields: dict[str, Any] = {
        "session_id": secrets.token_urlsafe(16),
        "user_id": user_id,
        "verifier_digest": hashlib.sha256(secrets.token_bytes(32)).digest(),
        "created_at": now,
        "last_accessed": now,
        "expires_at": now + timedelta(seconds=ttl),
        "absolute_expires_at": now + timedelta(seconds=max(ttl, 1) * 2),
        "data": data if data is not None else {"cart": [1, 2]},
    }
    fields.update(overrides)
    return SessionData(**fields)


def forge(token: str) -> str:
    """``token`` with the last hex digit of its keyed tag changed: always a different tag."""
    return token[:-1] + ("1" if token[-1] == "0" else "0")


class RemoteLikeMemory(InMemoryStorage):
    """An in-memory storage whose reads always go through the async methods, as a storage over
    the network does: tests that simulate outages or slowness by overriding ``get_token`` /
    ``get_session`` subclass this, so the in-memory fast path does not go around them."""

    def get_token_nowait(self, token_id: str) -> Literal[Miss.MISS]:
        """Always ``MISS``: ask :meth:`get_token`."""
        return MISS

    def get_session_nowait(self, session_id: str) -> Literal[Miss.MISS]:
        """Always ``MISS``: ask :meth:`get_session`."""
        return MISS
