"""Fits WSGIAuthMiddleware to Flask: ``AuthMW(app, auth)``, ``current_user``, ``login_required``.

``AuthMW`` wraps ``app.wsgi_app`` in :class:`authmw.WSGIAuthMiddleware`, so every request is
authenticated before Flask sees it and the principal sits in ``request.environ``. The helpers
here read it from there; nothing is verified twice. Needs the ``flask`` extra.

    auth = AuthFramework(storage_from_url("redis://localhost"), AuthConfig(secret_key=...))
    authmw_ext = AuthMW(app, auth, login_view="login_page")

    @app.get("/me")
    @login_required
    def me():
        return {"user": current_user.identity}

Without a framework, ``AuthMW(app)`` builds one from ``app.config``: ``AUTHMW_STORAGE_URL``
(required), ``AUTHMW_SECRET_KEY``, any other :class:`authmw.AuthConfig` field as
``AUTHMW_<FIELD>`` (``AUTHMW_SESSION_IDLE_TIMEOUT``) and the cookie's as ``AUTHMW_COOKIE_<FIELD>``
(``AUTHMW_COOKIE_SECURE``, ``AUTHMW_COOKIE_NAME``, ``AUTHMW_COOKIE_SAME_SITE``, ...).
``current_user`` is typed ``AuthUser | AnonymousUser``: Flask-Login's ``is_authenticated``,
``is_active``, ``is_anonymous`` and ``get_id()`` work on both, and ``current_user.user_id`` is
``None`` for anonymous requests.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    has_request_context,
    redirect,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException, default_exceptions
from werkzeug.local import LocalProxy

from ..config import AuthConfig, CookieConfig
from ..errors import AuthmwError, ConfigurationError
from ..framework import AuthFramework
from ..middleware import templating, wsgi
from ..middleware._edge import prefers_html
from ..middleware.handlers import error_answer
from ..middleware.principal import ANONYMOUS, AnonymousUser, AuthUser, credentials_for, refusal
from ..middleware.principal import current_user as _context_user
from ..storage import storage_from_url

__all__ = [
    "AnonymousUser",
    "AuthMW",
    "csrf_token",
    "current_session",
    "current_user",
    "framework_from_config",
    "login",
    "login_required",
    "login_user",
    "logout",
    "requires",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_EXTENSION = "authmw"


class AuthMW:
    """The Flask extension: ``AuthMW(app, auth)`` or ``ext = AuthMW(); ext.init_app(app, auth)``.

    Keyword options go to :class:`authmw.WSGIAuthMiddleware` (``options=MiddlewareOptions(...)``
    and/or its fields ``bearer``, ``session_cookie``, ``csrf``, ``csrf_header``,
    ``csrf_cookie``, ``exclude_paths``, ``retry_after``; and ``timeout``). ``login_view`` is
    the endpoint that :func:`login_required` redirects browsers to (requests that prefer HTML
    over JSON), with the page they wanted as ``?next=``; without it, or for API clients,
    anonymous requests get a 401 JSON answer.

    ``error_handlers`` (on by default) registers a handler for every :class:`authmw.AuthmwError`
    (``app.register_error_handler``): the error's own status and headers (409 for a duplicate
    sign-up, 503 with ``Retry-After`` when the storage is down), as JSON, or as HTML by
    ``Accept``; an HTML answer goes through the app's ``errorhandler(<status>)`` page when it
    has one. A handler the app registers for a subclass (``errorhandler(UserExists)``) wins.
    """

    def __init__(
        self,
        app: Flask | None = None,
        auth: AuthFramework | None = None,
        *,
        login_view: str | None = None,
        error_handlers: bool = True,
        **options: Any,
    ) -> None:
        self.auth = auth
        self.login_view = login_view
        self.error_handlers = error_handlers
        self.options = options
        self.middleware: wsgi.WSGIAuthMiddleware | None = None
        if app is not None:
            self.init_app(app, auth)

    def init_app(self, app: Flask, auth: AuthFramework | None = None) -> None:
        """Wrap ``app.wsgi_app`` in the middleware and register in ``app.extensions``.

        Without a framework (here or to the constructor) one is built from ``app.config``
        (:func:`framework_from_config`); ``TypeError`` when ``AUTHMW_STORAGE_URL`` is not set
        either, ``ConfigurationError`` for a bad or misspelled ``AUTHMW_*`` setting.
        """
        auth = auth or self.auth
        if auth is None:
            if "AUTHMW_STORAGE_URL" not in app.config:
                raise TypeError(
                    "AuthMW.init_app needs the AuthFramework, init_app(app, auth), or "
                    "app.config['AUTHMW_STORAGE_URL'] (and AUTHMW_SECRET_KEY) to build one"
                )
            auth = framework_from_config(app.config)
        self.auth = auth
        middleware = wsgi.WSGIAuthMiddleware(app.wsgi_app, auth, **self.options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[_EXTENSION] = self
        self.middleware = middleware
        if self.error_handlers:
            app.register_error_handler(AuthmwError, _answer_error)
        # {{ csrf_token() }} and {{ csrf_field() }} in templates: a form needs no JavaScript.
        templating.install(app.jinja_env)

    def _middleware(self) -> wsgi.WSGIAuthMiddleware:
        if self.middleware is None:
            raise RuntimeError("AuthMW is not attached to an app yet: call init_app(app, auth)")
        return self.middleware

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a framework coroutine on the middleware's loop, e.g.
        ``ext.run(auth.authenticate(user, password))`` in a view that issues bearer tokens.

        See :meth:`authmw.WSGIAuthMiddleware.run`.
        """
        if self.middleware is None:
            coro.close()  # never run: no "coroutine was never awaited" warning
        return self._middleware().run(coro, timeout)

    def close(self) -> None:
        """Close the framework and stop the middleware's loop (also done at exit)."""
        if self.middleware is not None:
            self.middleware.close()


