"""The apps, fronts and checks of the reliability suite (tests/reliability/).

One small app is written three times, for Starlette (``AuthMiddleware``), FastAPI (its
dependencies) and Flask (``AuthMW``), with the same routes: ``/whoami``, ``/signup``,
``/login``, ``/token``, ``/cart``, ``/logout`` and ``/_snapshot`` (excluded from
authentication; a summary of the stored records, computed on the app's own loop). A
:class:`Front` sends raw requests (any bytes in any header) to one of them, in-process (the
ASGI callable or the WSGI environ, called directly) or over a real server on a free loopback
port (uvicorn, werkzeug, gunicorn when installed) with a raw socket client, so that what a
server lets through is what the middleware sees.

``CASES`` counts the cases each fuzzer ran, by surface and front; tests/reliability/conftest.py
prints them at the end of the run.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, settings

import authmw
from authmw import AuthConfig, AuthFramework, AuthMiddleware, AuthUser, InMemoryStorage
from authmw.errors import (
    AuthmwError,
)
from authmw.integrations.fastapi import current_user, optional_user
from authmw.storage import AuthStorage
from authmw.testing import fast_password_hasher
from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]

#: Cases run per (surface, front), printed at the end of the run.
CASES: Counter[tuple[str, str]] = Counter()

#: The victim's and the other user's passwords: random, so no fuzzer ever sends them.
VICTIM_PASSWORD = "victim-" + secrets.token_urlsafe(24)
OTHER_PASSWORD = "other-" + secrets.token_urlsafe(24)

FORMS = [pytest.param("bounded", id="bounded"), pytest.param("long", marks=pytest.mark.long)]


def examples(form: str, *, server: bool = False) -> int:
    """Hypothesis examples per test: ``AUTHMW_FUZZ_EXAMPLES`` (default 200; a quarter of it
    over real servers, whose requests cost more) in the bounded form run by CI, and
    ``AUTHMW_FUZZ_LONG_EXAMPLES`` (default 10,000) in the long form (``scripts/reliability``)."""
    if form == "long":
        return int(os.environ.get("AUTHMW_FUZZ_LONG_EXAMPLES", "10000"))
    count = int(os.environ.get("AUTHMW_FUZZ_EXAMPLES", "200"))
    return max(10, count // 4) if server else count


def fuzz_settings(count: int) -> settings:
    """Fixed seeds (the same cases on every run) and no time limits."""
    return settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def make_config(**overrides: Any) -> AuthConfig:
    """The test key and cheap hashing."""
    fields: dict[str, Any] = {"secret_key": TEST_SECRET, "password_hasher": fast_password_hasher()}
    fields.update(overrides)
    return AuthConfig(**fields)


# -- what the apps do, written once -------------------------------------------------------------


def parse_body(body: bytes) -> dict[str, Any] | None:
    """The JSON object of a request body, or None (the apps answer 400)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def error_status(exc: AuthmwError) -> int:
    """The status an app answers for a typed error of the framework: the one it carries."""
    return exc.status_code


async def snapshot(storage: AuthStorage) -> dict[str, Any]:
    """What a refused request must not change: the record counts, and every record of the
    victim (its hash and roles, its tokens and their revocation, its sessions and their data).
    Failure counters and audit events are left out: a refused login counts, by design."""
    stats = await storage.get_statistics()
    victim = await storage.get_user("victim")
    sessions = await storage.list_user_sessions("victim")
    tokens = await storage.list_user_tokens("victim")
    return {
        "counts": [stats.total_users, stats.total_tokens, stats.active_sessions],
        "victim": None
        if victim is None
        else [victim.password_hash, list(victim.roles), victim.is_active],
        "sessions": sorted(
            [s.session_id, json.dumps(s.data, sort_keys=True, default=str)] for s in sessions
        ),
        "tokens": sorted(
            [t.token_id, t.refresh_id or "", t.revoked_at is not None] for t in tokens
        ),
    }


# -- Starlette ----------------------------------------------------------------------------------


