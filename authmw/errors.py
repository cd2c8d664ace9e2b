"""The errors authmw raises.

Every error derives from :class:`AuthmwError`, which is never raised itself::

    AuthmwError
    ├── InvalidCredentials      wrong password or unknown user (indistinguishable on purpose)
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
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AccountLocked",
    "AuthmwError",
    "BackupError",
    "ConfigurationError",
    "InvalidCredentials",
    "InvalidInput",
    "InvalidToken",
    "MalformedAuthorization",
    "RefreshTokenReused",
    "StorageUnavailable",
    "TokenRefusal",
    "UserExists",
]

TokenRefusal = Literal["malformed", "forged", "unknown", "expired", "revoked", "reused"]


class AuthmwError(Exception):
    """Root of every authmw error. Catch this to handle anything authmw raises."""


class InvalidCredentials(AuthmwError):
    """The user id or password is wrong. Unknown users and wrong passwords look the same."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"invalid credentials for user {user_id!r}")
        self.user_id = user_id


class AccountLocked(AuthmwError):
    """Too many failed logins: the account refuses logins for ``retry_after`` more seconds."""

    def __init__(self, user_id: str, retry_after: float) -> None:
        super().__init__(
            f"account {user_id!r} is locked after too many failed logins; "
            f"retry in {retry_after:.0f} s"
        )
        self.user_id = user_id
        self.retry_after = retry_after


class UserExists(AuthmwError):
    """A user with this id is already registered."""

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


class StorageUnavailable(AuthmwError):
    """The storage backend could not serve the request. The driver's error is ``__cause__``."""

    def __init__(self, backend: str, operation: str, detail: str = "") -> None:
        message = f"{backend} storage unavailable during {operation}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.backend = backend
        self.operation = operation
        self.detail = detail


class ConfigurationError(AuthmwError, ValueError):
    """A setting is missing or wrong. Raised when a config is built or a storage is opened."""


class MalformedAuthorization(InvalidInput):
    """The ``Authorization`` header is not a well-formed RFC 6750 bearer credential.

    The middleware answers 400 with ``WWW-Authenticate: Bearer error="invalid_request"``.
    """

    def __init__(self, problem: str) -> None:
        super().__init__("Authorization", problem)


class BackupError(AuthmwError):
    """A backup file could not be written or read, or is not a valid authmw backup.

    The message names the file and the problem (and the line, for a damaged portable backup).
    """
