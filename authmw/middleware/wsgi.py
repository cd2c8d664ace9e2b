"""Translates WSGI to the edge: ``WSGIAuthMiddleware`` authenticates Flask or any WSGI app.

It makes the same decision as ``AuthMiddleware`` (both call
:class:`authmw.middleware._edge.Edge`). That decision is async, so the middleware owns an event
loop running in a daemon thread, started on the first request, and request threads hand it
their Edge calls and wait for the answer; a token or session the storage answers from memory
(``CachedStorage``) is decided on the request's own thread instead. Storage connections (Redis,
asyncpg pools) belong to the loop that opened them, so the framework must be opened there: it
opens itself on first use, which happens on the middleware's loop unless the application
opened it elsewhere first.

Environ keys set for the app: ``authmw.user`` (an :class:`authmw.AuthUser` or Starlette's
``UnauthenticatedUser``), ``authmw.auth`` (``AuthCredentials``) and ``authmw.session`` (the
server-side session's data, saved when changed). :func:`authmw.current_user` works during the
request, including while the response body is produced.
"""

from __future__ import annotations

import asyncio
import io
import logging
import weakref
from collections.abc import Coroutine, Iterable, Iterator
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from .._time import Duration, seconds
from ..errors import SessionTooLarge, StorageUnavailable
from ..framework import AuthFramework
from ..storage.base import SupportsCallTimeout
from ._edge import SAFE_METHODS, Edge, Refusal, RequestState
from ._loop_thread import LoopGone, LoopThread
from ._options import MiddlewareOptions, OptionKeywords, resolve
from .principal import AuthUser, _current, credentials_for

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "AUTH_KEY",
    "SESSION_KEY",
    "USER_KEY",
    "WSGIAuthMiddleware",
    "csrf_token",
    "login",
    "login_user",
    "logout",
]

log = logging.getLogger("authmw.middleware")

T = TypeVar("T")

USER_KEY = "authmw.user"
AUTH_KEY = "authmw.auth"
SESSION_KEY = "authmw.session"
_STATE_KEY = "authmw._state"
_MIDDLEWARE_KEY = "authmw._middleware"


def _default_timeout(auth: AuthFramework) -> float:
    """The storage's call timeout and a margin for the trip through the loop."""
    storage = auth.storage
    call = storage.call_timeout if isinstance(storage, SupportsCallTimeout) else None
    # A request makes its storage calls one after another; a hung storage fails the first one
    # within call_timeout, so one call's bound plus the loop's own delay is enough.
    return 30.0 if call is None else call + 1.0


