"""authmw: authentication middleware and storage for Starlette, FastAPI and Flask.

>>> from authmw import AuthFramework, AuthConfig, InMemoryStorage
>>> auth = AuthFramework(InMemoryStorage(), AuthConfig(secret_key=...))  # doctest: +SKIP
"""

from __future__ import annotations

from ._devices import SessionInfo, TokenInfo
from ._version import __version__ as __version__
from .config import AuthConfig, CookieConfig
from .errors import (
    AccountDisabled,
    AccountLocked,
    AuthmwError,
    BackupError,
    ConfigurationError,
    CsrfFailed,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    MalformedAuthorization,
    RefreshTokenReused,
    SessionTooLarge,
    StorageUnavailable,
    UnknownUser,
    UserExists,
)
from .framework import AuthFramework
from .middleware import MiddlewareOptions
from .middleware.asgi import AuthMiddleware, csrf_token, login, login_user, logout
from .middleware.handlers import exception_handlers, handle_authmw_error
from .middleware.principal import AuthUser, current_user
from .middleware.wsgi import WSGIAuthMiddleware
from .models import AuditEvent, AuthToken, SessionData, StorageStatistics, UserRecord
from .storage import InMemoryConfig, InMemoryStorage, storage_from_url

__all__ = [
    "AccountDisabled",
    "AccountLocked",
    "AuditEvent",
    "AuthConfig",
    "AuthFramework",
    "AuthMiddleware",
    "AuthToken",
    "AuthUser",
    "AuthmwError",
    "BackupError",
    "ConfigurationError",
    "CookieConfig",
    "CsrfFailed",
    "InMemoryConfig",
    "InMemoryStorage",
    "InvalidCredentials",
    "InvalidInput",
    "InvalidToken",
    "MalformedAuthorization",
    "MiddlewareOptions",
    "RefreshTokenReused",
    "SessionData",
    "SessionInfo",
    "SessionTooLarge",
    "StorageStatistics",
    "StorageUnavailable",
    "TokenInfo",
    "UnknownUser",
    "UserExists",
    "UserRecord",
    "WSGIAuthMiddleware",
    "csrf_token",
    "current_user",
    "exception_handlers",
    "handle_authmw_error",
    "login",
    "login_user",
    "logout",
    "storage_from_url",
]
