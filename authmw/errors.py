"""The errors authmw raises.

Every error derives from :class:`AuthmwError`, which is never raised itself::

    AuthmwError
    ├── InvalidCredentials      wrong password or unknown user (indistinguishable on purpose)
    │   ├── UnknownUser         a password-less login named no registered user
    │   └── AccountDisabled     a password-less login named a disabled user
    ├── AccountLocked           too many failed logins; carries ``retry_after``
    ├── UserExists              registration of a user id that is taken
    ├── InvalidToken            a token was refused; ``reason`` says why
    │   └── RefreshTokenReused  a rotated refresh token came back; its family is revoked
    ├── InvalidInput            (also ValueError) a user id, password or argument is unacceptable
    │   └── MalformedAuthorization  an Authorization header that breaks RFC 6750
    ├── StorageUnavailable      the backend cannot be reached or failed; the cause is chained
    ├── ConfigurationError      (also ValueError) a setting is wrong; raised at construction/open
    └── BackupError             a backup file cannot be written or read, or is not a valid one

Errors carry the context a caller needs (which user, which reason, which backend) and never a
secret: no password, no token, no key, no connection password.

Each error also says how it is answered over HTTP, so that web apps need no mapping of their
own (``authmw.exception_handlers`` and the Flask extension use it): ``status_code``, ``headers``,
``error`` (a short machine-readable code) and ``description`` (text safe to show the client).

=====================  ======  =================================================================
error                  status  headers
=====================  ======  =================================================================
InvalidCredentials     401     ``WWW-Authenticate: Bearer``
AccountDisabled        403
AccountLocked          429     ``Retry-After`` (whole seconds, from ``retry_after``)
UserExists             409
InvalidToken           401     ``WWW-Authenticate: Bearer error="invalid_token"`` (RFC 6750)
InvalidInput           422     (the request was understood, its content is refused; FastAPI's
                               status for a body that fails validation)
MalformedAuthorization 400     ``WWW-Authenticate: Bearer error="invalid_request"``, as the edge
StorageUnavailable     503     ``Retry-After``
ConfigurationError     500     (the reason is logged by the handlers, never shown)
BackupError            500     (likewise)
=====================  ======  =================================================================
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

__all__ = [
    "AccountDisabled",
    "AccountLocked",
    "AuthmwError",
    "BackupError",
    "ConfigurationError",
    "CsrfFailed",
    "InvalidCredentials",
    "InvalidInput",
    "InvalidToken",
    "MalformedAuthorization",
    "RefreshTokenReused",
    "SessionTooLarge",
    "StorageUnavailable",
    "TokenRefusal",
    "UnknownUser",
    "UserExists",
]

TokenRefusal = Literal["malformed", "forged", "unknown", "expired", "revoked", "reused"]


class AuthmwError(Exception):
    """Root of every authmw error. Catch this to handle anything authmw raises.

    ``status_code``, ``headers``, ``error`` and ``description`` say how to answer it over HTTP.
    The default is a 500 that shows nothing of the message: an error a subclass does not map is
    a fault of the server, whose detail belongs in the log.
    """

    #: The HTTP status that answers this error.
    status_code: ClassVar[int] = 500
    #: A short machine-readable code, the ``error`` field of the JSON body.
    error: ClassVar[str] = "internal_error"
    #: Whether the message may be shown to the client as is (it names only what the client sent).
    _public: ClassVar[bool] = False
    _generic: ClassVar[str] = "internal server error"

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer must carry (``Retry-After``, ``WWW-Authenticate``)."""
        return {}

    @property
    def description(self) -> str:
        """Text for the client: the message when it is safe to show, a generic one otherwise."""
        return str(self) if self._public else self._generic


class InvalidCredentials(AuthmwError):
    """The user id or password is wrong. Unknown users and wrong passwords look the same."""

    status_code = 401
    error = "invalid_credentials"
    _generic = "invalid user id or password"

    def __init__(self, user_id: str) -> None:
        super().__init__(f"invalid credentials for user {user_id!r}")
        self.user_id = user_id

    @property
    def headers(self) -> dict[str, str]:
        """``WWW-Authenticate: Bearer``: RFC 9110 wants a challenge on every 401."""
        return {"WWW-Authenticate": "Bearer"}


class UnknownUser(InvalidCredentials):
    """A password-less login (``login_user``, ``issue_tokens``) named no registered user.

    A subclass of ``InvalidCredentials``, so the HTTP answer is the same 401 and code catching
    ``InvalidCredentials`` keeps working; password logins never raise it (an unknown user and a
    wrong password look the same there).
    """

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.args = (f"no user {user_id!r}",)


class AccountDisabled(InvalidCredentials):
    """A password-less login named a user whose account is disabled (``is_active`` false).

    Answered 403: the caller proved who the user is, and that user may not log in.
    """

    status_code = 403
    error = "account_disabled"
    _generic = "this account is disabled"

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.args = (f"account {user_id!r} is disabled",)

    @property
    def headers(self) -> dict[str, str]:
        """None: a 403 carries no challenge."""
        return {}