class WSGIAuthMiddleware:
    """Authenticate every request of a WSGI app, as ``AuthMiddleware`` does for ASGI.

    ``app.wsgi_app = WSGIAuthMiddleware(app.wsgi_app, auth)`` in Flask (or use
    :class:`authmw.integrations.flask.AuthMW`), ``WSGIAuthMiddleware(app, auth)`` elsewhere.
    Options are ``AuthMiddleware``'s (:class:`authmw.MiddlewareOptions`' fields as keyword
    arguments, or ``options=MiddlewareOptions(...)`` with keywords overriding its fields); plus
    ``timeout``, the seconds (or ``timedelta``) a request waits for the loop before it is
    answered 503: by default 1 s more than the storage's ``call_timeout``, so a hung storage
    never holds a worker thread much longer than one storage call may take (30 s for a
    storage that does not say). Raises ``ConfigurationError`` for a bad option.

    One middleware per framework: the framework's storage connections live on this
    middleware's loop. Call :meth:`close` at shutdown (it also runs at interpreter exit);
    a request after ``close()`` starts a new loop and reopens the framework.
    """

    def __init__(
        self,
        app: WSGIApplication,
        auth: AuthFramework,
        *,
        options: MiddlewareOptions | None = None,
        timeout: Duration | None = None,
        **keywords: Unpack[OptionKeywords],
    ) -> None:
        self.app = app
        self.auth = auth
        self.options = options = resolve(options, keywords)
        self.edge = Edge(auth, options)
        self.timeout = _default_timeout(auth) if timeout is None else seconds(timeout, "timeout")
        self._csrf_key = "HTTP_" + options.csrf_header.upper().replace("-", "_")
        self._bearer = options.bearer
        # Seen as a substring of the Cookie header whenever the parser could find the cookie.
        self._cookie_name = self.edge.cookie_name if options.session_cookie else None
        self._has_exclusions = bool(options.exclude_paths)
        self._form_csrf = options.csrf and options.session_cookie
        self._loop = LoopThread()
        # Weakly bound: closes the framework and stops the thread at exit (or when the
        # middleware is collected) without keeping the middleware alive.
        self._finalizer = weakref.finalize(self, self._loop.stop, auth, self.timeout)

    def __repr__(self) -> str:
        return f"WSGIAuthMiddleware(app={self.app!r}, auth={self.auth!r})"

    # -- the loop ------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the middleware's loop from synchronous code and return its result.

        Use it for framework calls outside the request flow, e.g.
        ``middleware.run(auth.register_user("alice", "pw"))`` or issuing a bearer token in a
        Flask view. Raises what the coroutine raises, and ``TimeoutError`` when it takes longer
        than ``timeout`` (default: the middleware's ``timeout``); the coroutine is then
        cancelled. Must not be called from the loop's own thread.
        """
        return self._loop.run(coro, self.timeout if timeout is None else timeout)

    def close(self) -> None:
        """Close the framework on the loop's thread, then stop the loop and its thread."""
        self._loop.stop(self.auth, self.timeout)

    def __enter__(self) -> WSGIAuthMiddleware:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T], operation: str) -> T:
        """:meth:`run` for the request path: a loop that cannot answer is a storage outage."""
        try:
            return self._loop.run(coro, self.timeout)
        except (TimeoutError, asyncio.CancelledError, LoopGone) as exc:
            raise StorageUnavailable("wsgi", operation, str(exc) or type(exc).__name__) from exc

    # -- requests ------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        edge = self.edge
        if self._has_exclusions and edge.excluded(
            environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        ):
            state = RequestState(edge)
            self._attach(environ, state)
            return self._serve(environ, start_response, state, finish=False)

        authorization: str | None = environ.get("HTTP_AUTHORIZATION")
        cookie: str | None = environ.get("HTTP_COOKIE")
        if (authorization is None or not self._bearer) and not (
            cookie and self._cookie_name and self._cookie_name in cookie
        ):
            # No credentials the Edge would look at: anonymous, without a trip to the loop.
            state = RequestState(edge)
        else:
            # WSGI strings are bytes decoded as latin-1; anything else is not from the wire.
            raw = None if authorization is None else authorization.encode("latin-1", "replace")
            method, csrf = environ.get("REQUEST_METHOD", "GET"), environ.get(self._csrf_key)
            if (
                csrf is None
                and self._form_csrf
                and cookie
                and method not in SAFE_METHODS
                # Only a session cookie makes the token count: other forms are not buffered.
                and self.edge.cookie_name in cookie
            ):
                # A plain HTML form sends its token in the body: read it, hand the app a copy.
                found = _form_token(edge, environ, method)
                if isinstance(found, Refusal):
                    return _refuse(found.negotiated(environ.get("HTTP_ACCEPT")), start_response)
                csrf = found
            # A cached token or session (CachedStorage) is answered here, on the request's own
            # thread; only what needs I/O makes the trip to the loop.
            result = edge.authenticate_nowait(method, raw, cookie, csrf)
            if result is None:
                try:
                    result = self._call(
                        edge.authenticate(method, raw, cookie, csrf), "authenticate"
                    )
                except StorageUnavailable as exc:
                    edge.outage_log.warning("refusing request with 503", exc)
                    result = edge.unavailable()
            if isinstance(result, Refusal):
                return _refuse(result.negotiated(environ.get("HTTP_ACCEPT")), start_response)
            state = result
        self._attach(environ, state)
        return self._serve(environ, start_response, state, finish=True)

    def _attach(self, environ: WSGIEnvironment, state: RequestState) -> None:
        environ[_STATE_KEY] = state
        environ[_MIDDLEWARE_KEY] = self
        _publish(environ, state)

    def _serve(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        state: RequestState,
        *,
        finish: bool,
    ) -> Iterable[bytes]:
        response = _Response(self, environ, state, start_response, finish)
        token = _current.set(state.user)
        try:
            result = self.app(environ, response.start_response)
        finally:
            _current.reset(token)
        response.result = result
        if response.refusal is not None:
            # The session change could not be saved: the 503 replaces the app's answer.
            response.close()
            return [response.refusal.body_bytes()]
        file_wrapper = environ.get("wsgi.file_wrapper")
        if response.started and isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # The server's own file wrapper runs no app code when iterated or closed; handing
            # it back unwrapped keeps the server's sendfile path.
            return result
        return response

    def _finish(self, environ: WSGIEnvironment, state: RequestState) -> list[str]:
        # The app may have replaced the dict or logged in/out: read back what it left.
        state.session = environ.get(SESSION_KEY, state.session)
        # Only a session change to save makes the trip to the loop.
        cookies = self.edge.finish_nowait(state)
        if cookies is None:
            cookies = self._call(self.edge.finish(state), "finish")
        return cookies


