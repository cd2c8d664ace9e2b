"""Account management for :class:`authmw.AuthFramework`: the user id rule and ``Accounts``.

The framework holds one :class:`Accounts` and its user-management methods (``get_user``,
``list_users``, ``set_roles``, ``disable_user``, ...) delegate to it, so the login and token
flows stay in ``framework.py``. Every change writes an audit event and goes through the
framework's storage: behind a ``CachedStorage`` that drops the changed records in every
instance's cache at once.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from .config import AuthConfig
from .errors import InvalidInput, UnknownUser
from .models import UserRecord, utcnow
from .passwords import PasswordManager, check_password_rules
from .storage.base import AuthStorage

__all__ = ["MAX_PAGE", "Accounts", "normalize_user_id"]

#: The most users one ``list_users`` call returns.
MAX_PAGE = 1000

# Characters refused in a user id: controls, invisible format characters (zero-width space,
# bidi overrides: they make two ids look alike), lone surrogates, line/paragraph separators.
_REFUSED = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


def normalize_user_id(user_id: object, max_length: int = 255) -> str:
    """The one form of a user id that every entry point stores and looks up.

    Unicode NFKC (compatibility forms fold: full-width ``"\\uff41"`` is ``a``), then ``casefold``
    (``Alice`` is ``alice``, ``Straße`` is ``strasse``), NFKC again (case folding can leave a
    few characters unnormalised), then surrounding whitespace stripped. So ``"Alice"``,
    ``"alice "`` and full-width ``"\\uff41lice"`` are one account, with one lockout counter.

    Raises ``InvalidInput`` for a non-string, an id that is empty after normalising, longer than
    ``max_length`` characters, or holding a control, invisible-format, surrogate or line
    separator character anywhere.
    """
    if not isinstance(user_id, str):
        raise InvalidInput("user_id", "must be a string")
    # NFKC can expand a character many times over: refuse huge input before normalising it.
    if len(user_id) > 4 * max_length:
        raise InvalidInput("user_id", f"longer than {max_length} characters")
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", user_id).casefold())
    folded = folded.strip()
    if not folded:
        raise InvalidInput("user_id", "must not be empty")
    if len(folded) > max_length:
        raise InvalidInput("user_id", f"longer than {max_length} characters")
    if any(unicodedata.category(c) in _REFUSED for c in folded):
        raise InvalidInput("user_id", "has control, invisible or separator characters")
    return folded


def _names(field: str, values: object) -> tuple[str, ...]:
    """Roles or permissions as a tuple of distinct non-empty strings, in the given order."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidInput(field, "expected a list of strings, not one string")
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(field, "every entry must be a non-empty string")
        if value not in out:
            out.append(value)
    return tuple(out)


Audit = Callable[..., Awaitable[None]]


