"""A Flask app behind authmw: bearer tokens for the JSON API, a session login for the pages.

    python examples/flask_app.py            exercise the app with Flask's test client and exit
    python examples/flask_app.py --serve    serve on http://127.0.0.1:5000 (demo / demo-password)

Routes: ``POST /api/token`` (JSON user/password -> bearer token), ``GET /api/me`` (bearer or
session), ``GET /api/admin`` (role ``admin``), ``POST /api/sign-up`` (JSON user/password:
registers and logs in at once with ``login_user``, no second password check), ``GET /shop`` and
``POST /cart`` (a cart and a flash message in the visitor's anonymous session, before any
login), ``GET|POST /login`` (a form; the cart survives the login), ``GET /`` (a page for
logged-in users), ``POST /logout``.

Errors: ``AuthMW`` registers handlers for every authmw error, so ``/api/sign-up`` lets a taken
user id raise ``UserExists`` and the client gets a 409 JSON answer (an HTML page for browsers; the
app's own ``errorhandler(409)`` page if it has one); the storage down is a 503 with
``Retry-After``, never a 500.

CSRF: the middleware checks unsafe requests that a session cookie authenticates: the token comes
in the ``csrf_token`` form field (``{{ csrf_field() }}`` in a template writes the hidden input) or
the ``X-CSRF-Token`` header, so plain HTML forms work without JavaScript. The login form is
protected too (login CSRF): rendering its token starts the visitor's anonymous session, and a
login form posted without it is a 403. Bearer requests and JSON API calls without a session
cookie need no CSRF token.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from flask import Flask, redirect, render_template_string, request

from authmw import AuthConfig, AuthFramework, CookieConfig, InMemoryStorage
from authmw.errors import AccountLocked, InvalidCredentials, InvalidInput
from authmw.integrations.flask import (
    AuthMW,
    current_session,
    current_user,
    login,
    login_required,
    login_user,
    logout,
    requires,
)
from authmw.testing import fast_password_hasher

DEMO_KEY = "example-only-secret-key-0123456789abcdef"

# A plain template: {{ csrf_field() }} is the hidden input with the session's CSRF token.
PAGE = """<!doctype html><title>{{ title }}</title><h1>{{ title }}</h1>
{% if flash %}<p>{{ flash }}</p>{% endif %}{{ body | safe }}"""


def page(title: str, body: str, flash: str = "") -> str:
    return render_template_string(PAGE, title=title, body=body, flash=flash)


def safe_next(target: str | None) -> str:
    """A local path to go back to after login (never another site)."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


def create_app(
    auth: AuthFramework | None = None,
    *,
    secure_cookies: bool = True,
) -> tuple[Flask, AuthMW]:
    """The app and its AuthMW extension, with a demo user (``demo``/``demo-password``)."""
    if auth is None:
        config = AuthConfig(
            secret_key=os.environ.get("AUTHMW_SECRET_KEY", DEMO_KEY),
            password_hasher=fast_password_hasher(),  # demo only: keep the default in production
            # Browsers drop Secure cookies on plain http (except on localhost): turn it off
            # only for a local http demo, never behind https.
            cookie=CookieConfig(secure=secure_cookies),
        )
        auth = AuthFramework(InMemoryStorage(), config)
    app = Flask(__name__)
    ext = AuthMW(app, auth, login_view="login_page", exclude_paths=["/healthz"])
    ext.run(auth.register_user("demo", "demo-password", roles=["admin"]))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/token")
    def issue_token() -> Any:
        form: dict[str, Any] = request.get_json(silent=True) or {}
        try:
            token = ext.run(
                auth.authenticate(
                    str(form.get("user", "")),
                    str(form.get("password", "")),
                    ip_address=request.remote_addr,
                )
            )
        except (InvalidCredentials, AccountLocked, InvalidInput):
            return {"error": "invalid_grant"}, 401
        return {
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "token_type": "Bearer",
            "expires_at": token.expires_at.isoformat(),
        }

    @app.post("/api/sign-up")
    def sign_up() -> Any:
        form: dict[str, Any] = request.get_json(silent=True) or {}
        user_id = str(form.get("user", ""))
        # UserExists (409) and InvalidInput (422) are answered by AuthMW's error handlers.
        ext.run(auth.register_user(user_id, str(form.get("password", ""))))
        user = login_user(user_id)  # a session cookie without asking for the password again
        return {"signed_up": user.user_id}, 201

    @app.get("/api/me")
    @login_required
    def me() -> dict[str, Any]:
        return {"user": current_user.identity, "via": getattr(current_user, "auth_method", None)}

    @app.get("/api/admin")
    @requires("role:admin")
    def admin_api() -> dict[str, str]:
        return {"admin": current_user.identity}

    @app.get("/shop")
    def shop() -> str:
        # Anyone may keep a cart: the first write starts an anonymous session (and its cookie).
        cart = ", ".join(current_session.get("cart", [])) or "empty"
        return page(
            "Shop",
            render_template_string(
                """<p>Cart: {{ cart }}</p>
                <form method=post action="/cart">{{ csrf_field() }}
                  <input name=item> <button>Add</button></form>
                <a href="/login?next=/">Log in</a>""",
                cart=cart,
            ),
            flash=current_session.pop("flash", ""),
        )

    @app.post("/cart")
    def add_to_cart() -> Any:
        current_session.setdefault("cart", []).append(request.form.get("item", ""))
        current_session["flash"] = f"added {request.form.get('item', '')}"
        return redirect("/shop")

    @app.get("/login")
    def login_page() -> str:
        return page(
            "Log in",
            render_template_string(
                """<form method=post action="/login?next={{ target }}">{{ csrf_field() }}
                  <input name=user placeholder=user> <input name=password type=password>
                  <button>Log in</button></form>""",
                target=safe_next(request.args.get("next")),
            ),
        )

    @app.post("/login")
    def do_login() -> Any:
        # A form without the pre-login session's csrf_token raises CsrfFailed: AuthMW's
        # handlers answer 403 (login CSRF).
        try:
            login(request.form.get("user", ""), request.form.get("password", ""))
        except (InvalidCredentials, AccountLocked, InvalidInput):
            return page("Log in", "<p>Wrong user or password. <a href=/login>Again</a></p>"), 401
        return redirect(safe_next(request.args.get("next")))

    @app.get("/")
    @login_required
    def home() -> str:
        visits = current_session["visits"] = current_session.get("visits", 0) + 1
        cart = ", ".join(current_session.get("cart", [])) or "empty"
        return page(
            f"Hello {current_user.display_name}",
            render_template_string(
                """<p>Visits this session: {{ visits }}; cart: {{ cart }}</p>
                <form method=post action="/logout">{{ csrf_field() }}<button>Log out</button>
                </form>""",
                visits=visits,
                cart=cart,
            ),
        )

    @app.post("/logout")
    def do_logout() -> Any:
        logout()
        return redirect("/login")

    return app, ext