class _Response:
    """One request's ``start_response`` wrapper and the body iterable handed to the server.

    ``start_response`` saves the session and adds the ``Set-Cookie`` headers; the iterable sets
    the context variable around every step of the app's body (so it is right in streamed
    bodies and never outlives the request) and closes the app's iterable.
    """

    __slots__ = (
        "_cookies",
        "_environ",
        "_finish",
        "_iterator",
        "_middleware",
        "_start_response",
        "_state",
        "refusal",
        "result",
        "started",
    )

    def __init__(
        self,
        middleware: WSGIAuthMiddleware,
        environ: WSGIEnvironment,
        state: RequestState,
        start_response: StartResponse,
        finish: bool,
    ) -> None:
        self._middleware = middleware
        self._environ = environ
        self._state = state
        self._start_response = start_response
        self._finish = finish
        self._cookies: list[str] | None = None
        self._iterator: Iterator[bytes] | None = None
        self.refusal: Refusal | None = None
        self.result: Iterable[bytes] | None = None
        self.started = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Any:
        if self.refusal is not None:
            return _discard
        if self._finish:
            if self._cookies is None:
                try:
                    self._cookies = self._middleware._finish(self._environ, self._state)
                except (StorageUnavailable, SessionTooLarge) as exc:
                    # The change cannot be saved: say so instead of pretending it was.
                    self.refusal = self._middleware.edge.finish_refusal(exc).negotiated(
                        self._environ.get("HTTP_ACCEPT")
                    )
                    _refuse(self.refusal, self._start_response, exc_info)
                    return _discard
            if self._cookies:
                headers = [*headers, *(("Set-Cookie", value) for value in self._cookies)]
        self.started = True
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        token = _current.set(self._state.user)
        try:
            if self._iterator is None:
                self._iterator = iter(() if self.result is None else self.result)
            chunk = next(self._iterator, None)
        finally:
            _current.reset(token)
        if self.refusal is not None and self.result is not None:
            # start_response ran lazily, inside the body, and the save failed: nothing of the
            # app's body has gone out yet, so send the 503's instead.
            self.close()
            self._iterator = iter([self.refusal.body_bytes()])
            return next(self._iterator)
        if chunk is None:
            raise StopIteration
        return chunk

    def close(self) -> None:
        """Close the app's iterable (with the principal still current)."""
        result, self.result = self.result, None
        close = getattr(result, "close", None)
        if close is not None:
            token = _current.set(self._state.user)
            try:
                close()
            finally:
                _current.reset(token)


def _discard(data: bytes) -> None:
    """The ``write`` callable handed out once a 503 replaced the app's response."""


def _refuse(
    refusal: Refusal, start_response: StartResponse, exc_info: OptExcInfo | None = None
) -> list[bytes]:
    body = refusal.body_bytes()
    headers = [
        ("Content-Type", refusal.content_type),
        ("Content-Length", str(len(body))),
        *refusal.headers,
    ]
    status = f"{refusal.status} {HTTPStatus(refusal.status).phrase}"
    if exc_info is None:
        start_response(status, headers)
    else:
        start_response(status, headers, exc_info)
    return [body]