_COOKIE_PREFIX = "AUTHMW_COOKIE_"
_NOT_CONFIG = frozenset({"cookie", "password_hasher", "generated_secret"})


def framework_from_config(config: Mapping[str, Any]) -> AuthFramework:
    """An :class:`AuthFramework` from Flask settings (``app.config``).

    ``AUTHMW_STORAGE_URL`` (required: ``storage_from_url``), ``AUTHMW_SECRET_KEY``, every
    other :class:`authmw.AuthConfig` field as ``AUTHMW_<FIELD>`` and every
    :class:`authmw.CookieConfig` field as ``AUTHMW_COOKIE_<FIELD>``. Raises
    ``ConfigurationError`` for a missing URL, a bad value, or an ``AUTHMW_*`` name that is no
    setting (with the closest one).
    """
    fields = {
        f"AUTHMW_{f.name.upper()}": f.name
        for f in dataclasses.fields(AuthConfig)
        if f.init and f.name not in _NOT_CONFIG
    }
    cookie_fields = {
        f"{_COOKIE_PREFIX}{f.name.upper()}": f.name for f in dataclasses.fields(CookieConfig)
    }
    known = {"AUTHMW_STORAGE_URL", *fields, *cookie_fields}
    for key in config:
        if isinstance(key, str) and key.startswith("AUTHMW_") and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigurationError(
                f"app.config[{key!r}] is no authmw setting{hint}; settings: "
                f"{', '.join(sorted(known))}"
            )
    url = config.get("AUTHMW_STORAGE_URL")
    if not url:
        raise ConfigurationError("app.config['AUTHMW_STORAGE_URL'] is required")
    cookie = CookieConfig(
        **{name: config[key] for key, name in cookie_fields.items() if key in config}
    )
    settings = {name: config[key] for key, name in fields.items() if key in config}
    return AuthFramework(storage_from_url(url), AuthConfig(cookie=cookie, **settings))


def _user() -> AuthUser | AnonymousUser:
    if has_request_context():
        user: AuthUser | AnonymousUser = request.environ.get(wsgi.USER_KEY, ANONYMOUS)
        return user
    return _context_user()


def _session() -> dict[str, Any]:
    if not has_request_context():
        raise RuntimeError("current_session is only available while handling a request")
    data: dict[str, Any] = request.environ.get(wsgi.SESSION_KEY, {})
    return data


#: The request's principal: an :class:`authmw.AuthUser`, or the
#: :class:`~authmw.middleware.principal.AnonymousUser` (``user_id`` None) for anonymous
#: requests and outside requests. Flask-Login's ``is_authenticated``, ``is_active``,
#: ``is_anonymous`` and ``get_id()`` work on both.
current_user: AuthUser | AnonymousUser = cast(AuthUser | AnonymousUser, LocalProxy(_user))

#: The server-side session's data (a dict; changes are saved when the response starts).
#: Empty and unsaved for requests without a session.
current_session: dict[str, Any] = cast(dict[str, Any], LocalProxy(_session))


def login(user_id: str, password: str) -> AuthUser:
    """Log the current request's client in with a new session (the id rotates if one existed).

    The response carries the session cookie (and the CSRF cookie). Raises
    ``InvalidCredentials``, ``AccountLocked``, ``InvalidInput`` or ``StorageUnavailable``.
    """
    return wsgi.login(request.environ, user_id, password)


def login_user(user_id: str) -> AuthUser:
    """Log the current request's client in as ``user_id`` without a password (SSO, OAuth
    callbacks, magic links, log in after sign-up), with a new session like :func:`login`.

    Audited as a ``login`` with ``method="passwordless"``. Raises ``UnknownUser`` or
    ``AccountDisabled`` (both ``InvalidCredentials``), ``InvalidInput`` or
    ``StorageUnavailable``.
    """
    return wsgi.login_user(request.environ, user_id)


