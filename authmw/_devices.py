"""Per-session and per-token control: what a "your devices" page lists and revokes.

:class:`Devices` works through the storage Protocol alone (``list_user_*``, ``update_token``,
``delete_session``), so it behaves the same on every backend and through the local cache, whose
writes publish their invalidations. Everything here is addressed by public ids (a session's
selector, a token's ``token_id``): revoking one never needs its secret.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

from ._time import now_ts
from .models import AuthToken, SessionData, utcnow
from .storage.base import AuthStorage

__all__ = ["Devices", "SessionInfo", "TokenInfo"]

Audit = Callable[..., Awaitable[None]]

# A refresh can rotate a family between our listing and our revocation; the successor it stores
# is then missed. A second look catches it (a rotation in flight finishes within one pass).
_PASSES = 3
# A public id is a selector: base64url text (22 characters as minted). Anything else is refused
# before storage sees it (a NUL or a megabyte of text is the client's mistake, not an outage).
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _public_id(value: object) -> bool:
    return isinstance(value, str) and _PUBLIC_ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One live session of a user, as a "your devices" page shows it.

    ``session_id`` is the public half of the session id (never the secret): pass it to
    :meth:`authmw.AuthFramework.revoke_session`. ``last_seen`` is the session's last use,
    written at most once per ``session_touch_interval``. ``ip_address`` and ``user_agent`` are
    the client's at login (None when unknown).
    """

    session_id: str
    user_id: str | None  # None only for an anonymous visitor's session
    created_at: datetime
    last_seen: datetime
    expires_at: datetime
    ip_address: str | None
    user_agent: str | None

    @classmethod
    def of(cls, session: SessionData) -> SessionInfo:
        """The public view of a stored session."""
        return cls(
            session_id=session.session_id,
            user_id=session.user_id,
            created_at=session.created_at,
            last_seen=session.last_accessed,
            expires_at=session.expires_at,
            ip_address=session.ip_address,
            user_agent=session.user_agent,
        )


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """One logged-in bearer client of a user: the live token of a refresh family.

    ``token_id`` is the public half of the access token: pass it to
    :meth:`authmw.AuthFramework.revoke_token`. ``created_at`` is the login that started the
    family and ``last_seen`` the last token minted for it (the login or the latest refresh):
    access tokens are checked without a write, so a client is known to be alive at least that
    recently. ``ip_address`` and ``user_agent`` are the client's at login (None when unknown).
    """

    token_id: str
    family_id: str
    user_id: str
    created_at: datetime
    last_seen: datetime
    expires_at: datetime
    refresh_expires_at: datetime | None
    ip_address: str | None
    user_agent: str | None

    @classmethod
    def of(cls, token: AuthToken) -> TokenInfo:
        """The public view of a stored token record."""
        return cls(
            token_id=token.token_id,
            family_id=token.family_id,
            user_id=token.user_id,
            created_at=token.login_at or token.created_at,
            last_seen=token.created_at,
            expires_at=token.expires_at,
            refresh_expires_at=token.refresh_expires_at,
            ip_address=token.ip_address,
            user_agent=token.user_agent,
        )


def _usable(token: AuthToken, now: float) -> bool:
    """A token that still lets its client in: not revoked, and its access or refresh half
    unexpired (a stored record past both has already expired from storage)."""
    return token.revoked_at is None and token.storage_expires_ts > now


class Devices:
    """Lists and revokes one user's sessions and tokens. Held by :class:`AuthFramework`."""

    def __init__(self, storage: AuthStorage, audit: Audit) -> None:
        self._storage = storage
        self._audit = audit

    async def sessions(self, user_id: str) -> list[SessionInfo]:
        """The user's live sessions, oldest login first."""
        found = await self._storage.list_user_sessions(user_id)
        return sorted(
            (SessionInfo.of(s) for s in found), key=lambda s: (s.created_at, s.session_id)
        )

    async def tokens(self, user_id: str) -> list[TokenInfo]:
        """The user's logged-in bearer clients (one per refresh family), oldest login first."""
        now = now_ts()
        found = [t for t in await self._storage.list_user_tokens(user_id) if _usable(t, now)]
        return sorted((TokenInfo.of(t) for t in found), key=lambda t: (t.created_at, t.token_id))

    async def revoke_session(self, session_id: str, user_id: str | None) -> bool:
        """End the session with this public id (of ``user_id`` only, when given)."""
        if not _public_id(session_id):
            return False
        session = await self._storage.get_session(session_id)
        if session is None or (user_id is not None and session.user_id != user_id):
            return False
        removed = await self._storage.delete_session(session_id)
        if removed:
            await self._audit("session.destroy", True, session.user_id, session_id=session_id)
        return removed

    async def revoke_token(self, token_id: str, user_id: str | None) -> bool:
        """Revoke the token with this public id and its refresh family (of ``user_id`` only,
        when given): the client's refresh token stops working too."""
        if not _public_id(token_id):
            return False
        token = await self._storage.get_token(token_id)
        if token is None or (user_id is not None and token.user_id != user_id):
            return False
        if not _usable(token, now_ts()):
            return False
        count = await self._revoke_where(token.user_id, lambda t: t.family_id == token.family_id)
        if count:
            await self._audit(
                "token.revoke", True, token.user_id, token_id=token_id, family_id=token.family_id
            )
        return count > 0

    async def logout_everywhere_else(
        self, user_id: str, keep_session: str | None, keep_token: str | None
    ) -> int:
        """End every session and token of the user except the kept session and the kept
        token's family; return how many were live."""
        kept_family = None
        if keep_token is not None and _public_id(keep_token):
            kept = await self._storage.get_token(keep_token)
            if kept is not None and kept.user_id == user_id:
                kept_family = kept.family_id
        count = await self._revoke_where(user_id, lambda t: t.family_id != kept_family)
        for session in await self._storage.list_user_sessions(user_id):
            if session.session_id != keep_session and await self._storage.delete_session(
                session.session_id
            ):
                count += 1
        await self._audit(
            "token.revoke",
            True,
            user_id,
            scope="others",
            kept_session=keep_session if _public_id(keep_session) else None,
            kept_token=keep_token if _public_id(keep_token) else None,
            revoked=count,
        )
        return count

    async def _revoke_where(self, user_id: str, chosen: Callable[[AuthToken], bool]) -> int:
        """Revoke the user's usable tokens that ``chosen`` picks; how many were revoked."""
        count = 0
        for _ in range(_PASSES):
            now, when = now_ts(), utcnow()
            targets = [
                t
                for t in await self._storage.list_user_tokens(user_id)
                if _usable(t, now) and chosen(t)
            ]
            if not targets:
                break
            for token in targets:
                revoked = replace(token, revoked_at=when, revoke_reason="revoked")
                if await self._storage.update_token(revoked):
                    count += 1
        return count
