"""Requests against a hung Redis: status counts and answer times (issue 11, finding 3).

``python -m benchmarks.hung_storage [--requests 64] [--timeout 2]`` starts a throwaway
``redis-server`` on a free loopback port, logs a user in, pauses the server (``SIGSTOP``), fires
``--requests`` concurrent requests carrying the bearer token at a Starlette app
(``AuthMiddleware``, in-process over httpx) and the same number at a Flask app
(``WSGIAuthMiddleware``, one thread per request), then resumes the server. It prints the status
counts and the slowest answer of each run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from authmw import AuthConfig, AuthFramework, AuthMiddleware, WSGIAuthMiddleware
from authmw.storage.redis import RedisConfig, RedisStorage
from authmw.testing import fast_password_hasher


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _framework(port: int, storage_timeout: float) -> AuthFramework:
    storage = RedisStorage(RedisConfig(url=f"redis://127.0.0.1:{port}/0", timeout=storage_timeout))
    return AuthFramework(
        storage,
        AuthConfig(secret_key="x" * 32, password_hasher=fast_password_hasher()),
    )


async def _asgi(
    port: int, storage_timeout: float, count: int, pid: int
) -> tuple[dict[int, int], float]:
    auth = _framework(port, storage_timeout)

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", hello)], middleware=[Middleware(AuthMiddleware, auth=auth)])
    async with auth:
        await auth.register_user("alice", "correct horse battery")
        token = (await auth.authenticate("alice", "correct horse battery")).access_token
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def one() -> tuple[int, float]:
                start = time.monotonic()
                got = await client.get("/", headers={"Authorization": f"Bearer {token}"})
                return got.status_code, time.monotonic() - start

            os.kill(pid, signal.SIGSTOP)
            try:
                results = await asyncio.gather(*(one() for _ in range(count)))
            finally:
                os.kill(pid, signal.SIGCONT)
    return dict(collections.Counter(s for s, _ in results)), max(t for _, t in results)


def _wsgi(port: int, storage_timeout: float, count: int, pid: int) -> tuple[dict[int, int], float]:
    auth = _framework(port, storage_timeout)
    flask_app = Flask(__name__)

    @flask_app.get("/")
    def hello() -> str:
        return "ok"

    middleware = WSGIAuthMiddleware(flask_app.wsgi_app, auth)
    flask_app.wsgi_app = middleware  # type: ignore[method-assign]
    client = flask_app.test_client()
    middleware.run(auth.register_user("bob", "correct horse battery"))
    token = middleware.run(auth.authenticate("bob", "correct horse battery")).access_token
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one() -> None:
        start = time.monotonic()
        status = client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code
        with lock:
            results.append((status, time.monotonic() - start))

    os.kill(pid, signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=one) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        os.kill(pid, signal.SIGCONT)
        middleware.close()
    return dict(collections.Counter(s for s, _ in results)), max(t for _, t in results)


def main() -> None:
    """Run both fronts against one paused throwaway server and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=5.0, help="RedisConfig.timeout")
    args = parser.parse_args()
    port = _free_port()
    root = tempfile.mkdtemp(prefix="authmw-hung-")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", root],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        for name, run in (
            (
                "asgi (starlette)",
                lambda: asyncio.run(_asgi(port, args.timeout, args.requests, proc.pid)),
            ),
            ("wsgi (flask)", lambda: _wsgi(port, args.timeout, args.requests, proc.pid)),
        ):
            counts, slowest = run()
            print(
                f"{name}: {args.requests} requests, status counts {counts}, slowest {slowest:.2f} s"
            )
    finally:
        proc.kill()
        proc.wait()
        for path in Path(root).iterdir():
            path.unlink()
        Path(root).rmdir()


if __name__ == "__main__":
    main()
