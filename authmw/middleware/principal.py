"""Represents the principal put on the request (``AuthUser``, or ``AnonymousUser``), its
scopes, and ``current_user()``.

``AuthUser`` is a Starlette ``BaseUser``; its scopes (``AuthCredentials``) are
``["authenticated", *permissions, *("role:" + r for r in roles)]`` so Starlette's ``requires()``
works unchanged. Anonymous requests carry :data:`ANONYMOUS`, an ``AnonymousUser`` with the same
attributes (``user_id`` None, no roles), so code written for Flask-Login (``is_authenticated``,
``is_active``, ``is_anonymous``, ``get_id()``) and ``user.user_id`` work on both and type-check
as ``AuthUser | AnonymousUser``. ``current_user()`` reads a context variable the middlewares
set per request. :func:`refusal` is the one decision of every ``requires``/``login_required``
helper: 401 with a challenge for anonymous callers, 403 for authenticated ones lacking a scope.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser

from ..models import AuthToken, SessionData

__all__ = [
    "ANONYMOUS",
    "AnonymousUser",
    "AuthUser",
    "Refusal",
    "credentials_for",
    "current_user",
    "refusal",
]


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
    def is_authenticated(self) -> Literal[True]:
        """Always True."""
        return True

    @property
    def is_active(self) -> bool:
        """True (Flask-Login's name): disabled users cannot log in or refresh, and disabling
        one revokes its tokens and sessions."""
        return True

    @property
    def is_anonymous(self) -> Literal[False]:
        """Always False (Flask-Login's name)."""
        return False

    def get_id(self) -> str:
        """The user id (Flask-Login's name)."""
        return self.user_id

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


class AnonymousUser(UnauthenticatedUser):
    """The principal of a request without valid credentials: :class:`AuthUser`'s attributes
    with empty values (``user_id`` None, ``auth_method`` None, no roles or permissions), and
    Flask-Login's ``is_authenticated``/``is_active`` False, ``is_anonymous`` True,
    ``get_id()`` None. A Starlette ``UnauthenticatedUser``, so Starlette code keeps working.
    Use the shared :data:`ANONYMOUS`."""

    __slots__ = ()

    user_id: None = None
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    auth_method: None = None
    token: None = None
    session_record: None = None

    @property
    def is_authenticated(self) -> Literal[False]:
        """Always False."""
        return False

    @property
    def is_active(self) -> Literal[False]:
        """Always False (Flask-Login's name)."""
        return False

    @property
    def is_anonymous(self) -> Literal[True]:
        """Always True (Flask-Login's name)."""
        return True

    def get_id(self) -> None:
        """None (Flask-Login's name)."""
        return

    @property
    def identity(self) -> str:
        """The empty string."""
        return ""

    def __repr__(self) -> str:
        return "AnonymousUser()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnonymousUser)

    def __hash__(self) -> int:
        return hash(AnonymousUser)


#: The one anonymous principal, shared by every request without valid credentials.
ANONYMOUS = AnonymousUser()
_current: ContextVar[AuthUser | AnonymousUser] = ContextVar(
    "authmw_current_user", default=ANONYMOUS
)


def current_user() -> AuthUser | AnonymousUser:
    """The principal of the request being handled (:data:`ANONYMOUS` outside one)."""
    return _current.get()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a ``requires``/``login_required`` helper refuses a request, for any framework."""

    status: int
    error: str
    description: str
    headers: dict[str, str]


def refusal(
    user: BaseUser, granted: Collection[str], needed: Sequence[str], status_code: int = 403
) -> Refusal | None:
    """None when ``granted`` holds every one of ``needed``; else the refusal.

    Anonymous callers get 401 with ``WWW-Authenticate: Bearer`` (log in, then retry);
    authenticated ones ``status_code``: 403 is RFC 6750's ``insufficient_scope`` naming the
    scopes, any other status (Starlette's ``requires(status_code=404)`` idiom) says nothing.
    """
    if all(scope in granted for scope in needed):
        return None
    if not user.is_authenticated:
        return Refusal(
            401, "unauthorized", "authentication required", {"WWW-Authenticate": "Bearer"}
        )
    if status_code == 403:
        wanted = " ".join(needed)
        return Refusal(
            403,
            "insufficient_scope",
            f"requires scopes: {wanted}",
            {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{wanted}"'},
        )
    return Refusal(status_code, HTTPStatus(status_code).phrase.lower().replace(" ", "_"), "", {})
