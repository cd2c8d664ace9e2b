"""Translates ASGI to the edge: ``AuthMiddleware`` authenticates Starlette, FastAPI or any ASGI app.

For ``http`` and ``websocket`` scopes it reads a bearer token from ``Authorization`` and/or a
session id from the signed session cookie, has :class:`authmw.middleware._edge.Edge` decide,
and sets ``scope["user"]``, ``scope["auth"]`` and ``scope["authmw.session"]`` (also
``scope["session"]``, ``request.session``, unless another session middleware such as
Starlette's ``SessionMiddleware`` holds that key); ``lifespan`` scopes open and close the
framework; other scopes pass straight through. Responses are changed only by wrapping ``send``;
a form whose CSRF token is in its body is read once and replayed to the app through a wrapped
``receive``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Unpack

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import SessionTooLarge, StorageUnavailable
from ..framework import AuthFramework
from ._edge import SAFE_METHODS, Edge, Refusal, RequestState
from ._options import MiddlewareOptions, OptionKeywords, resolve
from .principal import AuthUser, _current, credentials_for

__all__ = ["SESSION_KEY", "AuthMiddleware", "csrf_token", "login", "login_user", "logout"]

log = logging.getLogger("authmw.middleware")

_STATE = "authmw"
#: The scope key of authmw's session data, whoever holds ``scope["session"]``.
SESSION_KEY = "authmw.session"


class AuthMiddleware:
    """Authenticate every request of an ASGI app.

    ``Starlette(middleware=[Middleware(AuthMiddleware, auth=auth)])``, ``app.add_middleware(
    AuthMiddleware, auth=auth)`` in FastAPI, or ``AuthMiddleware(app, auth=auth)``.

    Options are :class:`authmw.MiddlewareOptions`' fields, given as keyword arguments
    (``bearer``, ``session_cookie``, ``csrf``, ``csrf_header``, ``csrf_cookie``,
    ``exclude_paths``, ``retry_after``, ``websocket_origins``) or as
    ``options=MiddlewareOptions(...)`` (keywords then override its fields); plus ``lifespan``
    (open/close the framework with the app, on by default). Raises ``ConfigurationError`` for
    a bad option.

    A websocket handshake authenticated by the session cookie is refused (403, or a close
    with 1008 where the server cannot send a response) unless its ``Origin`` is the site's own
    host or one of ``websocket_origins``; a bearer-authenticated one needs no ``Origin``.
    """

    def __init__(
        self,
        app: ASGIApp,
        auth: AuthFramework,
        *,
        options: MiddlewareOptions | None = None,
        lifespan: bool = True,
        **keywords: Unpack[OptionKeywords],
    ) -> None:
        self.app = app
        self.auth = auth
        self.options = resolve(options, keywords)
        self.edge = Edge(auth, self.options)
        self._csrf_header = self.options.csrf_header.lower().encode("latin-1")
        self._lifespan = lifespan
        self._has_exclusions = bool(self.options.exclude_paths)
        self._form_csrf = self.options.csrf and self.options.session_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan" and self._lifespan:
            await self._handle_lifespan(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._has_exclusions and self.edge.excluded(scope["path"]):
            state = RequestState(self.edge)
            scope[_STATE] = state
            self._publish(scope, state)
            await self.app(scope, receive, send)
            return

        authorization = cookie = csrf = None
        csrf_name = self._csrf_header
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"cookie":
                cookie = (
                    value.decode("latin-1")
                    if cookie is None
                    else f"{cookie}; {value.decode('latin-1')}"
                )
            elif name == csrf_name:
                csrf = value.decode("latin-1")
        if authorization is None and cookie is None:
            # No credentials at all: anonymous, with nothing to look up.
            result: RequestState | Refusal = RequestState(self.edge)
        elif kind == "websocket":
            origin, host = _origin_and_host(scope["headers"])
            result = await self.edge.authenticate(
                "GET", authorization, cookie, csrf, websocket=True, origin=origin, host=host
            )
        else:
            method = scope.get("method", "GET")
            if (
                csrf is None
                and self._form_csrf
                and cookie is not None
                and method not in SAFE_METHODS
                # Only a session cookie makes the token count: other forms are not buffered.
                and self.edge.cookie_name in cookie
            ):
                # A plain HTML form sends its token in the body: read it, replay it to the app.
                found = await self._form_token(scope, receive, method)
                if isinstance(found, Refusal):
                    await self._refuse(found, scope, receive, send)
                    return
                csrf, receive = found
            # Memory, or a cache hit: answered by plain calls, without the coroutines.
            answered = self.edge.authenticate_nowait(method, authorization, cookie, csrf)
            result = (
                answered
                if answered is not None
                else await self.edge.authenticate(method, authorization, cookie, csrf)
            )
        if isinstance(result, Refusal):
            await self._refuse(result, scope, receive, send)
            return

        scope[_STATE] = result
        self._publish(scope, result)
        token = _current.set(result.user)
        try:
            if kind == "websocket":
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, self._wrap_send(result, scope, receive, send))
        finally:
            _current.reset(token)

    async def _form_token(
        self, scope: Scope, receive: Receive, method: str
    ) -> tuple[str | None, Receive] | Refusal:
        """The CSRF field of a form body, and a ``receive`` that hands the app the whole body
        again; the 413 refusal when the body is above ``max_form_bytes``."""
        content_type = length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        if content_type is None or not self.edge.needs_form_token(method, content_type):
            return None, receive
        limit = self.edge.max_form_bytes
        if length is not None and length.strip().isdigit() and int(length) > limit:
            return self.edge.form_too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: the app sees the same disconnect.
                return None, _replay([message], receive)
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return self.edge.form_too_large()
            chunks.append(body)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replay = {"type": "http.request", "body": body, "more_body": False}
        return self.edge.form_token(content_type, body), _replay([replay], receive)

    @staticmethod
    def _publish(scope: Scope, state: RequestState, previous: dict[str, Any] | None = None) -> None:
        scope["user"] = state.user
        scope["auth"] = credentials_for(state.user)
        scope[SESSION_KEY] = state.session
        # request.session is authmw's unless another session middleware put its own there
        # (Starlette's SessionMiddleware wants its Session object back, not our dict).
        current = scope.get("session")
        if current is None or current is previous:
            scope["session"] = state.session

    def _wrap_send(self, state: RequestState, scope: Scope, receive: Receive, send: Send) -> Send:
        """The ``send`` handed to the app: at the response start, saves a changed session and
        adds its cookies (the app may have logged in or out, written the session or asked for
        a CSRF token, so every HTTP request has it)."""
        replaced = False  # a refusal went out instead of the app's response

        # A plain function handing back the awaitable of the server's send (or of the start
        # hook), not a coroutine of its own: a message that needs nothing costs one call.
        # Measured cheaper than an async wrapper and than a bound method of a slotted object.
        def send_wrapper(message: Message) -> Awaitable[None]:
            if replaced:
                return _dropped()
            if message["type"] == "http.response.start":
                # The app may have replaced the dict or logged in/out: read back what it left.
                state.session = scope.get(SESSION_KEY, state.session)
                if (
                    state.session_record is not None
                    or state.set_cookie
                    or state.delete_cookie
                    or state.session  # written without a session: an anonymous one starts
                ):
                    return start(message)
            return send(message)

        async def start(message: Message) -> None:
            nonlocal replaced
            try:
                # Nothing to save (the usual case): a plain call, no coroutine.
                cookies = self.edge.finish_nowait(state)
                if cookies is None:
                    cookies = await self.edge.finish(state)
            except (StorageUnavailable, SessionTooLarge) as exc:
                # The change cannot be saved: say so instead of pretending it was.
                replaced = True
                await self._refuse(self.edge.finish_refusal(exc), scope, receive, send)
                return
            if cookies:
                headers = MutableHeaders(scope=message)
                for value in cookies:
                    headers.append("set-cookie", value)
            await send(message)

        return send_wrapper

    async def _refuse(self, refusal: Refusal, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept":
                    refusal = refusal.negotiated(value.decode("latin-1"))
                    break
        body = refusal.body_bytes()
        headers = [
            (b"content-type", refusal.content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
        ]
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers)
        start, chunk = "http.response.start", "http.response.body"
        if scope["type"] == "websocket":
            await receive()  # the websocket.connect message
            if "websocket.http.response" not in scope.get("extensions", {}):
                # Closing before the accept makes the server deny the handshake (a 403).
                await send(
                    {
                        "type": "websocket.close",
                        "code": refusal.ws_close_code,
                        "reason": refusal.body.get("error", ""),
                    }
                )
                return
            # The server can send our own answer (status, Retry-After, WWW-Authenticate).
            start, chunk = "websocket.http.response.start", "websocket.http.response.body"
        await send({"type": start, "status": refusal.status, "headers": headers})
        await send({"type": chunk, "body": body})

    async def _handle_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    # Start anyway when the storage cannot be opened: try_open logs why at
                    # ERROR, requests needing it answer 503, and operations retry opening.
                    # Raising here would fail the lifespan, which uvicorn's default
                    # "--lifespan auto" reports only as "lifespan unsupported".
                    await self.auth.try_open()
                except Exception:
                    log.exception("authmw could not open its storage at startup")
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.auth.close()
            await send(message)

        await self.app(scope, receive_wrapper, send_wrapper)


async def _dropped() -> None:
    """What a message sent after a refusal replaced the response awaits: nothing."""


def _origin_and_host(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """A websocket handshake's ``Origin`` and ``Host`` headers (the first of each)."""
    origin = host = None
    for name, value in headers:
        if name == b"origin" and origin is None:
            origin = value.decode("latin-1")
        elif name == b"host" and host is None:
            host = value.decode("latin-1")
    return origin, host


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that returns ``messages`` first, then what ``receive`` returns."""
    pending = list(messages)

    async def replaying() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying


def _state(conn: HTTPConnection) -> RequestState:
    state = conn.scope.get(_STATE)
    if not isinstance(state, RequestState):
        raise RuntimeError("authmw.login/logout need AuthMiddleware in front of the app")
    return state


async def login(request: HTTPConnection, user_id: str, password: str) -> AuthUser:
    """Check a password and log the request's client in with a new session.

    Rotates the session id if one existed (session fixation); the middleware sets the cookie on
    the response. Returns the new :class:`authmw.AuthUser`. Raises ``InvalidCredentials``,
    ``AccountLocked`` or ``InvalidInput`` like :meth:`AuthFramework.check_password`, and
    ``StorageUnavailable``. WSGI's twin is :func:`authmw.middleware.wsgi.login`; both are
    :meth:`authmw.middleware._edge.Edge.login`.
    """
    state = _state(request)
    client = request.client
    previous = state.session
    user = await state.edge.login(
        state,
        user_id,
        password,
        ip_address=client.host if client else None,
        user_agent=request.headers.get("user-agent"),
        forwarded_for=",".join(request.headers.getlist("x-forwarded-for")) or None,
        method=request.scope.get("method"),
        content_type=request.headers.get("content-type"),
    )
    AuthMiddleware._publish(request.scope, state, previous)
    _current.set(user)
    return user


async def login_user(request: HTTPConnection, user_id: str) -> AuthUser:
    """Log the request's client in as ``user_id`` without a password, with a new session.

    For SSO and OAuth callbacks, magic links and "log in after sign-up": the app has proved who
    the user is. Like :func:`login`, the session id rotates (fixation stays impossible) and the
    middleware sets the cookie; the login is audited with ``method="passwordless"``. Raises
    ``UnknownUser`` or ``AccountDisabled`` (both ``InvalidCredentials``), ``InvalidInput`` and
    ``StorageUnavailable``. WSGI's twin is :func:`authmw.middleware.wsgi.login_user`.
    """
    state = _state(request)
    client = request.client
    previous = state.session
    user = await state.edge.login_user(
        state,
        user_id,
        ip_address=client.host if client else None,
        user_agent=request.headers.get("user-agent"),
        forwarded_for=",".join(request.headers.getlist("x-forwarded-for")) or None,
    )
    AuthMiddleware._publish(request.scope, state, previous)
    _current.set(user)
    return user


async def logout(request: HTTPConnection) -> None:
    """Destroy the request's session server-side; the response deletes the cookie."""
    state = _state(request)
    previous = state.session
    await state.edge.logout(state)
    AuthMiddleware._publish(request.scope, state, previous)
    _current.set(state.user)


def csrf_token(request: HTTPConnection) -> str:
    """The CSRF token to put in a form's ``csrf_token`` field (or send in the header).

    A visitor without a session gets an anonymous one (stored, with its cookie, when the
    response starts), so a login form is protected before anyone logs in. Returns "" for a
    request authenticated by a bearer token (no session, no CSRF). Usable in templates:
    :func:`authmw.middleware.templating.install` makes it a Jinja2 global.
    """
    state = _state(request)
    return state.edge.csrf_token(state)
