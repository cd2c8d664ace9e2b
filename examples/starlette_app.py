"""A Starlette app: a bearer-protected API route and a session-login page.

python examples/starlette_app.py           # exercise the app in-process and print the steps
python examples/starlette_app.py --serve   # serve it on http://127.0.0.1:8000
"""

import asyncio
import os
import sys

import httpx
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import authmw
from authmw import AuthConfig, AuthFramework, AuthMiddleware, InvalidCredentials, storage_from_url

auth = AuthFramework(
    storage_from_url(os.environ.get("AUTHMW_STORAGE_URL", "memory://")),
    AuthConfig(secret_key=os.environ.get("AUTHMW_SECRET_KEY", "example-only-key-0123456789abcdef")),
)


@requires("authenticated", status_code=401)
async def api_profile(request: Request) -> JSONResponse:
    """Bearer or session: the middleware already verified the credentials."""
    return JSONResponse({"user": request.user.identity, "scopes": request.auth.scopes})


async def login_page(request: Request) -> JSONResponse:
    """POST {"user", "password"}: logs in with a server-side session cookie."""
    body = await request.json()
    try:
        user = await authmw.login(request, body["user"], body["password"])
    except InvalidCredentials:
        return JSONResponse({"error": "wrong user or password"}, status_code=401)
    request.session["greeting"] = f"welcome back, {user.user_id}"
    return JSONResponse({"logged_in": user.user_id})


@requires("authenticated", redirect="login_page")
async def dashboard(request: Request) -> PlainTextResponse:
    """A page for logged-in browsers, reading the session."""
    return PlainTextResponse(request.session.get("greeting", "hello"))


app = Starlette(
    routes=[
        Route("/api/profile", api_profile),
        Route("/login", login_page, methods=["POST"], name="login_page"),
        Route("/dashboard", dashboard),
    ],
    middleware=[Middleware(AuthMiddleware, auth=auth)],
)


async def selftest() -> None:
    await auth.register_user("ada", "correct horse battery")
    token = await auth.authenticate("ada", "correct horse battery")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        api = await client.get(
            "/api/profile", headers={"Authorization": f"Bearer {token.access_token}"}
        )
        print("GET /api/profile with a bearer token ->", api.status_code, api.json())
        print("GET /api/profile anonymous ->", (await client.get("/api/profile")).status_code)
        login = await client.post(
            "/login", json={"user": "ada", "password": "correct horse battery"}
        )
        print("POST /login ->", login.status_code, login.json())
        page = await client.get("/dashboard")
        print("GET /dashboard with the session cookie ->", page.status_code, page.text)
        assert api.status_code == 200 and page.text == "welcome back, ada"


if __name__ == "__main__":
    if "--serve" in sys.argv:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
    else:
        asyncio.run(selftest())