def starlette_app(auth: AuthFramework, **options: Any) -> Any:
    """The app behind ``AuthMiddleware``."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def reply(status: int, body: Any) -> Response:
        return JSONResponse(body, status_code=status)

    async def whoami(request: Request) -> Response:
        user = request.user
        return reply(200, {"authenticated": user.is_authenticated, "user": user.display_name})

    async def signup(request: Request) -> Response:
        form = parse_body(await request.body())
        if form is None:
            return reply(400, {"error": "bad body"})
        try:
            await auth.register_user(form.get("user"), form.get("password"))  # type: ignore[arg-type]
        except AuthmwError as exc:
            return reply(error_status(exc), {"error": type(exc).__name__})
        return reply(201, {"created": form["user"]})

    async def login(request: Request) -> Response:
        form = parse_body(await request.body())
        if form is None:
            return reply(400, {"error": "bad body"})
        try:
            user = await authmw.login(request, form.get("user"), form.get("password"))  # type: ignore[arg-type]
        except AuthmwError as exc:
            return reply(error_status(exc), {"error": type(exc).__name__})
        return reply(200, {"user": user.user_id})

    async def token(request: Request) -> Response:
        form = parse_body(await request.body())
        if form is None:
            return reply(400, {"error": "bad body"})
        try:
            issued = await auth.authenticate(form.get("user"), form.get("password"))  # type: ignore[arg-type]
        except AuthmwError as exc:
            return reply(error_status(exc), {"error": type(exc).__name__})
        return reply(
            200, {"access_token": issued.access_token, "refresh_token": issued.refresh_token}
        )

    async def cart(request: Request) -> Response:
        if not request.user.is_authenticated:
            return reply(401, {"error": "login required"})
        form = parse_body(await request.body()) or {}
        request.session.setdefault("cart", []).append(str(form.get("item")))
        return reply(200, {"cart": request.session["cart"]})

    async def logout(request: Request) -> Response:
        await authmw.logout(request)
        return reply(200, {"bye": True})

    async def snap(request: Request) -> Response:
        return reply(200, await snapshot(auth.storage))

    routes = [
        Route("/whoami", whoami, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/signup", signup, methods=["POST"]),
        Route("/login", login, methods=["POST"]),
        Route("/token", token, methods=["POST"]),
        Route("/cart", cart, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/_snapshot", snap),
    ]
    options.setdefault("exclude_paths", ["/_snapshot"])
    return Starlette(routes=routes, middleware=[Middleware(AuthMiddleware, auth=auth, **options)])


# -- FastAPI ------------------------------------------------------------------------------------


def fastapi_app(auth: AuthFramework, **options: Any) -> Any:
    """The app on FastAPI, with the principal from its dependencies."""
    api = FastAPI(openapi_url=None)
    options.setdefault("exclude_paths", ["/_snapshot"])
    api.add_middleware(AuthMiddleware, auth=auth, **options)

    def reply(status: int, body: Any) -> JSONResponse:
        return JSONResponse(body, status_code=status)

    @api.api_route("/whoami", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def whoami(user: AuthUser | None = Depends(optional_user)) -> JSONResponse:
        return reply(200, {"authenticated": user is not None, "user": user.user_id if user else ""})

    @api.post("/signup")
    async def signup(request: Request) -> JSONResponse:
        form = parse_body(await request.body())
        if form is None:
            return reply(400, {"error": "bad body"})
        try:
            await auth.register_user(form.get("user"), form.get("password"))  # type: ignore[arg-type]
        except AuthmwError as exc:
            return reply(error_status(exc), {"error": type(exc).__name__})
        return reply(201, {"created": form["user"]})

    @api.post("/login")
    async def login(request: Request) -> JSONResponse:
        form = parse_body(await request.body())
        if form is None:
            return reply(400, {"error": "bad body"})
        try:
            user = await authmw.login(request, form.get("user"), form.get("password"))  # type: ignore[arg-type]
        except AuthmwError as exc:
            return reply(error_status(exc), {"error": type(exc).__name__})
        return reply(200, {"user": user.user_id})

    @api.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = parse_body(await request.body())
        if form is None:
            return reply(400, {"error": "bad body"})
        try:
            issued = await auth.authenticate(form.get("user"), form.get("password"))  # type: ignore[arg-type]
        except AuthmwError as exc:
            return reply(error_status(exc), {"error": type(exc).__name__})
        return reply(
            200, {"access_token": issued.access_token, "refresh_token": issued.refresh_token}
        )

    @api.post("/cart")
    async def cart(request: Request, user: AuthUser = Depends(current_user)) -> JSONResponse:
        form = parse_body(await request.body()) or {}
        request.session.setdefault("cart", []).append(str(form.get("item")))
        return reply(200, {"cart": request.session["cart"]})

    @api.post("/logout")
    async def logout(request: Request) -> JSONResponse:
        await authmw.logout(request)
        return reply(200, {"bye": True})

    @api.get("/_snapshot")
    async def snap() -> JSONResponse:
        return reply(200, await snapshot(auth.storage))

    return api


# -- Flask --------------------------------------------------------------------------------------


def flask_app(auth: AuthFramework, **options: Any) -> Any:
    """The app on Flask behind ``AuthMW``; ``app.extensions`` holds the extension."""
    from flask import Flask, request
    from flask.typing import ResponseReturnValue

    from authmw.integrations import flask as authmw_flask

    app = Flask(__name__)
    options.setdefault("exclude_paths", ["/_snapshot"])
    ext = authmw_flask.AuthMW(app, auth, **options)

    def reply(status: int, body: Any) -> ResponseReturnValue:
        return body, status

    @app.route("/whoami", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def whoami() -> ResponseReturnValue:
        user = authmw_flask.current_user
        return reply(200, {"authenticated": user.is_authenticated, "user": user.display_name})

    @app.post("/signup")
    def signup() -> ResponseReturnValue:
        form = parse_body(request.get_data())
        if form is None:
            return reply(400, {"error": "bad body"})
        try:
            ext.run(auth.register_user(form.get("user"), form.get("password")))  # type: ignore[arg-type]
        except AuthmwError as exc:
            return reply(error_status(exc), {"error": type(exc).__name__})
        return reply(201, {"created": form["user"]})

    @app.post("/login")
    def login() -> ResponseReturnValue:
        form = parse_body(request.get_data())
        if form is None:
            return reply(400, {"error": "bad body"})
        try:
            user = authmw_flask.login(form.get("user"), form.get("password"))  # type: ignore[arg-type]
        except AuthmwError as exc:
            return reply(error_status(exc), {"error": type(exc).__name__})
        return reply(200, {"user": user.user_id})

    @app.post("/token")
    def token() -> ResponseReturnValue:
        form = parse_body(request.get_data())
        if form is None:
            return reply(400, {"error": "bad body"})
        try:
            issued = ext.run(auth.authenticate(form.get("user"), form.get("password")))  # type: ignore[arg-type]
        except AuthmwError as exc:
            return reply(error_status(exc), {"error": type(exc).__name__})
        return reply(
            200, {"access_token": issued.access_token, "refresh_token": issued.refresh_token}
        )

    @app.post("/cart")
    @authmw_flask.login_required
    def cart() -> ResponseReturnValue:
        form = parse_body(request.get_data()) or {}
        session = authmw_flask.current_session
        session.setdefault("cart", []).append(str(form.get("item")))
        return reply(200, {"cart": session["cart"]})

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        authmw_flask.logout()
        return reply(200, {"bye": True})

    @app.get("/_snapshot")
    def snap() -> ResponseReturnValue:
        return reply(200, ext.run(snapshot(auth.storage)))

    return app


# -- sending raw requests -----------------------------------------------------------------------

Headers = list[tuple[bytes, bytes]]


@dataclass
class Reply:
    """A response: status, headers (lower-case names, in order) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def cookies(self) -> dict[str, str]:
        """The cookies the response sets (a deletion gives the empty string)."""
        found: dict[str, str] = {}
        for value in self.header("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(value)
            found.update({name: morsel.value for name, morsel in jar.items()})
        return found

    def json(self) -> Any:
        return json.loads(self.body)


def check_reply(reply: Reply) -> None:
    """What no answer may ever be: a 5xx, or a traceback in the body."""
    assert reply.status < 500, (reply.status, reply.body[:500])
    assert b"Traceback" not in reply.body, reply.body[:500]
    assert b'File "' not in reply.body, reply.body[:500]


@dataclass
class Front:
    """One app reached one way; ``send`` takes raw bytes for everything."""

    name: str
    send_raw: Callable[[str, str, Headers, bytes], Reply]
    close: Callable[[], None] = lambda: None
    jar: dict[str, str] = field(default_factory=dict)

    def send(
        self,
        method: str,
        path: str,
        headers: Headers | None = None,
        body: bytes = b"",
        *,
        json_body: Any = None,
    ) -> Reply:
        """Send a request; a ``json_body`` is encoded with its content type."""
        headers = list(headers or [])
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.append((b"content-type", b"application/json"))
        return self.send_raw(method, path, headers, body)

    def snapshot(self) -> dict[str, Any]:
        """The stored records' summary, read by the app on its own loop."""
        reply = self.send("GET", "/_snapshot")
        assert reply.status == 200, reply
        result: dict[str, Any] = reply.json()
        return result


def asgi_caller(app: Any, runner: asyncio.Runner) -> Callable[[str, str, Headers, bytes], Reply]:
    """Calls an ASGI app directly with a hand-built scope: every byte reaches the middleware."""

    async def call(method: str, path: str, headers: Headers, body: bytes) -> Reply:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), *((k.lower(), v) for k, v in headers)],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 443),
        }
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        messages: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        try:
            await app(scope, receive, send)
        except Exception as exc:  # what a server would answer: a 500
            return Reply(500, [], repr(exc).encode())
        start = next(m for m in messages if m["type"] == "http.response.start")
        return Reply(
            start["status"],
            [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in start["headers"]],
            b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body"),
        )

    return lambda *args: runner.run(call(*args))


