"""A plain WSGI app behind WSGIAuthMiddleware, and the fixtures the WSGI and Flask tests share.

The backend fixtures open their storage on pytest's event loop, but a WSGI middleware runs the
framework on a loop of its own (driver connections belong to the loop that opened them). The
``stack`` fixture therefore closes the storage first, lets each middleware's loop reopen it, closes
the middlewares at the end (which closes the storage on their loop threads) and reopens the
storage on pytest's loop so the backend fixture can clean up as usual.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest

import authmw
from authmw import AuthConfig, AuthFramework
from authmw.errors import AccountLocked, InvalidCredentials
from authmw.middleware import wsgi as authmw_wsgi
from authmw.middleware.wsgi import WSGIAuthMiddleware
from authmw.storage import AuthStorage
from authmw.testing import fast_password_hasher
from tests.conftest import TEST_SECRET

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def _json(start_response: StartResponse, body: object, status: str = "200 OK") -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _text(start_response: StartResponse, text: str, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain")])
    return [text.encode()]


def _body(environ: Environ) -> Any:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return json.loads(environ["wsgi.input"].read(length) or b"{}")


def whoami(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    user = environ["authmw.user"]
    return _json(
        start_response,
        {
            "authenticated": user.is_authenticated,
            "user": user.display_name,
            "method": getattr(user, "auth_method", None),
            "scopes": list(environ["authmw.auth"].scopes),
            "current": authmw.current_user().display_name,
        },
    )


def private(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    if "authenticated" not in environ["authmw.auth"].scopes:
        return _text(start_response, "Forbidden", "403 Forbidden")
    return _text(start_response, f"hello {environ['authmw.user'].display_name}")


def admin(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    if "role:admin" not in environ["authmw.auth"].scopes:
        return _text(start_response, "Forbidden", "403 Forbidden")
    return _text(start_response, "admin area")


def do_login(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    form = _body(environ)
    try:
        user = authmw_wsgi.login(environ, form["user"], form["password"])
    except (InvalidCredentials, AccountLocked) as exc:
        return _json(start_response, {"error": str(exc)}, "401 Unauthorized")
    return _json(
        start_response, {"user": user.user_id, "current": authmw.current_user().display_name}
    )


def do_logout(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    authmw_wsgi.logout(environ)
    return _text(start_response, "bye")


def show_session(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return _json(start_response, dict(environ["authmw.session"]))


def add_to_cart(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    item = _body(environ)["item"]
    session = environ["authmw.session"]
    session.setdefault("cart", []).append(item)
    return _json(start_response, session)


def replace_session(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    environ["authmw.session"] = {"replaced": True}
    return _text(start_response, "replaced")


def boom(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("the app failed")


def stream(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield authmw.current_user().display_name.encode() + b";"

    return chunks()


def legacy_write(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written:" + authmw.current_user().display_name.encode())
    return []


ROUTES: dict[str, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
    "/whoami": whoami,
    "/private": private,
    "/admin": admin,
    "/login": do_login,
    "/logout": do_logout,
    "/session": show_session,
    "/cart": add_to_cart,
    "/replace-session": replace_session,
    "/health": whoami,
    "/boom": boom,
    "/stream": stream,
    "/write": legacy_write,
}


def wsgi_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The test app: a path -> handler table."""
    handler = ROUTES.get(environ.get("PATH_INFO", ""))
    if handler is None:
        return _text(start_response, "not found", "404 Not Found")
    return handler(environ, start_response)


def client(app: Any) -> httpx.Client:
    """An httpx client calling the WSGI app in-process over https (so Secure cookies flow)."""
    return httpx.Client(
        transport=httpx.WSGITransport(app=app, raise_app_exceptions=False),
        base_url="https://testserver",
    )


def environ_for(path: str = "/whoami", method: str = "GET", **headers: str) -> Environ:
    """A WSGI environ for calling an app directly (header values as a server gives them)."""
    environ: Environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper()] = value
    return environ


class Called:
    """The outcome of calling a WSGI app directly: status, headers, body."""

    def __init__(self, app: Any, environ: Environ) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.exc_info: Any = None

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            self.status, self.headers, self.exc_info = status, list(headers), exc_info
            return self.written.append

        self.written: list[bytes] = []
        result = app(environ, start_response)
        try:
            self.body = b"".join([*self.written, *result])
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    @property
    def code(self) -> int:
        return int(self.status.split()[0])

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Stack:
    """Builds WSGI apps over one backend's storage, with one live middleware at a time.

    Each middleware owns an event loop; the storage's connections live on the loop that
    opened them, so before a new middleware is used the previous ones are closed (closing
    the framework, and so the storage, on their own loop threads).
    """

    def __init__(self, storage: AuthStorage) -> None:
        self.storage = storage
        self.middlewares: list[WSGIAuthMiddleware] = []
        self.auth = self.framework()

    def framework(self, **overrides: Any) -> AuthFramework:
        """A framework over the storage with the test key and cheap hashing."""
        settings: dict[str, Any] = {
            "secret_key": TEST_SECRET,
            "password_hasher": fast_password_hasher(),
        }
        settings.update(overrides)
        return AuthFramework(self.storage, AuthConfig(**settings))

    def adopt(self, middleware: WSGIAuthMiddleware) -> WSGIAuthMiddleware:
        """Track a middleware built elsewhere (e.g. by AuthMW), closing the earlier ones."""
        self.close()
        self.middlewares.append(middleware)
        return middleware

    def app(self, auth: AuthFramework | None = None, **options: Any) -> WSGIAuthMiddleware:
        """The test app behind a new middleware (``/health`` excluded unless overridden)."""
        options.setdefault("exclude_paths", ["/health"])
        return self.adopt(WSGIAuthMiddleware(wsgi_app, auth or self.auth, **options))

    def close(self) -> None:
        """Close every middleware built so far."""
        for middleware in self.middlewares:
            middleware.close()


@pytest.fixture
async def released_storage(storage: AuthStorage) -> AsyncIterator[AuthStorage]:
    """The backend's storage, closed so a middleware's loop opens it; reopened afterwards."""
    await storage.close()
    yield storage
    await storage.open()


@pytest.fixture
def stack(released_storage: AuthStorage) -> Iterator[Stack]:
    """A :class:`Stack` over each backend in turn; its middlewares are closed afterwards."""
    built = Stack(released_storage)
    try:
        yield built
    finally:
        built.close()


def login_token(mw: WSGIAuthMiddleware, user: str = "alice", **kwargs: Any) -> str:
    """Register ``user`` (through the middleware's loop) and return an access token."""
    auth = mw.auth
    mw.run(auth.register_user(user, "password", **kwargs))
    return mw.run(auth.authenticate(user, "password")).access_token


def bearer(token: str) -> dict[str, str]:
    """An Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}