def _form_token(edge: Edge, environ: WSGIEnvironment, method: str) -> str | Refusal | None:
    """The CSRF field of a form body, with ``wsgi.input`` replaced by a copy of the body the
    app reads in full; the 413 refusal when the body is above ``max_form_bytes``."""
    content_type = environ.get("CONTENT_TYPE")
    if not content_type or not edge.needs_form_token(method, content_type):
        return None
    limit = edge.max_form_bytes
    length = environ.get("CONTENT_LENGTH", "")
    if length.strip().isdigit():
        if int(length) > limit:
            return edge.form_too_large()
        body = environ["wsgi.input"].read(int(length))
    elif environ.get("wsgi.input_terminated"):
        # Chunked upload the server ends for us: read at most one byte past the bound.
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            return edge.form_too_large()
    else:
        return None  # no length, no end marker: the body cannot be read safely
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return edge.form_token(content_type, body)


def _publish(environ: WSGIEnvironment, state: RequestState) -> None:
    environ[USER_KEY] = state.user
    environ[AUTH_KEY] = credentials_for(state.user)
    environ[SESSION_KEY] = state.session


# -- login and logout ----------------------------------------------------------------------------


def _request(environ: WSGIEnvironment) -> tuple[WSGIAuthMiddleware, RequestState]:
    state = environ.get(_STATE_KEY)
    middleware = environ.get(_MIDDLEWARE_KEY)
    if not isinstance(state, RequestState) or not isinstance(middleware, WSGIAuthMiddleware):
        raise RuntimeError(
            "authmw.middleware.wsgi.login/logout need WSGIAuthMiddleware in front of the app"
        )
    return middleware, state


def login(environ: WSGIEnvironment, user_id: str, password: str) -> AuthUser:
    """Check a password and log the request's client in with a new session.

    Rotates the session id if one existed (session fixation); the middleware sets the cookie on
    the response. Returns the new :class:`authmw.AuthUser`. Raises ``InvalidCredentials``,
    ``AccountLocked`` or ``InvalidInput`` like :meth:`AuthFramework.check_password`, and
    ``StorageUnavailable``.
    """
    middleware, state = _request(environ)
    user = middleware._call(
        state.edge.login(
            state,
            user_id,
            password,
            ip_address=environ.get("REMOTE_ADDR"),
            user_agent=environ.get("HTTP_USER_AGENT"),
            forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
            method=environ.get("REQUEST_METHOD"),
            content_type=environ.get("CONTENT_TYPE") or None,
        ),
        "login",
    )
    _publish(environ, state)
    # The middleware resets the variable when the request's app call returns.
    _current.set(user)
    return user


def login_user(environ: WSGIEnvironment, user_id: str) -> AuthUser:
    """Log the request's client in as ``user_id`` without a password, with a new session.

    The WSGI twin of :func:`authmw.middleware.asgi.login_user`: same checks, same audit, same
    session rotation. Raises ``UnknownUser``, ``AccountDisabled``, ``InvalidInput`` or
    ``StorageUnavailable``.
    """
    middleware, state = _request(environ)
    user = middleware._call(
        state.edge.login_user(
            state,
            user_id,
            ip_address=environ.get("REMOTE_ADDR"),
            user_agent=environ.get("HTTP_USER_AGENT"),
            forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
        ),
        "login",
    )
    _publish(environ, state)
    _current.set(user)
    return user


def logout(environ: WSGIEnvironment) -> None:
    """Destroy the request's session server-side; the response deletes the cookie."""
    middleware, state = _request(environ)
    middleware._call(state.edge.logout(state), "logout")
    _publish(environ, state)
    _current.set(state.user)


def csrf_token(environ: WSGIEnvironment) -> str:
    """The CSRF token to put in a form's ``csrf_token`` field (or send in the header).

    The WSGI twin of :func:`authmw.middleware.asgi.csrf_token`: a visitor without a session
    gets an anonymous one, stored with its cookie when the response starts; "" for a
    bearer-authenticated request. Flask templates have it as the ``csrf_token()`` global.
    """
    _, state = _request(environ)
    return state.edge.csrf_token(state)
