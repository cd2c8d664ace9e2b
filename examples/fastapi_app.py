"""A FastAPI app: bearer-protected routes with dependencies, a shop page whose cart and flash
message live in an anonymous session, a plain HTML login form protected by that session's CSRF
token (no JavaScript; the cart survives the login), a JSON login for API clients (a JSON body
needs no CSRF token), a sign-up that logs in without asking for the password again
(``authmw.login_user``), and authmw's ready error handlers: a wrong password is a 401, a
taken user id a 409, the storage down a 503.

Form parameters (``Form()``) need ``python-multipart``.

python examples/fastapi_app.py            # exercise the app in-process and print the steps
python examples/fastapi_app.py --serve    # serve it; open http://127.0.0.1:8000/docs
"""

import asyncio
import html
import os
import re
import sys
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel

import authmw
from authmw import AuthConfig, AuthFramework, AuthMiddleware, AuthUser, storage_from_url
from authmw.errors import AuthmwError
from authmw.integrations.fastapi import current_user, document_auth, require_scopes, token_endpoint

auth = AuthFramework(
    storage_from_url(os.environ.get("AUTHMW_STORAGE_URL", "memory://")),
    AuthConfig(secret_key=os.environ.get("AUTHMW_SECRET_KEY", "example-only-key-0123456789abcdef")),
)
app = FastAPI(title="authmw example")
app.add_middleware(AuthMiddleware, auth=auth)
# Every AuthmwError answers by itself: status, headers (Retry-After...), JSON or HTML by Accept.
app.add_exception_handler(AuthmwError, authmw.handle_authmw_error)
# OAuth2 password flow at /oauth/token: /docs' "Authorize" logs in with user and password.
app.include_router(token_endpoint(auth, "/oauth/token"))
document_auth(app, token_url="/oauth/token")  # 401/403 answers and the password flow in /docs


class Credentials(BaseModel):
    user: str
    password: str


@app.post("/token")
async def token(credentials: Credentials) -> dict[str, str]:
    """Exchange a password for a bearer token."""
    issued = await auth.authenticate(credentials.user, credentials.password)
    return {"access_token": issued.access_token, "token_type": "bearer"}


@app.get("/me")
async def me(user: AuthUser = Depends(current_user)) -> dict[str, object]:
    """Who is calling (bearer token or session cookie)."""
    return {"user": user.user_id, "via": user.auth_method, "roles": list(user.roles)}


@app.get("/reports", dependencies=[Depends(require_scopes("role:analyst"))])
async def reports() -> list[str]:
    """Only for users with the analyst role."""
    return ["q1.pdf", "q2.pdf"]


@app.post("/login")
async def login(credentials: Credentials, request: Request) -> dict[str, str]:
    """Log a browser in with a session cookie."""
    user = await authmw.login(request, credentials.user, credentials.password)
    return {"logged_in": user.user_id}


@app.get("/shop", response_class=HTMLResponse)
async def shop(request: Request) -> str:
    """The visitor's cart and flash message, an add-to-cart form and a login form. Rendering
    the CSRF token starts an anonymous session; a visitor who only reads gets none."""
    flash = request.session.pop("flash", "")
    cart = ", ".join(request.session.get("cart", [])) or "empty"
    field = f'<input type="hidden" name="csrf_token" value="{authmw.csrf_token(request)}">'
    return (
        f"<p>{html.escape(flash)}</p><p>Cart: {html.escape(cart)}</p>"
        f'<form method="post" action="/cart">{field}<input name="item"><button>Add</button></form>'
        f'<form method="post" action="/login-form">{field}<input name="user">'
        '<input name="password" type="password"><button>Log in</button></form>'
    )


@app.post("/cart")
async def add_to_cart(request: Request, item: Annotated[str, Form()]) -> RedirectResponse:
    """Add to the session's cart; the middleware checked the form's csrf_token field."""
    request.session.setdefault("cart", []).append(item)
    request.session["flash"] = f"added {item}"
    return RedirectResponse("/shop", status_code=303)


@app.post("/login-form")
async def login_form(
    request: Request, user: Annotated[str, Form()], password: Annotated[str, Form()]
) -> RedirectResponse:
    """The HTML login form: a new session id, the cart carried over. Without the pre-login
    session's csrf_token (login CSRF) the answer is a 403 from the error handlers."""
    await authmw.login(request, user, password)
    return RedirectResponse("/me", status_code=303)


@app.post("/sign-up", status_code=201)
async def sign_up(credentials: Credentials, request: Request) -> dict[str, str]:
    """Register and log in at once; a taken user id is a 409 (UserExists)."""
    await auth.register_user(credentials.user, credentials.password)
    user = await authmw.login_user(request, credentials.user)
    return {"signed_up": user.user_id}


async def selftest() -> None:
    await auth.register_user("grace", "correct horse battery", roles=["analyst"])
    await auth.register_user("linus", "correct horse battery")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        issued = (
            await client.post("/token", json={"user": "grace", "password": "correct horse battery"})
        ).json()
        bearer = {"Authorization": f"Bearer {issued['access_token']}"}
        print("GET /me with a bearer token ->", (await client.get("/me", headers=bearer)).json())
        reports = (await client.get("/reports", headers=bearer)).json()
        print("GET /reports as an analyst ->", reports)
        form = {"user": "linus", "password": "correct horse battery"}
        forged = await client.post("/login-form", data=form)
        print("POST /login-form without a CSRF token ->", forged.status_code)
        token = re.search(r'name="csrf_token" value="(\w+)"', (await client.get("/shop")).text)
        assert token is not None and forged.status_code == 403
        await client.post("/cart", data={"item": "coffee", "csrf_token": token[1]})
        print("GET /shop after a form post ->", (await client.get("/shop")).text[:44])
        before = client.cookies["authmw_session"]
        logged_in = await client.post("/login-form", data={**form, "csrf_token": token[1]})
        print("POST /login-form ->", logged_in.status_code, logged_in.headers["location"])
        print("GET /me with linus's session cookie ->", (await client.get("/me")).json())
        cart = (await client.get("/shop")).text
        assert client.cookies["authmw_session"] != before and "Cart: coffee" in cart
        denied = await client.get("/reports")
        print("GET /reports as linus ->", denied.status_code, denied.json())
        assert denied.status_code == 403
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        new = await client.post("/sign-up", json={"user": "ken", "password": "a long passphrase"})
        print("POST /sign-up ->", new.status_code, new.json())
        print("GET /me right after sign-up ->", (await client.get("/me")).json())
    async with httpx.AsyncClient(transport=transport, base_url="https://example") as client:
        taken = await client.post("/sign-up", json={"user": "ken", "password": "whatever!!"})
        print("POST /sign-up with a taken id ->", taken.status_code, taken.json())
        wrong = await client.post("/token", json={"user": "ken", "password": "not it at all"})
        print("POST /token with a wrong password ->", wrong.status_code, wrong.json())
        assert new.status_code == 201 and taken.status_code == 409 and wrong.status_code == 401
        form = {"username": "grace", "password": "correct horse battery"}
        oauth = await client.post("/oauth/token", data=form)
        print("POST /oauth/token (what /docs' Authorize does) ->", oauth.status_code)
        assert oauth.json()["token_type"] == "bearer"
    responses = app.openapi()["paths"]["/reports"]["get"]["responses"]
    print("OpenAPI answers of /reports ->", sorted(responses))
    assert {"401", "403"} <= set(responses)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=8000)
    else:
        asyncio.run(selftest())