def exercise(app: Flask) -> None:
    """Drive the app in-process with Flask's test client and print what happens."""
    http = app.test_client()
    token = http.post("/api/token", json={"user": "demo", "password": "demo-password"})
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json['access_token']}"}
    me = http.get("/api/me", headers=bearer)
    print("GET /api/me with a bearer token ->", me.status_code, me.json)
    anonymous = http.get("/api/me")
    print(
        "GET /api/me without credentials ->",
        anonymous.status_code,
        anonymous.headers["WWW-Authenticate"],
    )
    assert me.json == {"user": "demo", "via": "bearer"} and anonymous.status_code == 401

    browser = {"Accept": "text/html"}
    first = http.get("/", headers=browser)
    print("GET / as a browser, logged out ->", first.status_code, first.location)
    assert first.status_code == 302 and first.location.startswith("/login?next=")
    form = {"user": "demo", "password": "demo-password"}
    forged = http.post("/login?next=/", data=form, headers=browser)
    print("POST /login without the form's CSRF token ->", forged.status_code)
    assert forged.status_code == 403

    token = csrf_field_value(http.get("/shop").text)
    added = http.post("/cart", data={"item": "tea", "csrf_token": token})
    shop = http.get("/shop")
    print(
        "POST /cart as an anonymous visitor ->",
        added.status_code,
        "; flash:",
        "added tea" in shop.text,
    )
    assert "added tea" in shop.text and "Cart: tea" in shop.text
    before = http.get_cookie("authmw_session")
    token = csrf_field_value(http.get("/login?next=/").text)
    logged_in = http.post("/login?next=/", data={**form, "csrf_token": token})
    print("POST /login (plain form) ->", logged_in.status_code, logged_in.location)
    after = http.get_cookie("authmw_session")
    assert before is not None and after is not None and before.value != after.value
    home = http.get("/", headers=browser)
    print("GET / with the session cookie ->", home.status_code, "Hello demo" in home.text)
    assert home.status_code == 200 and "Visits this session: 1; cart: tea" in home.text

    refused = http.post("/logout")
    print("POST /logout without the CSRF token ->", refused.status_code)
    assert refused.status_code == 403
    out = http.post("/logout", data={"csrf_token": csrf_field_value(home.text)})
    print("POST /logout with the form's CSRF token ->", out.status_code, out.location)
    assert out.status_code == 302 and http.get("/", headers=browser).status_code == 302

    newcomer = app.test_client()
    signed = newcomer.post("/api/sign-up", json={"user": "newcomer", "password": "a passphrase"})
    session_me = newcomer.get("/api/me")
    print("POST /api/sign-up ->", signed.status_code, "then /api/me ->", session_me.json)
    assert signed.status_code == 201 and session_me.json == {"user": "newcomer", "via": "session"}
    again = app.test_client().post("/api/sign-up", json={"user": "newcomer", "password": "x" * 12})
    print("POST /api/sign-up with a taken id ->", again.status_code, again.json)
    assert again.status_code == 409 and again.json["error"] == "user_exists"
    print("self-test passed")


def csrf_field_value(text: str) -> str:
    """The csrf_token hidden input's value in a page (what a browser would post back)."""
    return text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="serve on 127.0.0.1:5000")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    if not args.serve:
        app, ext = create_app()
        try:
            exercise(app)
        finally:
            ext.close()
        return
    app, ext = create_app(secure_cookies=False)
    print(f"http://127.0.0.1:{args.port}/  (log in as demo / demo-password)")
    try:
        app.run(host="127.0.0.1", port=args.port, threaded=True)
    finally:
        ext.close()


if __name__ == "__main__":
    main()
