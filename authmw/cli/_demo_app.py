"""The demo web app behind ``authmw demo``: a session login page and a bearer-token API.

Everything runs on the in-memory default unless a storage URL is given. It is plain HTTP on
loopback, so the session cookie is configured without ``Secure`` here (only here).
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..config import AuthConfig, CookieConfig
from ..errors import AccountLocked, CsrfFailed, InvalidCredentials, InvalidInput
from ..framework import AuthFramework
from ..middleware import asgi
from ..storage import storage_from_url

DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"

_PAGE = """<!doctype html><meta charset="utf-8"><title>authmw demo</title>
<style>body{{font:16px system-ui;max-width:40em;margin:3em auto}}code{{background:#eee}}</style>
<h1>authmw demo</h1>{body}
<script>
function csrf() {{ return (document.cookie.match(/authmw_csrf=([^;]+)/) || [])[1] || ""; }}
async function post(path) {{
  const r = await fetch(path, {{method: "POST", headers: {{"X-CSRF-Token": csrf()}}}});
  if (r.ok) location.reload(); else alert(await r.text());
}}
</script>"""


def build_app(auth: AuthFramework) -> Starlette:
    """The demo Starlette app over ``auth``."""

    async def home(request: Request) -> Response:
        if request.user.is_authenticated:
            visits = request.session.get("visits", 0) + 1
            request.session["visits"] = visits
            body = (
                f"<p>Logged in as <b>{html.escape(request.user.display_name)}</b> "
                f"by {request.user.auth_method}; scopes <code>{list(request.auth.scopes)}"
                f"</code>. Visits this session: {visits}.</p>"
                "<button onclick=\"post('/logout')\">Log out</button>"
            )
        else:
            # The token of the visitor's anonymous session (started here): login CSRF.
            token = asgi.csrf_token(request)
            body = (
                f"<p>Log in as <code>{DEMO_USER}</code> / <code>{DEMO_PASSWORD}</code>.</p>"
                '<form method="post" action="/login">'
                f'<input type="hidden" name="csrf_token" value="{token}">'
                '<input name="user" placeholder="user">'
                '<input name="password" type="password" placeholder="password">'
                "<button>Log in</button></form>"
            )
        return HTMLResponse(_PAGE.format(body=body))

    async def login_form(request: Request) -> Response:
        # A urlencoded form, parsed with the standard library (no multipart dependency).
        form = {
            k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()
        }
        try:
            await asgi.login(request, form.get("user", ""), form.get("password", ""))
        except (InvalidCredentials, AccountLocked, InvalidInput, CsrfFailed) as exc:
            return HTMLResponse(
                _PAGE.format(body=f'<p>{html.escape(exc.description)}</p><a href="/">back</a>'),
                status_code=exc.status_code,
            )
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        await asgi.logout(request)
        return JSONResponse({"logged_out": True})

    async def issue_token(request: Request) -> Response:
        try:
            body: dict[str, Any] = await request.json()
            token = await auth.authenticate(str(body["user"]), str(body["password"]))
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send JSON {"user": ..., "password": ...}'}, 400)
        except (InvalidCredentials, AccountLocked, InvalidInput) as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        return JSONResponse(
            {
                "access_token": token.access_token,
                "token_type": "Bearer",
                "refresh_token": token.refresh_token,
                "expires_at": token.expires_at.isoformat(),
            }
        )

    @requires("authenticated", status_code=401)
    async def me(request: Request) -> Response:
        return JSONResponse(
            {
                "user": request.user.display_name,
                "auth_method": request.user.auth_method,
                "scopes": list(request.auth.scopes),
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if await auth.storage.get_user(DEMO_USER) is None:
            await auth.register_user(DEMO_USER, DEMO_PASSWORD, roles=["demo"], permissions=["read"])
        yield

    routes = [
        Route("/", home),
        Route("/login", login_form, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/token", issue_token, methods=["POST"]),
        Route("/api/me", me),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, middleware=[Middleware(asgi.AuthMiddleware, auth=auth)]
    )


def make_auth(storage_url: str) -> AuthFramework:
    """A framework for the demo: the key from AUTHMW_SECRET_KEY or random for this run."""
    key = os.environ.get("AUTHMW_SECRET_KEY") or secrets.token_urlsafe(32)
    # Plain HTTP on loopback: a Secure cookie would not come back from the browser.
    config = AuthConfig(secret_key=key, cookie=CookieConfig(secure=False))
    return AuthFramework(storage_from_url(storage_url), config)


def serve(storage_url: str, host: str, port: int) -> int:
    """Serve the demo app with uvicorn until interrupted."""
    try:
        import uvicorn
    except ModuleNotFoundError:
        print("authmw demo needs uvicorn: pip install uvicorn")
        return 1
    print(
        f"authmw demo on http://{host}:{port}/ (storage {storage_url}); "
        f"log in as {DEMO_USER} / {DEMO_PASSWORD}"
    )
    print(
        f"API: curl -s -X POST http://{host}:{port}/api/token "
        f'-d \'{{"user":"{DEMO_USER}","password":"{DEMO_PASSWORD}"}}\'  then  '
        f"curl -H 'Authorization: Bearer <access_token>' http://{host}:{port}/api/me"
    )
    uvicorn.run(build_app(make_auth(storage_url)), host=host, port=port, log_level="info")
    return 0
