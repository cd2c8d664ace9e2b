"""What :class:`authmw.storage.cached.CachedStorage` leaves uncached: the wrapped storage answers.

Key-value entries carry login-failure counters and lockouts, which must be exact; lists,
counts, the audit log and the bulk iterators are not on any hot path; a refresh token is read
once per refresh.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from ...models import AuditEvent, AuthToken, SessionData, UserRecord
from ..base import AuthStorage, KVEntry

__all__ = ["Passthrough"]


class Passthrough:
    """The uncached part of the ``AuthStorage`` Protocol, for ``CachedStorage``."""

    inner: AuthStorage

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
        return await self.inner.query_audit(user_id=user_id, action=action, since=since,
                                            until=until, limit=limit)

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