def logout() -> None:
    """End the current request's session server-side; the response deletes the cookie."""
    wsgi.logout(request.environ)


def csrf_token() -> str:
    """The CSRF token of the current request's session, for a form's ``csrf_token`` field
    (an anonymous session starts if the visitor has none). Templates have it as
    ``{{ csrf_token() }}``, and ``{{ csrf_field() }}`` is the whole hidden input."""
    return wsgi.csrf_token(request.environ)


def _extension() -> AuthMW:
    extension = current_app.extensions.get(_EXTENSION)
    if not isinstance(extension, AuthMW):
        raise RuntimeError("authmw decorators need AuthMW(app, auth) set up on this app")
    return extension


def _json(status: int, body: dict[str, str], headers: dict[str, str]) -> Response:
    return current_app.response_class(
        json.dumps(body), status=status, headers=headers, mimetype="application/json"
    )


def _refuse(needed: list[str], status_code: int = 403) -> Response | None:
    """None when the request's principal holds every scope of ``needed``; else the answer.

    Clients preferring HTML (browsers) are redirected to ``login_view`` when anonymous, or
    get ``flask.abort(status)``, so the app's ``errorhandler(401/403)`` pages render; API
    clients get JSON with the ``WWW-Authenticate`` challenge.
    """
    extension = _extension()
    user = _user()
    granted = request.environ.get(wsgi.AUTH_KEY) or credentials_for(user)
    refused = refusal(user, granted.scopes, needed, status_code)
    if refused is None:
        return None
    if prefers_html(request.headers.get("Accept")):
        if refused.status == 401 and extension.login_view is not None:
            target = request.full_path if request.query_string else request.path
            return cast(Response, redirect(url_for(extension.login_view, next=target)))
        abort(refused.status, description=refused.description or None)
    body = {"error": refused.error}
    if refused.description:
        body["error_description"] = refused.description
    return current_app.response_class(
        json.dumps(body),
        status=refused.status,
        headers=refused.headers,
        mimetype="application/json",
    )


def _answer_error(exc: AuthmwError) -> Response:
    """The registered Flask error handler: :func:`authmw.middleware.handlers.error_answer`.

    An HTML answer is handed to the app's own page for the status when it registered one.
    """
    extension = current_app.extensions.get(_EXTENSION)
    middleware = extension.middleware if isinstance(extension, AuthMW) else None
    retry_after = middleware.options.retry_after if middleware is not None else None
    answer = error_answer(exc, request.headers.get("Accept"), retry_after=retry_after)
    page: Any = None
    http_error = default_exceptions.get(answer.status)
    if answer.media_type == "text/html" and http_error is not None:
        # Flask's lookup by status code: the app's errorhandler(409) page, if any.
        found = current_app.handle_http_exception(http_error(description=exc.description))
        if not isinstance(found, HTTPException):
            page = found
    if page is None:
        response = current_app.response_class(
            answer.body, status=answer.status, mimetype=answer.media_type
        )
    else:
        response = current_app.make_response(page)
        response.status_code = answer.status
    for name, value in answer.headers.items():
        response.headers[name] = value
    return response


def _guard(view: F, check: Callable[[], Response | None]) -> F:
    """``view`` with ``check`` run first; a response from ``check`` replaces the view's."""
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            refused = check()
            if refused is not None:
                return refused
            return await view(*args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        refused = check()
        if refused is not None:
            return refused
        return view(*args, **kwargs)

    return cast(F, wrapper)


def login_required(view: F) -> F:
    """Let only authenticated requests (bearer or session) reach ``view``.

    Anonymous API requests get 401 with ``WWW-Authenticate: Bearer`` and a JSON body; those
    preferring HTML (browsers) a redirect to ``AuthMW(login_view=...)``, or without one
    ``flask.abort(401)``, which renders the app's ``errorhandler(401)`` page. Raises
    ``RuntimeError`` at request time if ``AuthMW`` is not set up on the app.
    """

    def check() -> Response | None:
        return _refuse(["authenticated"])

    return _guard(view, check)


def requires(*scopes: str, status_code: int = 403) -> Callable[[F], F]:
    """Let only requests whose principal has every one of ``scopes`` reach the view.

    Scopes are those of ``AuthCredentials``: ``"authenticated"``, each permission, and
    ``"role:<name>"`` per role. Anonymous requests are answered as by :func:`login_required`;
    authenticated ones lacking a scope get ``status_code`` (403: ``insufficient_scope`` with
    an RFC 6750 challenge), as JSON, or through ``flask.abort`` for clients preferring HTML
    (the app's ``errorhandler(403)`` page).
    """
    for scope in scopes:
        if not isinstance(scope, str):
            raise TypeError(f"requires() takes scope names as strings, got {scope!r}")
    needed = list(scopes)

    def decorate(view: F) -> F:
        def check() -> Response | None:
            return _refuse(needed, status_code)

        return _guard(view, check)

    return decorate