def wsgi_caller(app: Any) -> Callable[[str, str, Headers, bytes], Reply]:
    """Calls a WSGI app directly with an environ as a server builds it (latin-1 values,
    repeated headers joined with a comma)."""

    def call(method: str, path: str, headers: Headers, body: bytes) -> Reply:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "testserver",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            key = key if key == "CONTENT_TYPE" else "HTTP_" + key
            text = value.decode("latin-1")
            environ[key] = (
                f"{environ[key]},{text}" if key in environ and key != "HTTP_HOST" else text
            )
        status = ""
        out_headers: list[tuple[str, str]] = []

        def start_response(s: str, h: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status, out_headers
            status, out_headers = s, list(h)
            return lambda data: None

        try:
            result = app(environ, start_response)
            try:
                data = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
        except Exception as exc:
            return Reply(500, [], repr(exc).encode())
        return Reply(int(status.split()[0]), [(k.lower(), v) for k, v in out_headers], data)

    return call


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def socket_caller(port: int, *, half_close: bool) -> Callable[[str, str, Headers, bytes], Reply]:
    """An HTTP/1.1 client on a raw socket: header bytes go out as given (CR and LF made
    spaces, so the framing holds), one connection per request. ``half_close`` shuts the
    sending side once the request is out: werkzeug drains unread body bytes until EOF after
    it answers, while uvicorn takes EOF for a client that left and does not answer."""

    def call(method: str, path: str, headers: Headers, body: bytes) -> Reply:
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
        for name, value in headers:
            lines.append(name + b": " + value.replace(b"\r", b" ").replace(b"\n", b" "))
        lines.append(b"Content-Length: %d" % len(body))
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:

            def send() -> None:
                try:
                    sock.sendall(data)
                    if half_close:
                        sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the server answered early and closed; read what it said

            # Sent from a thread while this one reads, as a browser does: a server may answer
            # (a refusal) before it reads a large body.
            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            sender.join(60)
        raw = b"".join(chunks)
        head, _, payload = raw.partition(b"\r\n\r\n")
        if not head:
            return Reply(0, [], b"")  # the server closed without answering: no 500 either
        status_line, *header_lines = head.split(b"\r\n")
        parsed = [
            (k.decode("latin-1").strip().lower(), v.decode("latin-1").strip())
            for k, _, v in (line.partition(b":") for line in header_lines)
        ]
        if ("transfer-encoding", "chunked") in parsed:
            payload = _dechunk(payload)
        return Reply(int(status_line.split()[1]), parsed, payload)

    return call


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no server on port {port} after {limit} s")


@contextmanager
def uvicorn_server(app: Any, **options: Any) -> Iterator[int]:
    """``app`` served by uvicorn in a thread on a free loopback port (``options`` go to
    ``uvicorn.Config``: ``ssl_certfile`` and ``ssl_keyfile`` serve HTTPS)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="critical", lifespan="off", **options
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_listening(port)
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def werkzeug_server(app: Any) -> Iterator[int]:
    """``app`` served by werkzeug's threaded server in a thread on a free loopback port."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()


@contextmanager
def gunicorn_server() -> Iterator[int]:
    """The Flask app of ``tests.support.reliability_app`` under gunicorn (a subprocess with
    one worker and four threads); gunicorn comes with the dev extra."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--log-level",
            "critical",
            "tests.support.reliability_app:flask_app",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


IN_PROCESS = ("asgi", "fastapi", "flask")
#: Starlette over HTTPS (uvicorn, HTTP/1.1) and over HTTP/2 (hypercorn), with an httpx client.
TLS_SERVERS = ("uvicorn-tls", "hypercorn-h2")
SERVERS = ("uvicorn", "werkzeug", *TLS_SERVERS)
FRONTS = [
    *(pytest.param(name, id=name) for name in IN_PROCESS + SERVERS),
    pytest.param("gunicorn", marks=pytest.mark.long, id="gunicorn"),
]


@contextmanager
def tls_front(name: str, app: Any) -> Iterator[Front]:
    """``app`` served over TLS by ``name`` (one of TLS_SERVERS), reached by one httpx client
    (HTTP/2 for hypercorn) that trusts only the test's throwaway CA."""
    from tests.support import tls

    with tls.served(name, app) as port, tls.client(name) as client:
        yield Front(name, tls.httpx_caller(client, port, tls.HTTP_VERSIONS[name]))


@contextmanager
def front(name: str, **options: Any) -> Iterator[Front]:
    """A fresh app (a new framework over an in-memory storage) reached as ``name``:
    ``asgi`` (Starlette), ``fastapi``, ``flask`` in-process; ``uvicorn`` (Starlette),
    ``werkzeug`` (Flask), ``gunicorn`` (Flask) over loopback; ``uvicorn-tls`` (Starlette over
    HTTPS) and ``hypercorn-h2`` (Starlette over HTTP/2) over loopback with httpx."""
    if name == "gunicorn":
        with gunicorn_server() as port:
            yield Front(name, socket_caller(port, half_close=False))
        return
    auth = AuthFramework(InMemoryStorage(), make_config())
    if name in ("asgi", "fastapi"):
        app = (starlette_app if name == "asgi" else fastapi_app)(auth, **options)
        with asyncio.Runner() as runner:
            try:
                yield Front(name, asgi_caller(app, runner))
            finally:
                runner.run(auth.close())
        return
    if name == "uvicorn":
        with uvicorn_server(starlette_app(auth, **options)) as port:
            yield Front(name, socket_caller(port, half_close=False))
        return
    if name in TLS_SERVERS:
        with tls_front(name, starlette_app(auth, **options)) as reached:
            yield reached
        return
    app = flask_app(auth, **options)
    ext = app.extensions["authmw"]
    try:
        if name == "flask":
            yield Front(name, wsgi_caller(app))
        else:
            with werkzeug_server(app) as port:
                yield Front(name, socket_caller(port, half_close=True))
    finally:
        ext.close()


# -- a seeded app -------------------------------------------------------------------------------


@dataclass
class Seeded:
    """Real credentials of the victim (and of another user) on a front, for near misses."""

    front: Front
    access_token: str
    refresh_token: str
    session: str  # the signed session cookie's value
    csrf: str  # the victim's CSRF token
    other_session: str
    other_csrf: str

    def victim_cookie(self) -> bytes:
        return f"authmw_session={self.session}; authmw_csrf={self.csrf}".encode()


def login(front: Front, user: str, password: str) -> tuple[str, str]:
    """Log in over ``front``; the session cookie and the CSRF token it set."""
    reply = front.send("POST", "/login", json_body={"user": user, "password": password})
    assert reply.status == 200, reply
    cookies = reply.cookies()
    return cookies["authmw_session"], cookies["authmw_csrf"]


def seed(front: Front) -> Seeded:
    """Sign the victim and another user up, log both in, get the victim a bearer token and
    put one item in its cart (which also proves the valid CSRF path works)."""
    for user, password in (("victim", VICTIM_PASSWORD), ("other", OTHER_PASSWORD)):
        reply = front.send("POST", "/signup", json_body={"user": user, "password": password})
        assert reply.status == 201, reply
    session, csrf = login(front, "victim", VICTIM_PASSWORD)
    other_session, other_csrf = login(front, "other", OTHER_PASSWORD)
    issued = front.send(
        "POST", "/token", json_body={"user": "victim", "password": VICTIM_PASSWORD}
    ).json()
    seeded = Seeded(
        front,
        issued["access_token"],
        issued["refresh_token"],
        session,
        csrf,
        other_session,
        other_csrf,
    )
    cart = front.send(
        "POST",
        "/cart",
        [(b"cookie", seeded.victim_cookie()), (b"x-csrf-token", csrf.encode())],
        json_body={"item": "seed"},
    )
    assert cart.status == 200 and cart.json()["cart"] == ["seed"], cart
    return seeded


def run_on_loop(factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine on a fresh loop (sync tests driving async APIs)."""

    async def main() -> Any:
        return await factory()

    return asyncio.run(main())
