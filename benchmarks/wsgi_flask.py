"""Flask apps in-process: authmw's ``AuthMW`` beside Flask-Login and Flask-Session.

Every app is a WSGI callable called with a prebuilt environ (a fresh copy per request), its
body consumed and closed, on one thread; the apps take turns within each round.

* bearer: ``AuthMW`` with authmw's ``login_required``/``current_user`` on memory and on cached
  Redis, beside a ``LoginManager`` whose ``request_loader`` finds the bearer token in a dict
  (Flask-Login's ``login_required``/``current_user``); the bare Flask app for scale.
* session: ``AuthMW`` sessions on Redis and cached Redis beside Flask-Session's Redis
  interface with its defaults (permanent sessions, refreshed on every request). Each side's
  cookie comes from a real request through its app (authmw: a login route).

Run alone: ``python -m benchmarks.wsgi_flask [--quick]``.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterable
from typing import Any

from authmw import InMemoryStorage
from authmw.integrations import flask as authmw_flask
from authmw.storage import AuthStorage
from benchmarks.context import PASSWORD, USER, Context
from benchmarks.report import Row, compare, reference
from benchmarks.timing import interleave_sync, sync_rate

__all__ = ["run"]

SECTION = "Flask in-process, 1 thread"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Environ = dict[str, Any]


def environ_for(path: str, headers: dict[str, str] | None = None) -> Environ:
    """A GET request's WSGI environ, as a server would build it for HTTPS."""
    env: Environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "bench.local",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "bench.local",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def request(app: WSGIApp, base: Environ) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status, headers and body of one request."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, headers
        return None

    env = base.copy()
    env["wsgi.input"] = io.BytesIO()
    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return seen["status"], seen["headers"], body


def check(app: WSGIApp, base: Environ, expect: bytes) -> None:
    """Fail loudly unless the request answers 200 with ``expect``."""
    status, _, body = request(app, base)
    if not status.startswith("200") or body != expect:
        raise RuntimeError(f"{base['PATH_INFO']}: expected 200 {expect!r}, got {status} {body!r}")


def cookie_from(app: WSGIApp, base: Environ, name: str) -> str:
    """``name=value`` of the cookie the app sets on this request."""
    status, headers, body = request(app, base)
    for key, value in headers:
        if key.lower() == "set-cookie" and value.startswith(name + "="):
            return value.split(";", 1)[0]
    raise RuntimeError(f"{base['PATH_INFO']} set no {name} cookie ({status} {body!r})")


