"""A Starlette app: a bearer-protected API route, a session-login page, a sign-up that logs the
new user in without asking for the password again (``authmw.login_user``), and authmw's ready
error handlers (a taken user id is a 409, a wrong password a 401, storage down a 503).

python examples/starlette_app.py           # exercise the app in-process and print the steps
python examples/starlette_app.py --serve   # serve it on http://127.0.0.1:8000
"""

import asyncio
import os
import sys

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import authmw
from authmw import AuthConfig, AuthFramework, AuthMiddleware, storage_from_url

# Starlette's signature; 401 + WWW-Authenticate for anonymous callers, 403 for lacking a scope.
from authmw.integrations.starlette import requires

auth = AuthFramework(
    storage_from_url(os.environ.get("AUTHMW_STORAGE_URL", "memory://")),
    AuthConfig(secret_key=os.environ.get("AUTHMW_SECRET_KEY", "example-only-key-0123456789abcdef")),
)


@requires("authenticated")
async def api_profile(request: Request) -> JSONResponse:
    """Bearer or session: the middleware already verified the credentials."""
    return JSONResponse({"user": request.user.identity, "scopes": request.auth.scopes})


async def login_page(request: Request) -> JSONResponse:
    """POST {"user", "password"}: logs in with a server-side session cookie.

    A wrong password (401), a locked account (429) or a storage outage (503) need no code here:
    authmw.exception_handlers answers them.
    """
    body = await request.json()
    user = await authmw.login(request, body["user"], body["password"])
    request.session["greeting"] = f"welcome back, {user.user_id}"
    return JSONResponse({"logged_in": user.user_id})


async def sign_up(request: Request) -> JSONResponse:
    """POST {"user", "password"}: registers and logs in at once (password-less login).

    A taken user id raises UserExists, which the ready handlers answer with a 409.
    """
    body = await request.json()
    await auth.register_user(body["user"], body["password"])
    user = await authmw.login_user(request, body["user"])
    request.session["greeting"] = f"welcome, {user.user_id}"
    return JSONResponse({"signed_up": user.user_id}, status_code=201)


@requires("authenticated", redirect="login_page")
async def dashboard(request: Request) -> PlainTextResponse:
    """A page for logged-in browsers, reading the session."""
    return PlainTextResponse(request.session.get("greeting", "hello"))


app = Starlette(
    routes=[
        Route("/api/profile", api_profile),
        Route("/login", login_page, methods=["POST"], name="login_page"),
        Route("/sign-up", sign_up, methods=["POST"]),
        Route("/dashboard", dashboard),
    ],
    middleware=[Middleware(AuthMiddleware, auth=auth)],
    exception_handlers=authmw.exception_handlers,
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
        anonymous = await client.get("/api/profile")
        print(
            "GET /api/profile anonymous ->",
            anonymous.status_code,
            anonymous.headers["www-authenticate"],
        )
        assert anonymous.status_code == 401
        login = await client.post(
            "/login", json={"user": "ada", "password": "correct horse battery"}
        )
        print("POST /login ->", login.status_code, login.json())
        page = await client.get("/dashboard")
        print("GET /dashboard with the session cookie ->", page.status_code, page.text)
        assert api.status_code == 200 and page.text == "welcome back, ada"
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        new = await client.post("/sign-up", json={"user": "bob", "password": "a long passphrase"})
        print("POST /sign-up ->", new.status_code, new.json())
        page = await client.get("/dashboard")
        print("GET /dashboard right after sign-up ->", page.status_code, page.text)
        assert new.status_code == 201 and page.text == "welcome, bob"
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        taken = await client.post("/sign-up", json={"user": "bob", "password": "another one!"})
        print("POST /sign-up with a taken id ->", taken.status_code, taken.json())
        wrong = await client.post("/login", json={"user": "bob", "password": "not it at all"})
        print("POST /login with a wrong password ->", wrong.status_code, wrong.json())
        assert taken.status_code == 409 and wrong.status_code == 401


if __name__ == "__main__":
    if "--serve" in sys.argv:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
    else:
        asyncio.run(selftest())
