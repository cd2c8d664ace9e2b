"""A small Starlette app behind AuthMiddleware, shared by the ASGI tests."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import authmw
from authmw import AuthFramework, AuthMiddleware
from authmw.errors import AccountLocked, InvalidCredentials


async def whoami(request: Request) -> Response:
    user = request.user
    return JSONResponse(
        {
            "authenticated": user.is_authenticated,
            "user": user.display_name,
            "method": getattr(user, "auth_method", None),
            "scopes": list(request.auth.scopes),
            "current": authmw.current_user().display_name,
        }
    )


@requires("authenticated")
async def private(request: Request) -> Response:
    return PlainTextResponse(f"hello {request.user.display_name}")


@requires("role:admin", status_code=403)
async def admin(request: Request) -> Response:
    return PlainTextResponse("admin area")


async def do_login(request: Request) -> Response:
    form: dict[str, Any] = await request.json()
    try:
        user = await authmw.login(request, form["user"], form["password"])
    except (InvalidCredentials, AccountLocked) as exc:
        return JSONResponse({"error": str(exc)}, status_code=401)
    return JSONResponse({"user": user.user_id, "current": authmw.current_user().display_name})


async def do_logout(request: Request) -> Response:
    await authmw.logout(request)
    return PlainTextResponse("bye")


async def show_session(request: Request) -> Response:
    return JSONResponse(dict(request.session))


async def add_to_cart(request: Request) -> Response:
    item = (await request.json())["item"]
    request.session.setdefault("cart", []).append(item)
    return JSONResponse(request.session)


async def boom(request: Request) -> Response:
    raise RuntimeError("the app failed")


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"user": websocket.user.display_name})
    await websocket.close()


def make_app(auth: AuthFramework, **options: Any) -> Starlette:
    """The test app with AuthMiddleware configured by ``options``."""
    routes = [
        Route("/whoami", whoami),
        Route("/private", private),
        Route("/admin", admin),
        Route("/login", do_login, methods=["POST"]),
        Route("/logout", do_logout, methods=["POST"]),
        Route("/session", show_session),
        Route("/cart", add_to_cart, methods=["POST"]),
        Route("/health", whoami),
        Route("/boom", boom),
        WebSocketRoute("/ws", ws_echo),
    ]
    options.setdefault("exclude_paths", ["/health"])
    return Starlette(routes=routes, middleware=[Middleware(AuthMiddleware, auth=auth, **options)])


def client(app: Any) -> httpx.AsyncClient:
    """An httpx client calling the app in-process over https (so Secure cookies flow)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="https://testserver",
    )
