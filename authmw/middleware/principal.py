"""Represents the principal put on the request (``AuthUser``), its scopes, and ``current_user()``.

``AuthUser`` is a Starlette ``BaseUser``; its scopes (``AuthCredentials``) are
``["authenticated", *permissions, *("role:" + r for r in roles)]`` so Starlette's ``requires()``
works unchanged. ``current_user()`` reads a context variable the middlewares set per request.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Literal

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser

from ..models import AuthToken, SessionData

__all__ = ["AuthUser", "credentials_for", "current_user"]


class AuthUser(BaseUser):
    """An authenticated user, by bearer token or by session cookie.

    ``token`` is the verified :class:`AuthToken` (bearer) and ``session_record`` the
    :class:`SessionData` (session); the other is None.
    """

    __slots__ = ("auth_method", "permissions", "roles", "session_record", "token", "user_id")

    def __init__(
        self,
        user_id: str,
        *,
        roles: tuple[str, ...] = (),
        permissions: tuple[str, ...] = (),
        auth_method: Literal["bearer", "session"],
        token: AuthToken | None = None,
        session_record: SessionData | None = None,
    ) -> None:
        self.user_id = user_id
        self.roles = roles
        self.permissions = permissions
        self.auth_method = auth_method
        self.token = token
        self.session_record = session_record

    @classmethod
    def from_token(cls, token: AuthToken) -> AuthUser:
        """The principal behind a verified access token."""
        # Built field by field: this runs on every bearer request and keyword __init__
        # costs about twice as much.
        user = cls.__new__(cls)
        user.user_id, user.roles, user.permissions = token.user_id, token.roles, token.permissions
        user.auth_method, user.token, user.session_record = "bearer", token, None
        return user

    @classmethod
    def from_session(cls, session: SessionData) -> AuthUser:
        """The principal behind a live session of a user (``ValueError`` for an anonymous
        session, which has no principal)."""
        if session.user_id is None:
            raise ValueError("an anonymous session has no principal")
        user = cls.__new__(cls)
        user.user_id, user.roles = session.user_id, session.roles
        user.permissions, user.auth_method = session.permissions, "session"
        user.token, user.session_record = None, session
        return user

    @property
    def is_authenticated(self) -> bool:
        """Always True."""
        return True

    @property
    def display_name(self) -> str:
        """The user id."""
        return self.user_id

    @property
    def identity(self) -> str:
        """The user id."""
        return self.user_id

    def __repr__(self) -> str:
        return f"AuthUser({self.user_id!r}, auth_method={self.auth_method!r}, roles={self.roles!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AuthUser) and (
            self.user_id,
            self.auth_method,
            self.roles,
            self.permissions,
        ) == (other.user_id, other.auth_method, other.roles, other.permissions)

    __hash__ = None  # type: ignore[assignment]


_scopes_cache: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}


def credentials_for(user: BaseUser) -> AuthCredentials:
    """The Starlette credentials (scopes) of a principal."""
    if not isinstance(user, AuthUser):
        return AuthCredentials()
    key = (user.permissions, user.roles)
    scopes = _scopes_cache.get(key)
    if scopes is None:
        # Few distinct role/permission sets exist in an app; bounded all the same.
        if len(_scopes_cache) > 4096:
            _scopes_cache.clear()
        scopes = ("authenticated", *user.permissions, *(f"role:{r}" for r in user.roles))
        _scopes_cache[key] = scopes
    return AuthCredentials(scopes)


_ANONYMOUS = UnauthenticatedUser()
_current: ContextVar[BaseUser] = ContextVar("authmw_current_user", default=_ANONYMOUS)


def current_user() -> BaseUser:
    """The principal of the request being handled (``UnauthenticatedUser`` outside one)."""
    return _current.get()
