"""authmw.testing: why its clients use https://testserver, and that they keep a login."""

from __future__ import annotations

import httpx
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import authmw
from authmw import AuthFramework, AuthMiddleware, CookieConfig
from authmw.integrations.flask import AuthMW, current_user, login_user
from authmw.storage import InMemoryStorage
from authmw.testing import TEST_BASE_URL, asgi_client, test_config, wsgi_client


def starlette_app(auth: AuthFramework) -> Starlette:
    async def sso(request: Request) -> PlainTextResponse:
        return PlainTextResponse((await authmw.login_user(request, "ann")).user_id)

    async def who(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.user.display_name or "anonymous")

    app = Starlette(routes=[Route("/sso", sso, methods=["POST"]), Route("/who", who)])
    app.add_middleware(AuthMiddleware, auth=auth, csrf=False)
    return app


async def test_secure_cookie_needs_https_base_url() -> None:
    """The session cookie is Secure by default, so httpx on http:// does not send it back
    (logged out on the next request); asgi_client (https) keeps the login."""
    auth = AuthFramework(InMemoryStorage(), test_config())
    await auth.register_user("ann", "password")
    app = starlette_app(auth)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as plain:
        login = await plain.post("/sso")
        assert "Secure" in login.headers["set-cookie"]
        assert (await plain.get("/who")).text == "anonymous"
    async with asgi_client(app) as client:
        assert str(client.base_url).rstrip("/") == TEST_BASE_URL
        await client.post("/sso")
        assert (await client.get("/who")).text == "ann"


async def test_plain_http_with_secure_false() -> None:
    """CookieConfig(secure=False), as the demo does for local http: the login sticks on
    http://127.0.0.1 and the cookie has no Secure attribute."""
    auth = AuthFramework(InMemoryStorage(), test_config(cookie=CookieConfig(secure=False)))
    await auth.register_user("ann", "password")
    transport = httpx.ASGITransport(app=starlette_app(auth))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        assert "Secure" not in (await client.post("/sso")).headers["set-cookie"]
        assert (await client.get("/who")).text == "ann"


def test_wsgi_client_keeps_a_flask_login() -> None:
    """wsgi_client calls a Flask app over https://testserver; the login sticks."""
    auth = AuthFramework(InMemoryStorage(), test_config())
    app = Flask(__name__)
    ext = AuthMW(app, auth, csrf=False)

    @app.post("/sso")
    def sso() -> str:
        return login_user("ann").user_id

    @app.get("/who")
    def who() -> str:
        return current_user.get_id() or "anonymous"

    try:
        ext.run(auth.register_user("ann", "password"))
        with wsgi_client(app) as client:
            client.post("/sso")
            assert client.get("/who").text == "ann"
    finally:
        ext.close()
