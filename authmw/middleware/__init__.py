"""The HTTP edge: ASGI and WSGI middleware that put the principal on every request.

:class:`AuthMiddleware` (ASGI: Starlette, FastAPI) and :class:`WSGIAuthMiddleware` (Flask or
any WSGI app) share one decision (:mod:`authmw.middleware._edge`): credentials in, principal or
refusal out, cookies on the way back. Both are configured by :class:`MiddlewareOptions` (or the
same names as keyword arguments). :class:`AuthUser` is the principal; :func:`current_user`
reads it anywhere during the request; :func:`login` and :func:`logout` are ASGI's
(:func:`authmw.middleware.wsgi.login` and ``logout`` are WSGI's).
"""

from __future__ import annotations

from ._options import MiddlewareOptions
from .asgi import AuthMiddleware, csrf_token, login, login_user, logout
from .principal import AuthUser, credentials_for, current_user
from .wsgi import WSGIAuthMiddleware

__all__ = [
    "AuthMiddleware",
    "AuthUser",
    "MiddlewareOptions",
    "WSGIAuthMiddleware",
    "credentials_for",
    "csrf_token",
    "current_user",
    "login",
    "login_user",
    "logout",
]
