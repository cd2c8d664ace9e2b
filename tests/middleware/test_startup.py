"""A storage that cannot be opened under a real uvicorn (default ``--lifespan auto``): the
reason is logged once at ERROR on the ``authmw`` logger, requests answer 503 with
``Retry-After`` (never 500), and opening is retried on later requests."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import authmw
from authmw import AuthConfig, AuthFramework, AuthMiddleware
from authmw.storage import InMemoryStorage, storage_from_url
from authmw.testing import fast_password_hasher
from tests.backends.postgres import with_database
from tests.backends.redis import RedisServer, wait_until
from tests.conftest import TEST_SECRET

PASSWORD = "startup-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def config() -> AuthConfig:
    return AuthConfig(secret_key=TEST_SECRET, password_hasher=fast_password_hasher())


def make_app(auth: AuthFramework) -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.display_name})

    async def login(request: Request) -> JSONResponse:
        user = await authmw.login(request, "alice", "password")
        return JSONResponse({"user": user.user_id})

    app = Starlette(
        routes=[Route("/whoami", whoami), Route("/login", login, methods=["POST"])],
        exception_handlers=authmw.exception_handlers,
    )
    app.add_middleware(AuthMiddleware, auth=auth, csrf=False)
    return app


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread, with its defaults (lifespan "auto")."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 20), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def valid_token() -> str:
    """An access token signed with the test key (issued through a memory storage)."""

    async def issue() -> str:
        async with AuthFramework(InMemoryStorage(), config()) as auth:
            await auth.register_user("alice", "password")
            return (await auth.issue_tokens("alice")).access_token

    return asyncio.run(issue())


@pytest.fixture
def protected_redis() -> Iterator[RedisServer]:
    """A throwaway redis-server that wants a password."""
    server = RedisServer([f"requirepass {PASSWORD}"], password=PASSWORD)
    try:
        yield server.start()
    finally:
        server.destroy()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("authmw") and r.levelno == logging.ERROR
    ]


def test_wrong_redis_password_logs_once_answers_503_and_recovers(
    protected_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong Redis password: one ERROR with the reason and the fix, 503 + Retry-After for
    bearer and login requests, and a later request opens the storage once the server accepts
    the password."""
    caplog.set_level(logging.DEBUG, logger="authmw")
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    url = f"redis://:wrong-password@127.0.0.1:{protected_redis.port}/0"
    auth = AuthFramework(storage_from_url(url), config())
    auth.reopen_interval = 0.5
    token = valid_token()
    with serve(make_app(auth)) as base, httpx.Client(base_url=base, timeout=30) as http:
        answer = http.get("/whoami", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"
        refused = http.post("/login")
        assert refused.status_code == 503
        assert "retry-after" in refused.headers
        assert http.get("/whoami").status_code == 200  # anonymous: no storage needed
        time.sleep(0.6)  # let a retry happen: it fails alike, and is not logged again
        assert http.get("/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 503

        logged = errors(caplog)
        assert len(logged) == 1, logged
        assert "refused the credentials" in logged[0]
        assert "Fix:" in logged[0]
        assert "wrong-password" not in logged[0]
        assert not any("unsupported" in r.getMessage() for r in caplog.records)

        # The operator sets the password the app uses: a later request opens the storage.
        with protected_redis.client() as admin:
            admin.config_set("requirepass", "wrong-password")

        def served() -> bool:
            response = http.get("/whoami", headers={"Authorization": f"Bearer {token}"})
            return response.status_code == 401  # opened: alice is unknown in this Redis

        assert wait_until(served, 20)
    assert auth.open_failure is None


def test_missing_postgres_database_logs_and_answers_503(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A PostgreSQL database that does not exist: ERROR naming it with the fix, and 503."""
    caplog.set_level(logging.INFO, logger="authmw")
    url = with_database(postgres_url, "authmw_no_such_database")
    auth = AuthFramework(storage_from_url(url), config())
    with serve(make_app(auth)) as base, httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(3):
            answer = http.post("/login")
            assert answer.status_code == 503
            assert "retry-after" in answer.headers
    logged = errors(caplog)
    assert len(logged) == 1, logged
    assert "database does not exist" in logged[0]
    assert "CREATE DATABASE" in logged[0]


def test_wsgi_first_request_logs_once_and_answers_503(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a lifespan (WSGI), the first request that needs the storage logs the reason at
    ERROR once; it and the next ones answer 503 with Retry-After."""
    from flask import Flask

    from authmw.integrations.flask import AuthMW
    from authmw.testing import wsgi_client

    caplog.set_level(logging.INFO, logger="authmw")
    url = with_database(postgres_url, "authmw_no_such_database")
    app = Flask(__name__)
    ext = AuthMW(app, AuthFramework(storage_from_url(url), config()))
    token = valid_token()
    try:
        with wsgi_client(app) as http:
            for _ in range(3):
                answer = http.get("/", headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 503
                assert answer.headers["retry-after"] == "5"
    finally:
        ext.close()
    logged = errors(caplog)
    assert len(logged) == 1 and "database does not exist" in logged[0], logged
