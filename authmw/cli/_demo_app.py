"""The demo web app behind ``authmw demo``: server-rendered pages over a session login, and a
bearer-token API.

Pages: sign up, log in (errors on the form), home (the principal, a cart kept in the
session), a personal API token with its ``curl`` line, the user's sessions and tokens with a
revoke button each and "log out everywhere else", an admin page for users with role
``admin``, log out. Plain HTML forms with a little inline CSS; no build step.

Everything runs on the in-memory default unless a storage URL is given. It is plain HTTP on
loopback, so the session cookie is configured without ``Secure`` here (only here).
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .._time import utcnow
from ..config import AuthConfig, CookieConfig
from ..errors import (
    AccountLocked,
    CsrfFailed,
    InvalidCredentials,
    InvalidInput,
    UnknownUser,
    UserExists,
)
from ..framework import AuthFramework
from ..integrations.starlette import requires
from ..middleware import asgi
from ..middleware.handlers import exception_handlers
from ..middleware.principal import AuthUser
from ..storage import storage_from_url
from . import _output

DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-password"
ITEMS = ("apple", "bread", "coffee")

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;color:#222}
nav{display:flex;gap:1em;align-items:center;border-bottom:1px solid #ddd;padding-bottom:.5em}
nav form{margin-left:auto}
h1{font-size:1.4em}h1 small{color:#888;font-weight:normal}
label{display:block;margin:.6em 0 .2em}
input[type=text],input[type=password]{padding:.4em;width:16em}
button{padding:.3em .9em;cursor:pointer}
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:.5em .8em}
.flash{background:#e8f5e9;border:1px solid #9c9;padding:.5em .8em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.3em .6em}
th{background:#f4f4f4;text-align:left}code,pre{background:#f2f2f2;padding:.1em .3em}
pre{padding:.6em;white-space:pre-wrap;word-break:break-all}
.inline{display:inline}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _age(since: datetime) -> str:
    """A short human age: ``42 s``, ``3 min``, ``2 h``."""
    seconds = max(0, int((utcnow() - since).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _local(request: Request, target: str) -> str:
    """The path of ``target`` if it is a page of this site, else "": never an open redirect
    to ``//elsewhere`` or ``https://elsewhere``. (``requires`` sends absolute URLs.)"""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        if (parts.scheme, parts.netloc) != (request.url.scheme, request.url.netloc):
            return ""
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else ""


