"""A hung storage (server stopped with SIGSTOP) at the edge: every authenticated request is
answered 503 with ``Retry-After`` within a bound, on the ASGI middleware (Starlette) and the
WSGI middleware (Flask, worker threads released); routes that need no login keep working;
once the server resumes, requests succeed again. Throwaway Redis and PostgreSQL servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask

from authmw import AuthFramework, WSGIAuthMiddleware
from authmw.storage import AuthStorage
from tests.backends.postgres import PgCluster
from tests.backends.redis import RedisServer
from tests.support.apps import client, make_app
from tests.support.cache_helpers import SERVERS, framework, inner_storage, namespace_for
from tests.support.hung import bound, kind_of, paused, throwaway, url_of

TIMEOUT = 1.0
REQUESTS = 64
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer | PgCluster]:
    """A throwaway server of each kind that these tests pause."""
    with throwaway(request.param) as server:
        yield server


def storage_over(server: RedisServer | PgCluster, **options: Any) -> AuthStorage:
    """A storage on ``server`` with a short timeout and a namespace of its own."""
    kind = kind_of(server)
    return inner_storage(kind, url_of(server), namespace_for(kind), timeout=TIMEOUT, **options)


def refused(status: int, headers: Any) -> bool:
    """A 503 that says when to come back."""
    return status == 503 and bool(headers.get("retry-after"))


async def test_asgi_answers_503_with_retry_after(server: RedisServer | PgCluster) -> None:
    """64 concurrent bearer requests to a Starlette app while storage hangs: every answer is
    503 with Retry-After, all within the bound; a route excluded from auth answers 200
    meanwhile; after the server resumes the token works again."""
    auth = framework(storage_over(server))
    app = make_app(auth)
    async with auth, client(app) as http:
        await auth.register_user("alice", PASSWORD)
        token = (await auth.authenticate("alice", PASSWORD)).access_token
        headers = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/private", headers=headers)).status_code == 200
        with paused(server):
            async with asyncio.timeout(bound(TIMEOUT)):
                answers, health = await asyncio.gather(
                    asyncio.gather(*(http.get("/private", headers=headers) for _ in range(64))),
                    http.get("/health"),
                )
        assert all(refused(a.status_code, a.headers) for a in answers), [
            a.status_code for a in answers
        ]
        assert health.status_code == 200
        await recovers(lambda: _status_async(http, headers))


async def _status_async(http: Any, headers: dict[str, str]) -> int:
    return int((await http.get("/private", headers=headers)).status_code)


async def recovers(status: Any) -> None:
    """``status()`` reaches 200 within the bound (the first calls may still meet connections
    that the outage broke)."""
    deadline = time.monotonic() + bound(TIMEOUT)
    while (got := await status()) != 200:
        assert time.monotonic() < deadline, f"still {got} after the server resumed"
        await asyncio.sleep(0.05)


def flask_app(auth: AuthFramework, **options: Any) -> tuple[Flask, WSGIAuthMiddleware]:
    """A Flask app with a route that needs a login and one that does not."""
    app = Flask(__name__)

    @app.get("/private")
    def private() -> tuple[str, int]:
        from flask import request

        user = request.environ["authmw.user"]
        return ("hello", 200) if user.is_authenticated else ("login first", 401)

    @app.get("/public")
    def public() -> str:
        return "anyone"

    middleware = WSGIAuthMiddleware(app.wsgi_app, auth, **options)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    return app, middleware


def test_wsgi_answers_503_with_retry_after(server: RedisServer | PgCluster) -> None:
    """64 concurrent bearer requests to a Flask app, one thread each, while storage hangs:
    every answer is 503 with Retry-After and every thread is released within the bound (the
    middleware's default wait follows the storage's timeout); afterwards the token works."""
    auth = framework(storage_over(server))
    app, middleware = flask_app(auth)
    try:
        middleware.run(auth.register_user("alice", PASSWORD))
        token = middleware.run(auth.authenticate("alice", PASSWORD)).access_token
        headers = {"Authorization": f"Bearer {token}"}
        http = app.test_client()
        assert http.get("/private", headers=headers).status_code == 200
        with ThreadPoolExecutor(REQUESTS) as pool, paused(server):
            futures = [pool.submit(http.get, "/private", headers=headers) for _ in range(64)]
            answers = [f.result(timeout=bound(TIMEOUT)) for f in futures]
        assert all(refused(a.status_code, a.headers) for a in answers), [
            a.status_code for a in answers
        ]
        asyncio.run(recovers(lambda: _status_sync(http, headers)))
    finally:
        middleware.close()


async def _status_sync(http: Any, headers: dict[str, str]) -> int:
    return int(http.get("/private", headers=headers).status_code)


def test_wsgi_route_without_login_is_not_blocked(server: RedisServer | PgCluster) -> None:
    """With 16 worker threads (a threaded server's pool) and 64 authenticated requests queued
    ahead of it while storage hangs, a request that sends no credentials still gets its 200
    within the bound: hung calls end at the timeout, and callers beyond the storage's bound
    on waiting ones fail at once instead of holding threads."""
    auth = framework(storage_over(server, pool_size=2, max_waiting=2))
    app, middleware = flask_app(auth)
    try:
        middleware.run(auth.register_user("alice", PASSWORD))
        token = middleware.run(auth.authenticate("alice", PASSWORD)).access_token
        headers = {"Authorization": f"Bearer {token}"}
        http = app.test_client()
        with ThreadPoolExecutor(16) as pool, paused(server):
            futures = [pool.submit(http.get, "/private", headers=headers) for _ in range(64)]
            public = pool.submit(http.get, "/public").result(timeout=bound(TIMEOUT))
            answers = [f.result(timeout=bound(TIMEOUT)) for f in futures]
        assert public.status_code == 200
        assert all(refused(a.status_code, a.headers) for a in answers)
    finally:
        middleware.close()
