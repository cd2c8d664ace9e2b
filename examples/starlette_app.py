"""A Starlette app: a bearer-protected API route, a shop page with a cart and flash messages
kept in an anonymous session (before any login), a plain HTML login form protected by the
session's CSRF token (no JavaScript; the cart survives the login), a sign-up that logs the new
user in without asking for the password again (``authmw.login_user``), and authmw's ready
error handlers (a taken user id is a 409, a wrong password a 401, storage down a 503).

Forms are read with ``request.form()``, which needs ``python-multipart``.

python examples/starlette_app.py           # exercise the app in-process and print the steps
python examples/starlette_app.py --serve   # serve it on http://127.0.0.1:8000
"""

import asyncio
import html
import os
import re
import sys

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
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


async def shop(request: Request) -> HTMLResponse:
    """The shop page: the flash message and cart of the visitor's session, an add-to-cart form
    and a login form. Both forms carry the session's CSRF token in a hidden field; rendering it
    starts an anonymous session (a visitor who only reads gets none)."""
    flash = request.session.pop("flash", "")
    cart = ", ".join(request.session.get("cart", [])) or "empty"
    token = authmw.csrf_token(request)
    field = f'<input type="hidden" name="csrf_token" value="{token}">'
    return HTMLResponse(
        f"<p>{html.escape(flash)}</p><p>Cart: {html.escape(cart)}</p>"
        f'<form method="post" action="/cart">{field}<input name="item"><button>Add</button></form>'
        f'<form method="post" action="/login">{field}<input name="user">'
        '<input name="password" type="password"><button>Log in</button></form>'
    )


async def add_to_cart(request: Request) -> RedirectResponse:
    """POST a form with ``item``: the middleware checked its csrf_token field."""
    form = await request.form()
    request.session.setdefault("cart", []).append(str(form["item"]))
    request.session["flash"] = f"added {form['item']}"
    return RedirectResponse("/", status_code=303)


async def login_page(request: Request) -> RedirectResponse:
    """POST the login form (``user``, ``password``, ``csrf_token``): logs in with a new
    session id; the anonymous session's cart carries over.

    A form without the pre-login session's token (login CSRF) is a 403, a wrong password a 401,
    a locked account a 429, a storage outage a 503: authmw.exception_handlers answers them all.
    """
    form = await request.form()
    user = await authmw.login(request, str(form["user"]), str(form["password"]))
    request.session["greeting"] = f"welcome back, {user.user_id}"
    return RedirectResponse("/dashboard", status_code=303)


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
    cart = request.session.get("cart", [])
    return PlainTextResponse(request.session.get("greeting", "hello") + f"; cart: {cart}")


app = Starlette(
    routes=[
        Route("/", shop),
        Route("/cart", add_to_cart, methods=["POST"]),
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
        form = {"user": "ada", "password": "correct horse battery"}
        forged = await client.post("/login", data=form)
        print("POST /login form without a CSRF token ->", forged.status_code)
        shop_page = await client.get("/")
        token = re.search(r'name="csrf_token" value="(\w+)"', shop_page.text)
        assert token is not None and forged.status_code == 403
        print("GET / starts an anonymous session ->", "authmw_session" in client.cookies)
        added = await client.post("/cart", data={"item": "tea", "csrf_token": token[1]})
        print("POST /cart (form) ->", added.status_code, (await client.get("/")).text[:40])
        before = client.cookies["authmw_session"]
        login = await client.post("/login", data={**form, "csrf_token": token[1]})
        print("POST /login (form) ->", login.status_code, login.headers["location"])
        page = await client.get("/dashboard")
        print("GET /dashboard with the session cookie ->", page.status_code, page.text)
        assert client.cookies["authmw_session"] != before  # a new session id at login
        assert api.status_code == 200 and page.text == "welcome back, ada; cart: ['tea']"
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        new = await client.post("/sign-up", json={"user": "bob", "password": "a long passphrase"})
        print("POST /sign-up ->", new.status_code, new.json())
        page = await client.get("/dashboard")
        print("GET /dashboard right after sign-up ->", page.status_code, page.text)
        assert new.status_code == 201 and page.text == "welcome, bob; cart: []"
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        taken = await client.post("/sign-up", json={"user": "bob", "password": "another one!"})
        print("POST /sign-up with a taken id ->", taken.status_code, taken.json())
        token = re.search(r'name="csrf_token" value="(\w+)"', (await client.get("/")).text)
        assert token is not None
        wrong = await client.post(
            "/login",
            data={"user": "bob", "password": "not it at all", "csrf_token": token[1]},
            headers={"Accept": "application/json"},
        )
        print("POST /login with a wrong password ->", wrong.status_code, wrong.json())
        assert taken.status_code == 409 and wrong.status_code == 401


if __name__ == "__main__":
    if "--serve" in sys.argv:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
    else:
        asyncio.run(selftest())
