"""Requests/s of a Flask app behind WSGIAuthMiddleware vs the same app with Flask-Login.

Run: ``.venv/bin/python benchmarks/wsgi_flask.py`` (``--quick`` for a shorter run,
``--threads 8`` to also drive both apps from 8 threads at once, ``--profile`` to print where
the authmw app spends its time).

Both apps serve ``GET /me`` through a ``login_required`` view that returns the user's id:

* authmw: ``AuthMW(app, auth)`` over ``InMemoryStorage``, a valid bearer token, authmw's
  ``login_required`` and ``current_user`` (every request makes one trip to the middleware's
  loop thread);
* the same over ``CachedStorage(InMemoryStorage())``, whose cache hits are answered on the
  request's own thread (no trip to the loop);
* Flask-Login: a ``LoginManager`` whose ``request_loader`` looks the bearer token up in a dict,
  Flask-Login's ``login_required`` and ``current_user``.

The harness is the same for both: the WSGI app called in-process with a prebuilt environ (a
fresh copy per request), the body consumed and closed. Rounds alternate between the apps and
each app's best and median round are reported, so a noisy neighbour hurts both alike. A bare
Flask app (no authentication) is measured too, to show what each adds to Flask's own cost, and
the cost of one trip to the middleware's loop thread is printed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import flask_login
from flask import Flask

from authmw import AuthConfig, AuthFramework, InMemoryStorage
from authmw.integrations import flask as authmw_flask
from authmw.storage import AuthStorage, CachedStorage
from authmw.testing import fast_password_hasher

KEY = "benchmark-secret-key-0123456789abcdef"
OURS = "authmw WSGIAuthMiddleware, bearer, memory"
THEIRS = "Flask-Login request_loader over a dict"
CACHED = "authmw, CachedStorage over memory"
BARE = "Flask alone, no authentication (reference)"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def authmw_app(*, cached: bool = False) -> tuple[Flask, authmw_flask.AuthMW, str]:
    app = Flask("authmw_bench")
    storage: AuthStorage = CachedStorage(InMemoryStorage()) if cached else InMemoryStorage()
    auth = AuthFramework(storage, AuthConfig(secret_key=KEY,
                                             password_hasher=fast_password_hasher()))
    ext = authmw_flask.AuthMW(app, auth)

    @app.get("/me")
    @authmw_flask.login_required
    def me() -> str:
        return authmw_flask.current_user.identity

    ext.run(auth.register_user("alice", "password"))
    token = ext.run(auth.authenticate("alice", "password")).access_token
    return app, ext, token


class User(flask_login.UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def flask_login_app() -> tuple[Flask, str]:
    app = Flask("flask_login_bench")
    app.secret_key = KEY
    manager = flask_login.LoginManager(app)
    token = "opaque-token-0123456789abcdef0123456789abcdef"
    users = {token: User("alice")}

    @manager.request_loader
    def load(request: Any) -> User | None:
        header = request.headers.get("Authorization", "")
        return users.get(header[7:]) if header.startswith("Bearer ") else None

    @app.get("/me")
    @flask_login.login_required
    def me() -> str:
        return str(flask_login.current_user.id)

    return app, token


def bare_app() -> Flask:
    """The same view with no authentication at all: what Flask itself costs."""
    app = Flask("bare_bench")

    @app.get("/me")
    def me() -> str:
        return "alice"

    return app


def environ(token: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/me", "QUERY_STRING": "",
        "SERVER_NAME": "bench", "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "bench", "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "https", "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    if not status.startswith("200"):
        raise AssertionError(f"benchmark request failed: {status}")
    return None


def serve(app: WSGIApp, base: dict[str, Any], count: int) -> bytes:
    body = b""
    for _ in range(count):
        env = base.copy()
        env["wsgi.input"] = io.BytesIO()
        result = app(env, start_response)
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return body


def rate(app: WSGIApp, base: dict[str, Any], seconds: float, threads: int = 1) -> float:
    """Requests per second of ``app`` over about ``seconds``, from ``threads`` threads."""
    done = [0] * threads
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            serve(app, base, 100)
            done[index] += 100

    start = time.perf_counter()
    if threads == 1:
        worker(0)
    else:
        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    return sum(done) / (time.perf_counter() - start)


def compare(apps: dict[str, tuple[WSGIApp, dict[str, Any]]], rounds: int, seconds: float,
            threads: int) -> dict[str, list[float]]:
    """Each app's rate per round, the apps taking turns within every round."""
    rates: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, (app, base) in apps.items():
            rates[name].append(rate(app, base, seconds, threads))
    return rates


def report(rates: dict[str, list[float]]) -> None:
    for name, values in rates.items():
        best, median = max(values), statistics.median(values)
        print(f"{name:<44}: best {best:8,.0f} req/s ({1e6 / best:6.1f} us), "
              f"median {median:8,.0f} req/s")
    theirs = rates[THEIRS]
    for name, label in ((OURS, "ratio authmw / Flask-Login"),
                        (CACHED, "ratio authmw cached / Flask-Login")):
        ours = rates[name]
        print(f"{label:<44}: best {max(ours) / max(theirs):8.2f}, "
              f"median {statistics.median(ours) / statistics.median(theirs):8.2f}")


def round_trip(ext: authmw_flask.AuthMW, count: int = 20_000) -> float:
    """Microseconds for one trip to the middleware's loop and back (a coroutine doing nothing)."""

    async def nothing() -> None:
        return None

    start = time.perf_counter()
    for _ in range(count):
        ext.run(nothing())
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter rounds")
    parser.add_argument("--threads", type=int, default=0, help="also measure from N threads")
    parser.add_argument("--profile", action="store_true", help="profile the authmw app")
    args = parser.parse_args()
    rounds, seconds = (3, 0.5) if args.quick else (7, 1.5)

    app, ext, token = authmw_app()
    cached_app, cached_ext, cached_token = authmw_app(cached=True)
    theirs_app, theirs_token = flask_login_app()
    apps = {
        # Flask's __call__ only forwards to wsgi_app, which AuthMW wrapped.
        OURS: (app, environ(token)),
        THEIRS: (theirs_app, environ(theirs_token)),
        CACHED: (cached_app, environ(cached_token)),
        BARE: (bare_app(), environ(token)),
    }
    try:
        for wsgi_app, base in apps.values():
            assert serve(wsgi_app, base, 1) == b"alice"
            serve(wsgi_app, base, 2000)  # warm-up
        print(f"{rounds} rounds of {seconds} s per app, apps taking turns; "
              f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        report(compare(apps, rounds, seconds, 1))
        print(f"{'one trip to the loop thread and back':<44}: {round_trip(ext):.1f} us")
        if args.threads > 1:
            print(f"-- from {args.threads} threads at once")
            report(compare(apps, rounds, seconds, args.threads))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            serve(*apps[OURS], 20_000)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    finally:
        ext.close()
        cached_ext.close()


if __name__ == "__main__":
    main()
