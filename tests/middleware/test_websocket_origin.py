"""Websocket handshakes authenticated by the session cookie must come from an allowed Origin.

A browser sends the cookie with a handshake whatever page opens the socket, and a handshake
carries no CSRF token: without an Origin check any site could open a socket as the victim
(cross-site websocket hijacking). Allowed: the request's own host, and ``websocket_origins``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from authmw import AuthFramework, AuthMiddleware, InMemoryStorage, MiddlewareOptions
from authmw.errors import ConfigurationError
from authmw.middleware._cookies import SessionCookieCodec
from authmw.middleware._edge import Edge
from authmw.testing import test_config


class World:
    """A Starlette app with a websocket route behind AuthMiddleware, a session and a token."""

    def __init__(self, **options: Any) -> None:
        self.reached: list[str] = []
        self.auth = AuthFramework(InMemoryStorage(), test_config())

        async def echo(websocket: WebSocket) -> None:
            self.reached.append(websocket.user.display_name)
            await websocket.accept()
            await websocket.send_json({"user": websocket.user.display_name})
            await websocket.close()

        self.app = Starlette(
            routes=[WebSocketRoute("/ws", echo)],
            middleware=[Middleware(AuthMiddleware, auth=self.auth, **options)],
        )
        self.client = TestClient(self.app, base_url="https://testserver")
        self.client.__enter__()  # lifespan: opens the framework on the client's loop
        portal = self.client.portal
        assert portal is not None
        portal.call(self.auth.register_user, "ann", "password")
        session_id, _ = portal.call(self.auth.create_session, "ann")
        codec = SessionCookieCodec(self.auth.config.signing_keys, self.auth.config.cookie, "x")
        self.cookie = f"authmw_session={codec.sign(session_id)}"
        self.token = portal.call(self.auth.authenticate, "ann", "password").access_token

    def connect(self, **headers: str) -> Any:
        """Open /ws with these headers; the JSON the app sent, or the denial response."""
        try:
            with self.client.websocket_connect("/ws", headers=headers) as ws:
                return ws.receive_json()
        except WebSocketDenialResponse as denial:
            return denial

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@pytest.fixture
def world() -> Iterator[World]:
    """The app with the default options."""
    built = World()
    yield built
    built.close()


def refused(answer: Any) -> bool:
    """The handshake was answered 403 origin_refused."""
    return (
        isinstance(answer, WebSocketDenialResponse)
        and answer.status_code == 403
        and answer.json()["error"] == "origin_refused"
    )


def test_same_origin_is_accepted(world: World) -> None:
    """A page of the site itself (Origin matches Host) opens a socket as the session's user."""
    assert world.connect(cookie=world.cookie, origin="https://testserver") == {"user": "ann"}
    assert world.reached == ["ann"]


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://testserver.evil.example",
        "https://testserver:8443",
        "null",
        "https://testserver/path",
        "testserver",
        "",
    ],
)
def test_other_origins_are_refused(world: World, origin: str) -> None:
    """Another site's page (or an opaque, malformed or empty Origin) is refused with 403 before
    the app sees the socket."""
    assert refused(world.connect(cookie=world.cookie, origin=origin))
    assert world.reached == []


def test_missing_origin_is_refused(world: World) -> None:
    """A cookie-authenticated handshake without Origin is refused (browsers always send one;
    other clients use a bearer token)."""
    assert refused(world.connect(cookie=world.cookie))
    assert world.reached == []


def test_bearer_needs_no_origin(world: World) -> None:
    """A bearer token is not sent by the browser on its own: any Origin (or none) is fine."""
    authorization = f"Bearer {world.token}"
    assert world.connect(authorization=authorization, origin="https://evil.example") == {
        "user": "ann"
    }
    assert world.connect(authorization=authorization) == {"user": "ann"}


def test_anonymous_needs_no_origin(world: World) -> None:
    """Without credentials there is nothing to hijack: the socket is anonymous."""
    assert world.connect(origin="https://evil.example") == {"user": ""}


def test_configured_origins() -> None:
    """websocket_origins lets other origins in, by exact scheme, host and port."""
    world = World(websocket_origins=["https://app.example.com", "http://localhost:3000"])
    try:
        for origin in ("https://app.example.com", "https://APP.example.com:443"):
            assert world.connect(cookie=world.cookie, origin=origin) == {"user": "ann"}
        assert world.connect(cookie=world.cookie, origin="http://localhost:3000") == {"user": "ann"}
        assert world.connect(cookie=world.cookie, origin="https://testserver") == {"user": "ann"}
        for origin in (
            "http://app.example.com",
            "https://app.example.com:8443",
            "http://localhost",
        ):
            assert refused(world.connect(cookie=world.cookie, origin=origin)), origin
    finally:
        world.close()


async def test_refused_without_the_denial_extension() -> None:
    """A server without websocket.http.response gets a close with 1008 before the accept."""
    auth = AuthFramework(InMemoryStorage(), test_config())
    reached = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope)

    await auth.register_user("ann", "password")
    session_id, _ = await auth.create_session("ann")
    cookie = SessionCookieCodec(auth.config.signing_keys, auth.config.cookie, "x").sign(session_id)
    middleware = AuthMiddleware(app, auth, lifespan=False)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [
            (b"host", b"testserver"),
            (b"origin", b"https://evil.example"),
            (b"cookie", f"authmw_session={cookie}".encode()),
        ],
    }
    await asyncio.wait_for(middleware(scope, receive, send), 10)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "origin_refused"}]
    assert reached == []
    await auth.close()


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("https://example.com", "example.com", True),
        ("https://example.com:443", "example.com", True),
        ("https://example.com", "example.com:443", True),
        ("http://example.com:8000", "example.com:8000", True),
        ("HTTPS://Example.COM", "EXAMPLE.com", True),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("http://example.com", "example.com:8000", False),
        ("https://example.com:8443", "example.com", False),
        ("https://example.com", "example.com:80", False),
        ("https://example.com.evil", "example.com", False),
        ("https://user@example.com", "example.com", False),
        ("https://example.com:99999", "example.com:99999", False),
        ("https://example.com", None, False),
        ("https://example.com", "example.com/x", False),
        (None, "example.com", False),
    ],
)
def test_origin_rules(origin: str | None, host: str | None, allowed: bool) -> None:
    """Same host: the Origin's host and port (its scheme's default when absent) equal Host's."""
    edge = Edge(AuthFramework(InMemoryStorage(), test_config()), MiddlewareOptions())
    assert edge.origin_allowed(origin, host) is allowed


@pytest.mark.parametrize(
    "origins", ["https://example.com", ["example.com"], ["https://example.com/"], [None], ["*"]]
)
def test_bad_websocket_origins_option(origins: Any) -> None:
    """websocket_origins must be a list of origins like 'https://example.com'."""
    with pytest.raises(ConfigurationError, match="websocket_origins"):
        MiddlewareOptions(websocket_origins=origins)
