"""Calling an ASGI app in-process with a prebuilt scope: no socket, no HTTP parsing.

What a case measures is then what the app and its middleware cost per request. Cookies come
from a real request through the app (a login route, a route that writes the session) and are
replayed as the ``Set-Cookie`` value the app returned, so no case forges a cookie by hand.
"""

from __future__ import annotations

from typing import Any

from benchmarks.timing import Op

__all__ = ["asgi_op", "check", "cookie_from", "fetch", "scope_for"]

Scope = dict[str, Any]


def scope_for(
    path: str, headers: list[tuple[bytes, bytes]] | None = None, *, method: str = "GET"
) -> Scope:
    """An HTTPS request scope as a server would build it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers or []),
        "client": ("127.0.0.1", 50000),
        "server": ("bench.local", 443),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: dict[str, Any]) -> None:
    return None


def asgi_op(app: Any, scope: Scope) -> Op:
    """One request per call: a shallow copy of the scope (apps write into it), output dropped."""

    async def op(_: int) -> None:
        await app(dict(scope), _receive, _discard)

    return op


async def fetch(app: Any, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of one request."""
    status = 0
    headers: list[tuple[bytes, bytes]] = []
    body: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.extend(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(dict(scope), _receive, send)
    return status, headers, b"".join(body)


async def check(app: Any, scope: Scope, expect: bytes) -> None:
    """Fail loudly unless the request succeeds with ``expect`` as its body: a case that
    measured a 401 or an error page would compare nothing."""
    status, _, body = await fetch(app, scope)
    if status != 200 or body != expect:
        raise RuntimeError(f"{scope['path']}: expected 200 {expect!r}, got {status} {body!r}")


async def cookie_from(app: Any, scope: Scope, name: str) -> bytes:
    """``name=value`` of the cookie the app sets on this request (e.g. a login route)."""
    status, headers, body = await fetch(app, scope)
    for key, value in headers:
        if key == b"set-cookie" and value.startswith(name.encode() + b"="):
            return value.split(b";", 1)[0]
    raise RuntimeError(f"{scope['path']} set no {name} cookie ({status} {body!r})")
