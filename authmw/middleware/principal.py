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
from typing import Literal, NoReturn

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser

from ..models import AuthToken, SessionData

__all__ = [
    "ANONYMOUS",
    "AnonymousUser",
    "AuthUser",
    "FrozenCredentials",
    "Refusal",
    "ScopeList",
    "credentials_for",
    "current_user",
    "refusal",
]


class AuthUser(BaseUser):
    """An authenticated user, by bearer token or by session cookie.

    ``token`` is the verified :class:`AuthToken` (bearer) and ``session_record`` the
    :class:`SessionData` (session); the other is None. Read-only: the middleware hands the
    same object to every request of a token while its record is unchanged.
    """

    # Read-only properties over private slots, not a __setattr__ that refuses writes: that
    # would make building one (every session request) six times as costly (~0.8 µs).
    __slots__ = (
        "_auth_method",
        "_credentials",
        "_permissions",
        "_roles",
        "_session_record",
        "_token",
        "_user_id",
    )

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
        self._user_id, self._roles, self._permissions = user_id, roles, permissions
        self._auth_method, self._token, self._session_record = auth_method, token, session_record
        self._credentials = _credentials(permissions, roles)

    @classmethod
    def from_token(cls, token: AuthToken) -> AuthUser:
        """The principal behind a verified access token."""
        # Built field by field: keyword __init__ costs about twice as much.
        user = cls.__new__(cls)
        user._user_id, user._roles, user._permissions = (
            token.user_id,
            token.roles,
            token.permissions,
        )
        user._auth_method, user._token, user._session_record = "bearer", token, None
        user._credentials = _credentials(token.permissions, token.roles)
        return user

    @classmethod
    def from_session(cls, session: SessionData) -> AuthUser:
        """The principal behind a live session of a user (``ValueError`` for an anonymous
        session, which has no principal)."""
        if session.user_id is None:
            raise ValueError("an anonymous session has no principal")
        user = cls.__new__(cls)
        user._user_id, user._roles = session.user_id, session.roles
        user._permissions, user._auth_method = session.permissions, "session"
        user._token, user._session_record = None, session
        user._credentials = _credentials(session.permissions, session.roles)
        return user

    @property
    def user_id(self) -> str:
        """The user's id."""
        return self._user_id

    @property
    def roles(self) -> tuple[str, ...]:
        """The user's roles (as they stand now, not as when the token was issued)."""
        return self._roles

    @property
    def permissions(self) -> tuple[str, ...]:
        """The user's permissions (as they stand now)."""
        return self._permissions

    @property
    def auth_method(self) -> Literal["bearer", "session"]:
        """How the request authenticated."""
        return self._auth_method

    @property
    def token(self) -> AuthToken | None:
        """The verified access token's record (bearer), else None."""
        return self._token

    @property
    def session_record(self) -> SessionData | None:
        """The session's record (session cookie), else None."""
        return self._session_record

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


class ScopeList(list[str]):
    """A list of scopes that cannot be changed: one is shared by every request of a principal
    (a change made by one request's code would reach the next ones)."""

    __slots__ = ()

    def _immutable(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("the scopes of a request cannot be changed")

    append = extend = insert = remove = pop = clear = sort = reverse = _immutable
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _immutable

    def __reduce__(self) -> tuple[type[list[str]], tuple[list[str]]]:
        # copy and pickle rebuild a list by appending to it: they get a plain list instead.
        return list, (list(self),)


class FrozenCredentials(AuthCredentials):
    """Starlette's ``AuthCredentials`` with scopes that cannot be changed (:class:`ScopeList`),
    built once per principal instead of once per request."""

    def __init__(self, scopes: Sequence[str] = ()) -> None:
        object.__setattr__(self, "scopes", ScopeList(scopes))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"FrozenCredentials is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"FrozenCredentials is immutable (cannot delete {name!r})")

    def __repr__(self) -> str:
        return f"FrozenCredentials({list(self.scopes)!r})"


_NO_CREDENTIALS = FrozenCredentials()
_credentials_cache: dict[tuple[tuple[str, ...], tuple[str, ...]], FrozenCredentials] = {}


def _credentials(permissions: tuple[str, ...], roles: tuple[str, ...]) -> FrozenCredentials:
    """The credentials of a set of permissions and roles, shared by every principal with it."""
    key = (permissions, roles)
    found = _credentials_cache.get(key)
    if found is None:
        # Few distinct role/permission sets exist in an app; bounded all the same.
        if len(_credentials_cache) > 4096:
            _credentials_cache.clear()
        scopes = ("authenticated", *permissions, *(f"role:{r}" for r in roles))
        found = _credentials_cache[key] = FrozenCredentials(scopes)
    return found


def credentials_for(user: BaseUser) -> AuthCredentials:
    """The Starlette credentials (scopes) of a principal; shared and immutable."""
    return user._credentials if isinstance(user, AuthUser) else _NO_CREDENTIALS


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