def serve_op(app: WSGIApp, base: Environ) -> Callable[[int], None]:
    """One request per call, output consumed and discarded."""

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    def op(_: int) -> None:
        env = base.copy()
        env["wsgi.input"] = io.BytesIO()
        result = app(env, start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()

    return op


def bare_app() -> WSGIApp:
    """The view with no authentication at all: what Flask itself costs."""
    from flask import Flask

    app = Flask("bench_bare")
    app.get("/me")(lambda: USER)
    return app


def flask_login_app(tokens: dict[str, str]) -> WSGIApp:
    """Flask-Login with a ``request_loader`` looking the bearer token up in ``tokens``."""
    import flask_login
    from flask import Flask

    class User(flask_login.UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    app = Flask("bench_flask_login")
    app.secret_key = "flask-login-needs-a-key-for-its-own-cookie"
    manager = flask_login.LoginManager(app)

    @manager.request_loader
    def load(req: Any) -> User | None:
        header = req.headers.get("Authorization", "")
        user = tokens.get(header[7:]) if header.startswith("Bearer ") else None
        return None if user is None else User(user)

    @app.get("/me")
    @flask_login.login_required
    def me() -> str:
        return str(flask_login.current_user.id)

    return app


def flask_session_app(ctx: Context) -> tuple[WSGIApp, Any]:
    """Flask-Session's Redis interface with its defaults, keys under the run's prefix."""
    import redis
    from flask import Flask, session
    from flask_session import Session

    client = redis.Redis.from_url(ctx.redis_url)
    app = Flask("bench_flask_session")
    app.config.update(
        SESSION_TYPE="redis",
        SESSION_REDIS=client,
        SESSION_KEY_PREFIX=ctx.redis_prefix("flask-session"),
    )
    Session(app)

    @app.get("/set")
    def start() -> str:
        session["n"] = 1
        return "ok"

    @app.get("/s")
    def read() -> str:
        return str(session.get("n", 0))

    return app, client


class Ours:
    """A Flask app behind ``AuthMW`` on one storage, with a token and a session cookie."""

    def __init__(self, ctx: Context, storage: AuthStorage) -> None:
        from flask import Flask

        self.app = Flask("bench_authmw")
        self.auth = ctx.framework(storage)
        self.ext = authmw_flask.AuthMW(self.app, self.auth)

        @self.app.get("/me")
        @authmw_flask.login_required
        def me() -> str:
            return str(authmw_flask.current_user.identity)

        @self.app.get("/login")
        def login() -> str:
            # Password-less: a GET cannot carry the login form's CSRF token (set-up only).
            authmw_flask.login_user(USER)
            authmw_flask.current_session["n"] = 1
            return "ok"

        @self.app.get("/s")
        def read() -> str:
            return str(authmw_flask.current_session.get("n", 0))

        # Set-up runs on the middleware's own loop, where the storage lives.
        self.ext.run(self.auth.register_user(USER, PASSWORD))
        self.token = self.ext.run(self.auth.authenticate(USER, PASSWORD)).access_token
        self.cookie = cookie_from(self.app, environ_for("/login"), self.auth.config.cookie.name)

    def bearer(self) -> Environ:
        """``/me`` with the bearer token."""
        return environ_for("/me", {"Authorization": f"Bearer {self.token}"})

    def session(self) -> Environ:
        """``/s`` with the session cookie (reads the session, changes nothing)."""
        return environ_for("/s", {"Cookie": self.cookie})


def measure(ctx: Context) -> list[Row]:
    """Build every app, measure them in turns, close them (runs on a worker thread)."""
    s = ctx.settings
    ours: dict[str, Ours] = {}
    session_client = None
    try:
        for name, storage in (
            ("memory", InMemoryStorage()),
            ("cached Redis", ctx.redis("wsgi-c", cached=True)),
            ("Redis", ctx.redis("wsgi-r")),
        ):
            ours[name] = Ours(ctx, storage)
        tokens = {ours["memory"].token: USER}
        sessions_app, session_client = flask_session_app(ctx)
        session_cookie = cookie_from(sessions_app, environ_for("/set"), "session")
        cases: dict[str, tuple[WSGIApp, Environ, bytes]] = {
            "bare": (bare_app(), environ_for("/me"), USER.encode()),
            "Flask-Login": (flask_login_app(tokens), ours["memory"].bearer(), USER.encode()),
            "bearer memory": (ours["memory"].app, ours["memory"].bearer(), USER.encode()),
            "bearer cached Redis": (
                ours["cached Redis"].app,
                ours["cached Redis"].bearer(),
                USER.encode(),
            ),
            "Flask-Session": (sessions_app, environ_for("/s", {"Cookie": session_cookie}), b"1"),
            "session Redis": (ours["Redis"].app, ours["Redis"].session(), b"1"),
            "session cached Redis": (
                ours["cached Redis"].app,
                ours["cached Redis"].session(),
                b"1",
            ),
        }
        for app, env, expect in cases.values():
            check(app, env, expect)
        r = interleave_sync(
            s.rounds,
            {
                name: (lambda a=app, e=env: sync_rate(serve_op(a, e), s.seconds))
                for name, (app, env, _) in cases.items()
            },
        )
    finally:
        for built in ours.values():
            built.ext.close()
        if session_client is not None:
            session_client.close()
    ctx.notes.append(
        "Flask-Session with its defaults (permanent sessions, Flask's "
        "SESSION_REFRESH_EACH_REQUEST) writes the session back to Redis on every request. "
        "authmw's Flask bearer row on memory crosses to the middleware's loop thread on every "
        "request; on a cached storage a hit is answered on the request's own thread."
    )
    login_peer = "Flask-Login request_loader + dict"
    session_peer = "Flask-Session + Redis"
    return [
        reference(SECTION, "bare Flask app (no authentication)", r["bare"]),
        compare(
            SECTION,
            "Flask-Login request_loader + dict (peer) / bare app",
            r["Flask-Login"],
            r["bare"],
            "bare app",
        ),
        compare(
            SECTION,
            "authmw AuthMW bearer, memory",
            r["bearer memory"],
            r["Flask-Login"],
            login_peer,
            at_least=1.1,
        ),
        compare(
            SECTION,
            "authmw AuthMW bearer, cached Redis",
            r["bearer cached Redis"],
            r["Flask-Login"],
            login_peer,
            at_least=1.1,
        ),
        compare(
            SECTION,
            "authmw AuthMW session, Redis",
            r["session Redis"],
            r["Flask-Session"],
            session_peer,
            lead=True,
        ),
        compare(
            SECTION,
            "authmw AuthMW session, cached Redis",
            r["session cached Redis"],
            r["Flask-Session"],
            session_peer,
            at_least=3.0,
        ),
    ]


async def run(ctx: Context) -> list[Row]:
    """The Flask rows; the blocking WSGI calls run off the harness's event loop."""
    return await asyncio.to_thread(measure, ctx)


if __name__ == "__main__":
    from benchmarks.harness import standalone

    standalone("wsgi_flask")
