"""authmw.integrations.starlette.requires: Starlette's signature, 401 for anonymous callers and
403 for authenticated ones lacking a scope, on async, sync and websocket endpoints."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from authmw import AuthFramework, AuthMiddleware
from authmw.integrations.starlette import requires
from authmw.storage import InMemoryStorage
from authmw.testing import test_config


@requires("role:admin")
async def admin(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello {request.user.display_name}")


@requires(["authenticated", "write"], status_code=404)
def hidden(request: Request) -> PlainTextResponse:
    return PlainTextResponse("found")


@requires("authenticated", redirect="login_page")
async def account(request: Request) -> PlainTextResponse:
    return PlainTextResponse("account")


async def login_page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("log in")


@requires("role:admin")
async def feed(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("admin feed")
    await websocket.close()


def make_app(auth: AuthFramework) -> Starlette:
    app = Starlette(
        routes=[
            Route("/admin", admin),
            Route("/hidden", hidden),
            Route("/account", account),
            Route("/login", login_page, name="login_page"),
            WebSocketRoute("/feed", feed),
        ]
    )
    app.add_middleware(AuthMiddleware, auth=auth)
    return app


async def bearer(auth: AuthFramework, user: str, **kwargs: Any) -> dict[str, str]:
    await auth.register_user(user, "password", **kwargs)
    return {"Authorization": f"Bearer {(await auth.issue_tokens(user)).access_token}"}


async def test_anonymous_401_authenticated_403(auth: AuthFramework) -> None:
    """Anonymous: 401 + WWW-Authenticate; lacking the scope: 403 insufficient_scope; with
    it: the endpoint (async and sync)."""
    admin_headers = await bearer(auth, "ada", roles=["admin"], permissions=["write"])
    user_headers = await bearer(auth, "bob")
    transport = httpx.ASGITransport(app=make_app(auth))
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
        anonymous = await client.get("/admin")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        refused = await client.get("/admin", headers=user_headers)
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert (await client.get("/admin", headers=admin_headers)).text == "hello ada"
        # Sync endpoint; status_code applies to authenticated callers only.
        assert (await client.get("/hidden")).status_code == 401
        assert (await client.get("/hidden", headers=user_headers)).status_code == 404
        assert (await client.get("/hidden", headers=admin_headers)).text == "found"


async def test_redirect_only_browsers(auth: AuthFramework) -> None:
    """redirect= sends anonymous browsers to the login page with ?next=; API clients get 401."""
    transport = httpx.ASGITransport(app=make_app(auth))
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
        browser = await client.get("/account", headers={"Accept": "text/html,*/*;q=0.8"})
        assert browser.status_code == 303
        assert browser.headers["location"] == "https://t/login?next=https%3A%2F%2Ft%2Faccount"
        assert (await client.get("/account")).status_code == 401


def test_websocket_refused_before_accept() -> None:
    """A websocket without the scope is closed with 1008 before it is accepted."""
    auth = AuthFramework(InMemoryStorage(), test_config())
    with TestClient(make_app(auth), base_url="https://testserver") as client:
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/feed"):
            pass
        assert closed.value.code == 1008
        client.portal.call(  # type: ignore[union-attr]
            lambda: auth.register_user("ada", "password", roles=["admin"])
        )
        token = client.portal.call(auth.issue_tokens, "ada")  # type: ignore[union-attr]
        headers = {"Authorization": f"Bearer {token.access_token}"}
        with client.websocket_connect("/feed", headers=headers) as websocket:
            assert websocket.receive_text() == "admin feed"


def test_needs_request_or_websocket_parameter() -> None:
    """Like Starlette's, the decorator refuses an endpoint it cannot read the request from."""
    with pytest.raises(TypeError, match="request"):

        @requires("x")
        async def nothing(conn: Request) -> None: ...