def _list(values: Iterable[str]) -> str:
    items = "".join(f"<li><code>{_e(v)}</code></li>" for v in values)
    return f"<ul>{items}</ul>" if items else "<em>none</em>"


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form, parsed with the standard library (no multipart dependency)."""
    raw = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def _csrf_field(request: Request) -> str:
    # The session's token (a visitor gets an anonymous session for it): plain forms post it
    # in the csrf_token field, so no page needs JavaScript, the login form included.
    value = _e(asgi.csrf_token(request))
    return f'<input type="hidden" name="csrf_token" value="{value}">'


def _button(request: Request, action: str, label: str, /, **fields: str) -> str:
    """A one-button POST form (with the CSRF field and any hidden ``fields``)."""
    hidden = "".join(
        f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">' for k, v in fields.items()
    )
    return (
        f'<form class="inline" method="post" action="{_e(action)}">{_csrf_field(request)}'
        f"{hidden}<button>{_e(label)}</button></form>"
    )


def _page(request: Request, title: str, body: str, status_code: int = 200) -> HTMLResponse:
    """The page layout: navigation for who is logged in, a flash message, then ``body``."""
    user = request.user
    if user.is_authenticated:
        links = [("/", "Home"), ("/token", "API token"), ("/sessions", "Sessions")]
        if "admin" in user.roles:
            links.append(("/admin", "Admin"))
        nav = "".join(f'<a href="{h}">{t}</a>' for h, t in links)
        nav += _button(request, "/logout", f"Log out {user.user_id}")
    else:
        nav = '<a href="/">Home</a><a href="/login">Log in</a><a href="/signup">Sign up</a>'
    # A visitor's flash message lives in the anonymous session, a user's in theirs.
    flash = request.session.pop("flash", None)
    note = f'<p class="flash" id="flash">{_e(flash)}</p>' if flash else ""
    return HTMLResponse(
        f'<!doctype html><html lang="en"><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width"><title>{_e(title)} · authmw demo'
        f"</title><style>{_STYLE}</style><nav>{nav}</nav>"
        f"<h1>{_e(title)} <small>authmw demo</small></h1>{note}{body}</html>",
        status_code=status_code,
    )


def _flash(request: Request, message: str, to: str) -> Response:
    """Redirect to ``to`` (post/redirect/get) with ``message`` shown there."""
    request.session["flash"] = message
    return RedirectResponse(to, status_code=303)


def _credentials_form(
    request: Request, action: str, button: str, user: str = "", error: str = "", then: str = ""
) -> str:
    """The user name and password form; ``then`` is the page to go to after logging in."""
    new = action == "/signup"
    back = f'<input type="hidden" name="next" value="{_e(then)}">' if then else ""
    return (
        (f'<p class="error" id="error" role="alert">{_e(error)}</p>' if error else "")
        + f'<form method="post" action="{action}">{_csrf_field(request)}{back}'
        '<label for="user">User name</label>'
        f'<input type="text" id="user" name="user" value="{_e(user)}" required '
        'autocomplete="username" autocapitalize="none" spellcheck="false">'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" required '
        f'autocomplete="{"new-password" if new else "current-password"}">'
        f'<p><button type="submit">{button}</button></p></form>'
    )


def build_app(auth: AuthFramework) -> Starlette:
    """The demo Starlette app over ``auth``."""

    async def home(request: Request) -> Response:
        user = request.user
        cart: list[str] = request.session.get("cart", [])
        adds = "".join(_button(request, "/cart", f"Add {item}", item=item) for item in ITEMS)
        cart_html = (
            f"<h2>Cart</h2><p id='cart'>{_e(', '.join(cart)) or 'empty'}</p><p>{adds} "
            f"{_button(request, '/cart/clear', 'Empty the cart')}</p>"
        )
        if not isinstance(user, AuthUser):
            body = (
                f"<p>Log in as <code>{DEMO_USER}</code> / <code>{DEMO_PASSWORD}</code> or "
                f"<code>{ADMIN_USER}</code> / <code>{ADMIN_PASSWORD}</code>, or "
                '<a href="/signup">sign up</a>.</p>'
                + _credentials_form(request, "/login", "Log in")
                + cart_html
                + "<p>The cart lives in an anonymous session (no login needed); it is kept "
                "when you log in.</p>"
            )
            return _page(request, "Welcome", body)
        visits = request.session.get("visits", 0) + 1
        request.session["visits"] = visits
        record = user.session_record
        age = "" if record is None else f"<tr><th>Session age</th><td>{_age(record.created_at)}"
        body = (
            f"<p>Logged in as <b id='who'>{_e(user.user_id)}</b>.</p>"
            f"<table><tr><th>User id</th><td>{_e(user.user_id)}</td></tr>"
            f"<tr><th>Roles</th><td id='roles'>{_list(user.roles)}</td></tr>"
            f"<tr><th>Permissions</th><td id='permissions'>{_list(user.permissions)}</td></tr>"
            f"<tr><th>Authenticated by</th><td id='method'>{_e(user.auth_method)}</td></tr>"
            f"{age}</td></tr><tr><th>Visits this session</th>"
            f"<td id='visits'>{visits}</td></tr></table>" + cart_html
        )
        return _page(request, "Home", body)

    async def add_to_cart(request: Request) -> Response:
        form = await _form(request)
        item = form.get("item", "")
        if item not in ITEMS:
            return _flash(request, f"No such item: {item!r}.", "/")
        request.session["cart"] = [*request.session.get("cart", []), item]
        return _flash(request, f"Added {item} to the cart.", "/")

    async def clear_cart(request: Request) -> Response:
        request.session.pop("cart", None)
        return _flash(request, "The cart is empty.", "/")

    async def login_page(request: Request) -> Response:
        if request.user.is_authenticated:
            return RedirectResponse("/", status_code=303)
        note = ""
        if request.query_params.get("bye"):
            note = '<p class="flash" id="flash">You are logged out.</p>'
        then = _local(request, request.query_params.get("next", ""))
        body = note + _credentials_form(request, "/login", "Log in", then=then)
        return _page(request, "Log in", body)

    async def login_form(request: Request) -> Response:
        form = await _form(request)
        user = form.get("user", "")
        try:
            await asgi.login(request, user, form.get("password", ""))
        except CsrfFailed:
            # The page's token did not come back (an old tab, or a cross-site post): a fresh
            # form carries a new one.
            then = _local(request, form.get("next", ""))
            message = "This login form expired; please try again."
            body = _credentials_form(request, "/login", "Log in", user, message, then)
            return _page(request, "Log in", body, status_code=403)
        except (InvalidCredentials, AccountLocked, InvalidInput) as exc:
            # One message for unknown user, wrong password and disabled account: the form
            # must not tell which names exist.
            message = (
                "Wrong user name or password."
                if isinstance(exc, InvalidCredentials) and not isinstance(exc, AccountLocked)
                else str(exc)
            )
            then = _local(request, form.get("next", ""))
            body = _credentials_form(request, "/login", "Log in", user, message, then)
            return _page(request, "Log in", body, status_code=401)
        return _flash(request, f"Welcome, {user}.", _local(request, form.get("next", "")) or "/")

    async def signup_page(request: Request) -> Response:
        return _page(request, "Sign up", _credentials_form(request, "/signup", "Sign up"))

    async def signup_form(request: Request) -> Response:
        form = await _form(request)
        user = form.get("user", "")
        try:
            await auth.register_user(user, form.get("password", ""), roles=["user"])
        except (UserExists, InvalidInput) as exc:
            message = f"The name {user!r} is taken." if isinstance(exc, UserExists) else str(exc)
            body = _credentials_form(request, "/signup", "Sign up", user, message)
            return _page(request, "Sign up", body, status_code=400)
        # Log in after sign-up: the account was just proved, no password check needed.
        await asgi.login_user(request, user)
        return _flash(request, f"Welcome, {user}: your account is ready.", "/")

    async def logout(request: Request) -> Response:
        await asgi.logout(request)
        return RedirectResponse("/login?bye=1", status_code=303)

    @requires("authenticated", redirect="login_page")
    async def token_page(request: Request) -> Response:
        body = (
            "<p>A personal API token authenticates scripts as you with "
            "<code>Authorization: Bearer</code>. It is shown once.</p>"
            + _button(request, "/token", "Issue a personal API token")
        )
        return _page(request, "API token", body)

    @requires("authenticated", redirect="login_page")
    async def issue_personal_token(request: Request) -> Response:
        client = request.client
        token = await auth.issue_tokens(
            request.user.user_id,
            ip_address=client.host if client else None,
            user_agent=request.headers.get("user-agent"),
        )
        me = f"{request.base_url}api/me"
        body = (
            "<p>Your token (shown once; revoke it on the "
            '<a href="/sessions">sessions page</a>):</p>'
            f"<pre id='token'>{_e(token.access_token)}</pre><p>Try it:</p>"
            f"<pre id='curl'>curl -H 'Authorization: Bearer {_e(token.access_token)}' "
            f"{_e(me)}</pre><p>It expires at {_when(token.expires_at)}.</p>"
        )
        return _page(request, "API token", body)

    @requires("authenticated", redirect="login_page")
    async def sessions_page(request: Request) -> Response:
        user = request.user
        current = user.session_record.session_id if user.session_record else None
        sessions = await auth.list_sessions(user.user_id)
        tokens = await auth.list_tokens(user.user_id)
        rows = "".join(
            f"<tr id='session-{_e(s.session_id)}'><td><code>{_e(s.session_id[:8])}…</code>"
            f"{' (this one)' if s.session_id == current else ''}</td>"
            f"<td>{_when(s.created_at)}</td><td>{_when(s.last_seen)}</td>"
            f"<td>{_e(s.ip_address or '-')}</td><td>{_e(s.user_agent or '-')}</td>"
            f"<td>{_button(request, '/sessions/revoke', 'Revoke', kind='session', id=s.session_id)}"
            "</td></tr>"
            for s in sessions
        )
        token_rows = "".join(
            f"<tr id='token-{_e(t.token_id)}'><td><code>{_e(t.token_id[:8])}…</code></td>"
            f"<td>{_when(t.created_at)}</td><td>{_when(t.last_seen)}</td>"
            f"<td>{_e(t.ip_address or '-')}</td>"
            f"<td>{_button(request, '/sessions/revoke', 'Revoke', kind='token', id=t.token_id)}"
            "</td></tr>"
            for t in tokens
        )
        body = (
            "<h2>Sessions</h2><table><tr><th>Session</th><th>Started</th><th>Last seen</th>"
            f"<th>Address</th><th>Browser</th><th></th></tr>{rows}</table>"
            "<h2>API tokens</h2>"
            + (
                "<table><tr><th>Token</th><th>Issued</th><th>Last refreshed</th><th>Address"
                f"</th><th></th></tr>{token_rows}</table>"
                if tokens
                else "<p>None.</p>"
            )
            + "<p>"
            + _button(request, "/sessions/others", "Log out everywhere else")
            + "</p>"
        )
        return _page(request, "Sessions and tokens", body)

    @requires("authenticated", redirect="login_page")
    async def revoke_credential(request: Request) -> Response:
        form = await _form(request)
        user_id, wanted = request.user.user_id, form.get("id", "")
        # By public id, and only the user's own (user_id): never another user's credential.
        if form.get("kind") == "token":
            done = await auth.revoke_token(wanted, user_id=user_id)
        else:
            done = await auth.revoke_session(wanted, user_id=user_id)
        record = request.user.session_record
        if record is not None and record.session_id == wanted:
            return RedirectResponse("/login", status_code=303)  # this browser logged out
        return _flash(request, "Revoked." if done else "Nothing to revoke.", "/sessions")

    @requires("authenticated", redirect="login_page")
    async def revoke_others(request: Request) -> Response:
        user = request.user
        current = user.session_record.session_id if user.session_record else None
        count = await auth.logout_everywhere_else(user.user_id, keep_session=current)
        return _flash(request, f"Logged out everywhere else ({count} revoked).", "/sessions")

    @requires("role:admin", redirect="login_page")
    async def admin_page(request: Request) -> Response:
        users = await auth.list_users(limit=1000)
        rows = "".join(
            f"<tr id='user-{_e(u.user_id)}'><td>{_e(u.user_id)}</td>"
            f"<td>{'active' if u.is_active else 'disabled'}</td>"
            f"<td><form class='inline' method='post' action='/admin/roles'>"
            f"{_csrf_field(request)}<input type='hidden' name='user' value='{_e(u.user_id)}'>"
            f"<input type='text' name='roles' aria-label='roles of {_e(u.user_id)}' "
            f"value='{_e(', '.join(u.roles))}'><button>Set roles</button></form></td><td>"
            + _button(
                request,
                "/admin/action",
                "Enable" if not u.is_active else "Disable",
                user=u.user_id,
                action="enable" if not u.is_active else "disable",
            )
            + _button(request, "/admin/action", "Unlock", user=u.user_id, action="unlock")
            + "</td></tr>"
            for u in users
        )
        body = (
            "<p>Disabling a user logs them out everywhere; unlocking clears failed logins.</p>"
            "<table><tr><th>User</th><th>State</th><th>Roles (comma-separated)</th><th></th>"
            f"</tr>{rows}</table>"
        )
        return _page(request, "Users", body)

    @requires("role:admin", redirect="login_page")
    async def admin_action(request: Request) -> Response:
        form = await _form(request)
        user_id, action = form.get("user", ""), form.get("action")
        try:
            if action == "disable":
                await auth.disable_user(user_id)
                message = f"Disabled {user_id}: logged out everywhere."
            elif action == "enable":
                await auth.enable_user(user_id)
                message = f"Enabled {user_id}."
            elif action == "unlock":
                await auth.unlock_user(user_id)
                message = f"Unlocked {user_id}: its lockouts and slow-downs are lifted."
            else:
                message = f"Unknown action {action!r}."
        except (UnknownUser, InvalidInput) as exc:
            message = str(exc)
        return _flash(request, message, "/admin")

    @requires("role:admin", redirect="login_page")
    async def admin_roles(request: Request) -> Response:
        form = await _form(request)
        user_id = form.get("user", "")
        roles = [r.strip() for r in form.get("roles", "").split(",") if r.strip()]
        try:
            await auth.set_roles(user_id, roles)
            message = f"Roles of {user_id}: {', '.join(roles) or 'none'}."
        except (UnknownUser, InvalidInput) as exc:
            message = str(exc)
        return _flash(request, message, "/admin")

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
                "user": request.user.user_id,
                "auth_method": request.user.auth_method,
                "roles": list(request.user.roles),
                "permissions": list(request.user.permissions),
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for user_id, password, roles in (
            (DEMO_USER, DEMO_PASSWORD, ["user"]),
            (ADMIN_USER, ADMIN_PASSWORD, ["admin", "user"]),
        ):
            if await auth.storage.get_user(user_id) is None:
                with contextlib.suppress(UserExists):  # another instance made it meanwhile
                    await auth.register_user(user_id, password, roles=roles, permissions=["read"])
        yield

    routes = [
        Route("/", home),
        Route("/login", login_page, methods=["GET"], name="login_page"),
        Route("/login", login_form, methods=["POST"]),
        Route("/signup", signup_page, methods=["GET"]),
        Route("/signup", signup_form, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/cart", add_to_cart, methods=["POST"]),
        Route("/cart/clear", clear_cart, methods=["POST"]),
        Route("/token", token_page, methods=["GET"]),
        Route("/token", issue_personal_token, methods=["POST"]),
        Route("/sessions", sessions_page, methods=["GET"]),
        Route("/sessions/revoke", revoke_credential, methods=["POST"]),
        Route("/sessions/others", revoke_others, methods=["POST"]),
        Route("/admin", admin_page, methods=["GET"]),
        Route("/admin/action", admin_action, methods=["POST"]),
        Route("/admin/roles", admin_roles, methods=["POST"]),
        Route("/api/token", issue_token, methods=["POST"]),
        Route("/api/me", me),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(asgi.AuthMiddleware, auth=auth)],
        exception_handlers=exception_handlers,  # any other authmw error answers by itself
    )


def make_auth(storage_url: str) -> AuthFramework:
    """A framework for the demo: the key from AUTHMW_SECRET_KEY or random for this run."""
    key = os.environ.get("AUTHMW_SECRET_KEY") or secrets.token_urlsafe(32)
    # Plain HTTP on loopback: a Secure cookie would not come back from the browser.
    config = AuthConfig(secret_key=key, cookie=CookieConfig(secure=False))
    return AuthFramework(storage_from_url(storage_url), config)


def serve(storage_url: str, host: str, port: int) -> int:
    """Serve the demo app with uvicorn (access log on) until interrupted."""
    try:
        import uvicorn
    except ModuleNotFoundError:
        print("authmw demo needs uvicorn: pip install uvicorn")
        return 1
    base = f"http://{host}:{port}"
    shown = _output.scrub(storage_url, _output.secrets_of([storage_url]))
    print(f"authmw demo on {base}/  (storage {shown})")
    print("ready accounts:")
    print(f"  user   {DEMO_USER} / {DEMO_PASSWORD}")
    print(f"  admin  {ADMIN_USER} / {ADMIN_PASSWORD}")
    print(
        f"API: curl -s -X POST {base}/api/token "
        f'-d \'{{"user":"{DEMO_USER}","password":"{DEMO_PASSWORD}"}}\'  then  '
        f"curl -H 'Authorization: Bearer <access_token>' {base}/api/me",
        flush=True,
    )
    uvicorn.run(
        build_app(make_auth(storage_url)), host=host, port=port, log_level="info", access_log=True
    )
    return 0
