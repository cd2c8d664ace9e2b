"""Requests/s of Starlette apps behind authmw vs Starlette's own middleware, same harness.

Run: ``.venv/bin/python benchmarks/middleware.py [--seconds 3]``

Each app is called in-process with a prebuilt ASGI scope (no network, no HTTP parsing), so
the figures compare what the middleware stacks cost per request:

1. bearer: ``AuthMiddleware`` with a valid token on in-memory storage, vs Starlette's
   ``AuthenticationMiddleware`` with a backend that looks the token up in a dict;
2. session: ``AuthMiddleware`` with a session cookie on in-memory storage, vs Starlette's
   cookie ``SessionMiddleware`` (signed client-side data, nothing looked up);
3. anonymous requests through each stack.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from authmw import AuthConfig, AuthFramework, AuthMiddleware, InMemoryStorage
from authmw.middleware._cookies import SessionCookieCodec
from authmw.testing import fast_password_hasher

KEY = "benchmark-secret-key-0123456789abcdef"


async def whoami(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.user.display_name)


async def session_view(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.session.get("n", 0)))


ROUTES = [Route("/", whoami), Route("/s", session_view)]


class DictBackend(AuthenticationBackend):
    """Starlette's documented pattern: look the bearer token up in a dict."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        header = conn.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        user = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(user)


def scope_for(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "https", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 1234),
            "server": ("bench", 443)}


async def rate(app: Any, scope: dict[str, Any], seconds: float, expect: bytes) -> float:
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(dict(scope), receive, send)
    assert body[-1] == expect, (body[-1], expect)
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            await app(dict(scope), receive, send)
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    seconds = parser.parse_args().seconds

    auth = AuthFramework(InMemoryStorage(), AuthConfig(secret_key=KEY,
                                                       password_hasher=fast_password_hasher()))
    await auth.register_user("alice", "password")
    token = (await auth.authenticate("alice", "password")).access_token
    session_id, _ = await auth.create_session("alice", {"n": 1})
    cookie = SessionCookieCodec(auth.config.signing_keys, auth.config.cookie, "x").sign(session_id)

    ours = Starlette(routes=ROUTES, middleware=[Middleware(AuthMiddleware, auth=auth)])
    theirs = Starlette(routes=ROUTES, middleware=[
        Middleware(AuthenticationMiddleware, backend=DictBackend({token: "alice"}))])
    starlette_sessions = Starlette(routes=ROUTES, middleware=[
        Middleware(SessionMiddleware, secret_key=KEY)])
    # A cookie for Starlette's SessionMiddleware holding the same data.
    captured: list[bytes] = []

    async def set_session(scope: Any, receive: Any, send: Any) -> None:
        scope["session"]["n"] = 1
        await PlainTextResponse("ok")(scope, receive, send)

    async def grab(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            captured.extend(v for k, v in message["headers"] if k == b"set-cookie")

    async def no_body() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    await SessionMiddleware(set_session, secret_key=KEY)(scope_for("/s", []), no_body, grab)
    starlette_cookie = captured[0].split(b";")[0]

    bearer = [(b"authorization", f"Bearer {token}".encode())]
    results = {
        "bearer: authmw AuthMiddleware": await rate(ours, scope_for("/", bearer), seconds,
                                                    b"alice"),
        "bearer: Starlette AuthenticationMiddleware + dict": await rate(
            theirs, scope_for("/", bearer), seconds, b"alice"),
        "session: authmw session cookie": await rate(
            ours, scope_for("/s", [(b"cookie", f"authmw_session={cookie}".encode())]),
            seconds, b"1"),
        "session: Starlette SessionMiddleware": await rate(
            starlette_sessions, scope_for("/s", [(b"cookie", starlette_cookie)]), seconds, b"1"),
        "anonymous: authmw AuthMiddleware": await rate(ours, scope_for("/", []), seconds, b""),
        "anonymous: Starlette AuthenticationMiddleware": await rate(
            theirs, scope_for("/", []), seconds, b""),
    }
    for name, value in results.items():
        print(f"{name:52s} {value:10,.0f} req/s")
    names = list(results)
    for ours_name, theirs_name in zip(names[::2], names[1::2], strict=True):
        print(f"ratio {ours_name.split(':')[0]:10s} authmw / Starlette = "
              f"{results[ours_name] / results[theirs_name]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
