"""What a request that never touches the session costs in the middleware (issue 12, item 1).

An anonymous ``GET`` without cookies through ``AuthMiddleware`` and ``WSGIAuthMiddleware``
over a trivial app, called directly (no HTTP client). CPU time per request (process time, so a
busy machine does not inflate it), the fastest of 15 runs of 10,000 calls. Compare trees with
``PYTHONPATH=<tree> python -m benchmarks.anonymous_cost``.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from authmw import AuthConfig, AuthFramework, AuthMiddleware, InMemoryStorage, WSGIAuthMiddleware

CALLS, RUNS = 10_000, 15


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [])
    return [b"ok"]


async def _asgi_run(middleware: AuthMiddleware) -> float:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"host", b"x")]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    start = time.process_time()
    for _ in range(CALLS):
        await middleware(dict(scope), receive, send)  # type: ignore[arg-type]
    return (time.process_time() - start) / CALLS * 1e6


def _wsgi_run(middleware: WSGIAuthMiddleware) -> float:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()}

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    start = time.process_time()
    for _ in range(CALLS):
        body = middleware(dict(environ), start_response)  # type: ignore[arg-type]
        for _chunk in body:
            pass
        getattr(body, "close", lambda: None)()
    return (time.process_time() - start) / CALLS * 1e6


def main() -> None:
    """Print the CPU microseconds per anonymous request on each front."""
    auth = AuthFramework(InMemoryStorage(), AuthConfig(secret_key="k" * 40))
    asgi = AuthMiddleware(_app, auth, lifespan=False)  # type: ignore[arg-type]
    with WSGIAuthMiddleware(_wsgi_app, auth) as wsgi:
        asgi_us = min(asyncio.run(_asgi_run(asgi)) for _ in range(RUNS))
        wsgi_us = min(_wsgi_run(wsgi) for _ in range(RUNS))
    print(f"anonymous GET, session untouched: ASGI {asgi_us:.2f} us, WSGI {wsgi_us:.2f} us (CPU)")


if __name__ == "__main__":
    main()
