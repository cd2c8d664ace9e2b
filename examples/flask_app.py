"""A Flask app behind authmw: bearer tokens for the JSON API, a session login for the pages.

    python examples/flask_app.py            exercise the app with Flask's test client and exit
    python examples/flask_app.py --serve    serve on http://127.0.0.1:5000 (demo / demo-password)

Routes: ``POST /api/token`` (JSON user/password -> bearer token), ``GET /api/me`` (bearer or
session), ``GET /api/admin`` (role ``admin``), ``POST /api/sign-up`` (JSON user/password:
registers and logs in at once with ``login_user``, no second password check), ``GET|POST /login``
(a form), ``GET /`` (a page for logged-in users), ``POST /logout``.

Errors: ``AuthMW`` registers handlers for every authmw error, so ``/api/sign-up`` lets a taken
user id raise ``UserExists`` and the client gets a 409 JSON answer (an HTML page for browsers; the
app's own ``errorhandler(409)`` page if it has one); the storage down is a 503 with
``Retry-After``, never a 500.

CSRF: the middleware checks unsafe requests that a session cookie authenticates by comparing the
``X-CSRF-Token`` header with the ``authmw_csrf`` cookie (double submit). HTML forms cannot set a
header, so the pages submit their forms with a few lines of JavaScript that copy the cookie into
the header. Bearer requests need no CSRF token.
"""

from __future__ import annotations

import argparse
import html
import os
from typing import Any

from flask import Flask, redirect, request

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

# Submits the page's forms with fetch(), echoing the CSRF cookie in the X-CSRF-Token header.
SUBMIT_WITH_CSRF = """
<script>
function csrfToken() {
  const m = document.cookie.match(/(?:^|; )authmw_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}
document.querySelectorAll("form[method=post]").forEach((form) => {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch(form.action, {
      method: "POST", body: new URLSearchParams(new FormData(form)),
      headers: {"X-CSRF-Token": csrfToken()}, redirect: "follow",
    });
    window.location = response.url;
  });
});
</script>
"""


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
        f"{body}{SUBMIT_WITH_CSRF}"
    )


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

    @app.get("/login")
    def login_page() -> str:
        target = html.escape(safe_next(request.args.get("next")))
        return page(
            "Log in",
            f"""
            <form method=post action="/login?next={target}">
              <input name=user placeholder=user> <input name=password type=password>
              <button>Log in</button>
            </form>""",
        )

    @app.post("/login")
    def do_login() -> Any:
        try:
            login(request.form.get("user", ""), request.form.get("password", ""))
        except (InvalidCredentials, AccountLocked, InvalidInput):
            return page("Log in", "<p>Wrong user or password. <a href=/login>Again</a></p>"), 401
        return redirect(safe_next(request.args.get("next")))

    @app.get("/")
    @login_required
    def home() -> str:
        visits = current_session["visits"] = current_session.get("visits", 0) + 1
        return page(
            f"Hello {current_user.display_name}",
            f"""
            <p>Visits this session: {visits}</p>
            <form method=post action="/logout"><button>Log out</button></form>""",
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
    logged_in = http.post("/login?next=/", data={"user": "demo", "password": "demo-password"})
    print("POST /login ->", logged_in.status_code, logged_in.location)
    home = http.get("/", headers=browser)
    print("GET / with the session cookie ->", home.status_code, "Hello demo" in home.text)
    assert home.status_code == 200 and "Visits this session: 1" in home.text

    refused = http.post("/logout")
    print("POST /logout without the CSRF header ->", refused.status_code)
    csrf = http.get_cookie("authmw_csrf")
    assert refused.status_code == 403 and csrf is not None
    out = http.post("/logout", headers={"X-CSRF-Token": csrf.value})
    print("POST /logout with the CSRF header ->", out.status_code, out.location)
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