class Host(Protocol):
    """What :class:`Accounts` uses of the framework that holds it (``AuthFramework``): a
    Protocol, so that this module needs no import of the framework (no import cycle)."""

    config: AuthConfig
    storage: AuthStorage

    async def _reopen(self) -> None: ...

    async def revoke_user(self, user_id: str, *, keep: str | None = None) -> int: ...

    async def check_password(
        self,
        user_id: str,
        password: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> UserRecord: ...


class Accounts:
    """The user-management operations of one framework (see the module docstring)."""

    def __init__(
        self,
        auth: Host,
        passwords: PasswordManager,
        audit: Audit,
        clear_lockout: Callable[[str], Awaitable[None]],
    ) -> None:
        self._auth = auth
        self._passwords = passwords
        self._audit = audit
        self._clear_lockout = clear_lockout

    def _user_id(self, user_id: object) -> str:
        return normalize_user_id(user_id, self._auth.config.max_user_id_length)

    def _new_password(self, password: object) -> str:
        cfg = self._auth.config
        return check_password_rules(
            password,
            min_length=cfg.min_password_length,
            max_bytes=cfg.max_password_length,
            new=True,
        )

    async def get(self, user_id: str) -> UserRecord:
        """The user record; ``UnknownUser`` when there is none."""
        user_id = self._user_id(user_id)
        await self._auth._reopen()  # first use: 503 while it cannot open
        user = await self._auth.storage.get_user(user_id)
        if user is None:
            raise UnknownUser(user_id)
        return user

    async def page(
        self, after: str | None, limit: int, role: str | None, active: bool | None
    ) -> list[UserRecord]:
        """One page of users in id order (see ``AuthFramework.list_users``)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput("limit", f"must be an integer from 1 to {MAX_PAGE}")
        if after is not None and not isinstance(after, str):
            raise InvalidInput("after", "must be a user id (the last one of the previous page)")
        if role is not None and not isinstance(role, str):
            raise InvalidInput("role", "must be a string")
        if active is not None and not isinstance(active, bool):
            raise InvalidInput("active", "must be True, False or None")
        await self._auth._reopen()  # first use: 503 while it cannot open
        return await self._auth.storage.list_users(
            after=after, limit=limit, role=role, active=active
        )

    async def _change(self, action: str, user_id: str, **fields: Any) -> UserRecord:
        """Replace ``fields`` of a user record, stamp ``updated_at`` and audit ``action``."""
        user = await self.get(user_id)
        changed = replace(user, updated_at=utcnow(), **fields)
        if not await self._auth.storage.update_user(changed):
            raise UnknownUser(user.user_id)  # deleted between the read and the write
        shown = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
        shown.pop("password_hash", None)
        await self._audit(action, True, user.user_id, **shown)
        return changed

    async def set_roles(self, user_id: str, roles: Iterable[str]) -> UserRecord:
        """Replace the user's roles (see ``AuthFramework.set_roles``)."""
        return await self._change("user.roles", user_id, roles=_names("roles", roles))

    async def set_permissions(self, user_id: str, permissions: Iterable[str]) -> UserRecord:
        """Replace the user's permissions (see ``AuthFramework.set_permissions``)."""
        return await self._change(
            "user.permissions", user_id, permissions=_names("permissions", permissions)
        )

    async def set_active(self, user_id: str, active: bool) -> UserRecord:
        """Enable or disable; disabling also removes every token and session of the user."""
        action = "user.enable" if active else "user.disable"
        user = await self._change(action, user_id, is_active=active)
        if not active:
            await self._auth.revoke_user(user.user_id)
        return user

    async def set_password(self, user_id: str, password: str, keep: str | None) -> UserRecord:
        """Store a new password hash and log out every other credential (see
        ``AuthFramework.set_password``)."""
        password = self._new_password(password)
        user_id = self._user_id(user_id)
        await self._auth._reopen()  # first use: 503 while it cannot open
        hashed = await self._passwords.hash(password)
        user = await self._change("user.password", user_id, password_hash=hashed)
        await self._auth.revoke_user(user.user_id, keep=keep)
        return user

    async def change_password(
        self, user_id: str, old: str, new: str, keep: str | None
    ) -> UserRecord:
        """Check ``old`` as a login would, then :meth:`set_password`."""
        new = self._new_password(new)
        # A login check: wrong guesses count toward the lockout like any other.
        user = await self._auth.check_password(user_id, old)
        return await self.set_password(user.user_id, new, keep)

    async def delete(self, user_id: str) -> int:
        """Delete the user, its tokens, sessions and lockout state; the audit log stays."""
        user = await self.get(user_id)
        storage = self._auth.storage
        # The record first: a login racing with the deletion then finds no user to log in.
        await storage.delete_user(user.user_id)
        removed = await self._auth.revoke_user(user.user_id)
        await self._clear_lockout(user.user_id)
        await self._audit("user.delete", True, user.user_id, revoked=removed)
        return removed

    async def unlock(self, user_id: str) -> None:
        """Lift the lockouts and slow-downs of a known user."""
        user = await self.get(user_id)
        await self._clear_lockout(user.user_id)
        await self._audit("user.unlock", True, user.user_id)