class AccountLocked(AuthmwError):
    """Too many failed logins: the account refuses logins for ``retry_after`` more seconds.

    ``reason`` says why: ``locked`` (the failures of this address reached the limit),
    ``throttled`` (the user's slow-down after many attempts from unknown addresses) or
    ``busy`` (as many attempts of this address as the limit allows are still being checked:
    nothing is locked, retry after ``retry_after``, about a second)."""

    def __init__(self, user_id: str, retry_after: float, reason: str = "locked") -> None:
        if reason == "busy":
            text = "has as many logins being checked as the limit allows"
        else:
            text = "is locked after too many failed logins"
        super().__init__(f"account {user_id!r} {text}; retry in {retry_after:.0f} s")
        self.user_id = user_id
        self.retry_after = retry_after
        self.reason = reason

    status_code = 429
    error = "account_locked"
    _generic = "too many failed logins; try again later"

    @property
    def headers(self) -> dict[str, str]:
        """``Retry-After``: the whole seconds left in the lockout, at least 1."""
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class UserExists(AuthmwError):
    """A user with this id is already registered."""

    status_code = 409
    error = "user_exists"
    _public = True

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id!r} already exists")
        self.user_id = user_id


class InvalidToken(AuthmwError):
    """A token or session id was refused.

    ``reason`` is one of ``"malformed"`` (not shaped like one of ours), ``"forged"`` (its keyed
    tag does not verify), ``"unknown"`` (no such token in storage, or its secret part is wrong),
    ``"expired"``, ``"revoked"`` or ``"reused"`` (a rotated refresh token presented again).
    ``token_id`` is the public id when it is known; the secret part is never kept.
    """

    def __init__(self, reason: TokenRefusal, *, token_id: str | None = None) -> None:
        detail = f"token {token_id!r} " if token_id else "token "
        super().__init__(f"{detail}refused: {reason}")
        self.reason: TokenRefusal = reason
        self.token_id = token_id

    status_code = 401
    error = "invalid_token"

    @property
    def description(self) -> str:
        """Why the token was refused, as the edge says it (never the token)."""
        return f"the token is {self.reason}"

    @property
    def headers(self) -> dict[str, str]:
        """The RFC 6750 challenge the edge sends for a refused bearer token."""
        return {
            "WWW-Authenticate": f'Bearer error="invalid_token", '
            f'error_description="{self.description}"'
        }


class RefreshTokenReused(InvalidToken):
    """A refresh token was used twice. Every token descended from the same login is revoked."""

    def __init__(self, *, token_id: str | None, user_id: str, family_id: str) -> None:
        super().__init__("reused", token_id=token_id)
        self.user_id = user_id
        self.family_id = family_id


class InvalidInput(AuthmwError, ValueError):
    """An argument is unacceptable (an empty user id, an oversized password, ...).

    ``field`` names the argument; the message says what is wrong without echoing secrets.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    status_code = 422
    error = "invalid_input"
    _public = True  # names the field and the problem; never echoes a secret


class CsrfFailed(AuthmwError):
    """A browser request lacked the CSRF token of its session (403).

    Raised by ``login`` for a password login posted as a form without the pre-login
    session's token (login CSRF); the middleware refuses other unsafe requests itself.
    """

    status_code = 403
    error = "csrf_failed"
    _public = True  # says what is missing, names nothing secret


class SessionTooLarge(InvalidInput):
    """An anonymous session's data is above ``AuthConfig.anonymous_session_max_bytes`` (413).

    The bound that keeps visitors who never logged in from filling storage.
    """

    status_code = 413
    error = "session_too_large"


class StorageUnavailable(AuthmwError):
    """The storage backend could not serve the request. The driver's error is ``__cause__``."""

    def __init__(self, backend: str, operation: str, detail: str = "") -> None:
        message = f"{backend} storage unavailable during {operation}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.backend = backend
        self.operation = operation
        self.detail = detail

    status_code = 503
    error = "service_unavailable"
    _generic = "authentication storage is unavailable"
    #: Seconds sent in ``Retry-After``; the handlers use the middleware's ``retry_after``
    #: option instead when the request went through it. Same default as the option.
    retry_after: int = 5

    @property
    def headers(self) -> dict[str, str]:
        """``Retry-After``: when to try again."""
        return {"Retry-After": str(self.retry_after)}


class ConfigurationError(AuthmwError, ValueError):
    """A setting is missing or wrong. Raised when a config is built or a storage is opened."""


class MalformedAuthorization(InvalidInput):
    """The ``Authorization`` header is not a well-formed RFC 6750 bearer credential.

    The middleware answers 400 with ``WWW-Authenticate: Bearer error="invalid_request"``.
    """

    status_code = 400
    error = "invalid_request"

    def __init__(self, problem: str) -> None:
        super().__init__("Authorization", problem)

    @property
    def headers(self) -> dict[str, str]:
        """The RFC 6750 challenge the edge sends for a malformed header."""
        return {
            "WWW-Authenticate": 'Bearer error="invalid_request", '
            f'error_description="{self.problem}"'
        }


class BackupError(AuthmwError):
    """A backup file could not be written or read, or is not a valid authmw backup.

    The message names the file and the problem (and the line, for a damaged portable backup).
    """
