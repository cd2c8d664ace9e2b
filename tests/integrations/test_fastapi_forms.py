"""FastAPI with plain HTML forms: Form() parameters after the middleware read the CSRF field,
an anonymous cart carried over a form login, and login CSRF, on every backend."""

from __future__ import annotations

import re
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse

import authmw
from authmw import AuthFramework, AuthMiddleware

TOKEN = re.compile(r'name="csrf_token" value="(\w+)"')


def make_api(auth: AuthFramework) -> FastAPI:
    api = FastAPI()
    api.add_middleware(AuthMiddleware, auth=auth)
    for error, handler in authmw.exception_handlers.items():
        api.add_exception_handler(error, handler)

    @api.get("/form", response_class=HTMLResponse)
    async def form(request: Request) -> str:
        token = authmw.csrf_token(request)
        return f'<form method="post"><input type="hidden" name="csrf_token" value="{token}">'

    @api.post("/cart")
    async def cart(request: Request, item: Annotated[str, Form()]) -> dict[str, Any]:
        request.session.setdefault("cart", []).append(item)
        return {"cart": request.session["cart"]}

    @api.post("/login")
    async def login(
        request: Request, user: Annotated[str, Form()], password: Annotated[str, Form()]
    ) -> dict[str, Any]:
        logged_in = await authmw.login(request, user, password)
        return {"user": logged_in.user_id, "session": dict(request.session)}

    return api


async def test_form_login_keeps_the_anonymous_cart(auth: AuthFramework) -> None:
    """Form() fields reach the view after the middleware read csrf_token from the body; the
    cart of the anonymous session is the user's after a form login, under a new id."""
    await auth.register_user("ann", "password")
    transport = httpx.ASGITransport(app=make_api(auth))
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
        ann = {"user": "ann", "password": "password"}
        assert (await client.post("/login", data=ann)).status_code == 403  # login CSRF
        found = TOKEN.search((await client.get("/form")).text)
        assert found is not None
        token = found[1]
        added = await client.post("/cart", data={"item": "tea", "csrf_token": token})
        assert added.json() == {"cart": ["tea"]}
        assert (await client.post("/cart", data={"item": "jam"})).status_code == 403
        before = client.cookies["authmw_session"]
        logged_in = await client.post("/login", data={**ann, "csrf_token": token})
        assert logged_in.json() == {"user": "ann", "session": {"cart": ["tea"]}}
        assert client.cookies["authmw_session"] != before
    stats = await auth.storage.get_statistics()
    assert (stats.active_sessions, stats.anonymous_sessions) == (1, 0)
