"""The Flask integration on every backend: decorators, login/logout, CSRF, threads, the example."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, request
from werkzeug.serving import WSGIRequestHandler, make_server

import authmw
from authmw import AuthFramework
from authmw.errors import AccountLocked, InvalidCredentials, StorageUnavailable
from authmw.integrations.flask import (
    AuthMW,
    current_session,
    current_user,
    login,
    login_required,
    logout,
    requires,
)
from authmw.middleware._cookies import SessionCookieCodec
from authmw.middleware.principal import AuthUser
from authmw.testing import test_config
from tests.support.factories import RemoteLikeMemory

pytest.register_assert_rewrite("tests.support.wsgi_apps")

from tests.support.wsgi_apps import Stack, bearer, login_token  # noqa: E402 - after the rewrite registration

pytest_plugins = ["tests.support.wsgi_apps"]

ROOT = Path(__file__).resolve().parents[2]


def make_flask(auth: AuthFramework, **options: Any) -> tuple[Flask, AuthMW]:
    """A Flask app with a route per feature, behind AuthMW."""
    app = Flask(__name__)
    ext = AuthMW(app, auth, **options)

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        return {
            "user": current_user.display_name,
            "authenticated": current_user.is_authenticated,
            "method": getattr(current_user, "auth_method", None),
            "context": authmw.current_user().display_name,
            "environ": request.environ["authmw.user"].display_name,
            "is_auth_user": isinstance(current_user, AuthUser),
        }

    @app.get("/me")
    @login_required
    def me() -> dict[str, Any]:
        return {"user": current_user.identity}

    @app.get("/admin")
    @requires("role:admin")
    def admin() -> str:
        return "admin area"

    @app.get("/rw")
    @requires("read", "write")
    def read_write() -> str:
        return "read and write"

    @app.get("/hidden")
    @requires("role:admin", status_code=404)
    def hidden() -> str:
        return "hidden"

    @app.get("/login-page")
    def login_page() -> str:
        return "please log in"

    @app.post("/login")
    def do_login() -> Any:
        form = request.get_json()
        try:
            user = login(form["user"], form["password"])
        except (InvalidCredentials, AccountLocked) as exc:
            return {"error": str(exc)}, 401
        return {"user": user.user_id, "now": current_user.display_name}

    @app.post("/logout")
    def do_logout() -> str:
        logout()
        return f"bye, now {current_user.display_name or 'anonymous'}"

    @app.post("/cart")
    @login_required
    def cart() -> dict[str, Any]:
        current_session.setdefault("cart", []).append(request.get_json()["item"])
        return dict(current_session)

    @app.get("/session")
    def show_session() -> dict[str, Any]:
        return dict(current_session)

    @app.get("/slow")
    def slow() -> dict[str, str]:
        before = current_user.display_name
        time.sleep(0.02)  # let other requests interleave
        return {
            "before": before,
            "after": current_user.display_name,
            "context": authmw.current_user().display_name,
        }

    return app, ext


def flask_app(
    stack: Stack, auth: AuthFramework | None = None, **options: Any
) -> tuple[Flask, AuthMW]:
    app, ext = make_flask(auth or stack.auth, **options)
    assert ext.middleware is not None
    stack.adopt(ext.middleware)
    return app, ext


def test_login_required(stack: Stack) -> None:
    """login_required: anonymous gets 401 with a Bearer challenge; a bearer token passes."""
    app, ext = flask_app(stack)
    token = login_token(ext.middleware)  # type: ignore[arg-type]
    http = app.test_client()
    refused = http.get("/me")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.json == {"error": "unauthorized", "error_description": "authentication required"}
    assert http.get("/me", headers=bearer(token)).json == {"user": "alice"}


def test_login_required_redirects_browsers(stack: Stack) -> None:
    """With login_view, HTML requests are redirected with ?next=; JSON clients still get 401."""
    app, _ = flask_app(stack, login_view="login_page")
    http = app.test_client()
    browser = http.get("/me?tab=2", headers={"Accept": "text/html,*/*;q=0.8"})
    assert browser.status_code == 302
    assert browser.location == "/login-page?next=/me?tab%3D2"
    assert http.get("/me", headers={"Accept": "application/json"}).status_code == 401
    assert http.get("/me").status_code == 401  # no Accept: treated as an API client


def test_requires(stack: Stack) -> None:
    """requires(): scopes from roles/permissions; 401 anonymous, 403 insufficient_scope, or 404."""
    app, ext = flask_app(stack)
    mw = ext.middleware
    assert mw is not None
    admin = login_token(mw, "root", roles=["admin"], permissions=["read", "write"])
    reader = login_token(mw, "rita", permissions=["read"])
    http = app.test_client()
    assert http.get("/admin", headers=bearer(admin)).text == "admin area"
    assert http.get("/rw", headers=bearer(admin)).status_code == 200
    assert http.get("/hidden", headers=bearer(admin)).status_code == 200
    refused = http.get("/rw", headers=bearer(reader))
    assert refused.status_code == 403 and refused.json["error"] == "insufficient_scope"
    assert (
        refused.headers["WWW-Authenticate"]
        == 'Bearer error="insufficient_scope", scope="read write"'
    )
    assert http.get("/hidden", headers=bearer(reader)).status_code == 404
    anonymous = http.get("/admin")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(TypeError):
        requires(["role:admin"])  # type: ignore[arg-type]


def test_current_user_proxy(stack: Stack) -> None:
    """current_user is the request's AuthUser in a request and anonymous outside one."""
    app, ext = flask_app(stack)
    token = login_token(ext.middleware)  # type: ignore[arg-type]
    body = app.test_client().get("/whoami", headers=bearer(token)).json
    assert body == {
        "user": "alice",
        "authenticated": True,
        "method": "bearer",
        "context": "alice",
        "environ": "alice",
        "is_auth_user": True,
    }
    assert app.test_client().get("/whoami").json["is_auth_user"] is False
    assert current_user.is_authenticated is False
    with app.test_request_context("/"):
        assert current_user.is_authenticated is False  # no middleware ran for this context


def test_login_logout_and_rotation(stack: Stack) -> None:
    """login() starts a session (id rotates on re-login, old id dead); logout() ends it."""
    app, ext = flask_app(stack)
    mw = ext.middleware
    assert mw is not None
    mw.run(stack.auth.register_user("bob", "password", roles=["staff"]))
    http = app.test_client()
    response = http.post("/login", json={"user": "bob", "password": "password"})
    assert response.json == {"user": "bob", "now": "bob"}
    first = http.get_cookie("authmw_session")
    assert first is not None and first.http_only and first.secure
    assert http.get("/whoami").json["method"] == "session"
    csrf = http.get_cookie("authmw_csrf")
    assert csrf is not None
    http.post("/cart", json={"item": "tea"}, headers={"X-CSRF-Token": csrf.value})
    http.post(
        "/login", json={"user": "bob", "password": "password"}, headers={"X-CSRF-Token": csrf.value}
    )
    second = http.get_cookie("authmw_session")
    assert second is not None and second.value != first.value
    assert http.get("/session").json == {"cart": ["tea"]}  # carried over to the new id
    stale = app.test_client()
    stale.set_cookie("authmw_session", first.value)
    assert stale.get("/whoami").json["authenticated"] is False

    csrf = http.get_cookie("authmw_csrf")
    assert csrf is not None
    wrong = http.post(
        "/login", json={"user": "bob", "password": "nope"}, headers={"X-CSRF-Token": csrf.value}
    )
    assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers
    assert len(mw.run(stack.storage.list_user_sessions("bob"))) == 1
    bye = http.post("/logout", headers={"X-CSRF-Token": csrf.value})
    assert bye.text == "bye, now anonymous"
    assert mw.run(stack.storage.list_user_sessions("bob")) == []
    assert http.get_cookie("authmw_session") is None
    assert http.get("/me").status_code == 401


def test_csrf_header(stack: Stack) -> None:
    """Session-cookie POSTs need X-CSRF-Token matching the authmw_csrf cookie."""
    app, ext = flask_app(stack)
    mw = ext.middleware
    assert mw is not None
    mw.run(stack.auth.register_user("cy", "password"))
    http = app.test_client()
    http.post("/login", json={"user": "cy", "password": "password"})
    missing = http.post("/cart", json={"item": "x"})
    assert missing.status_code == 403 and missing.json["error"] == "csrf_failed"
    assert (
        http.post("/cart", json={"item": "x"}, headers={"X-CSRF-Token": "f" * 64}).status_code
        == 403
    )
    csrf = http.get_cookie("authmw_csrf")
    assert csrf is not None
    ok = http.post("/cart", json={"item": "x"}, headers={"X-CSRF-Token": csrf.value})
    assert ok.json == {"cart": ["x"]}


def test_csrf_hostile_tokens_and_methods(stack: Stack) -> None:
    """A non-ASCII CSRF header or cookie gets 403, never a 500; so does an unusual method."""
    app, ext = flask_app(stack)
    ext.run(stack.auth.register_user("cy", "password"))
    http = app.test_client()
    http.post("/login", json={"user": "cy", "password": "password"})
    csrf = http.get_cookie("authmw_csrf")
    assert csrf is not None
    hostile = http.post("/cart", json={"item": "x"}, headers={"X-CSRF-Token": "é" * 64})
    assert hostile.status_code == 403 and hostile.json["error"] == "csrf_failed"
    http.set_cookie("authmw_csrf", "é" * 64)
    both = http.post("/cart", json={"item": "x"}, headers={"X-CSRF-Token": "é" * 64})
    assert both.status_code == 403 and both.json["error"] == "csrf_failed"
    http.set_cookie("authmw_csrf", csrf.value)
    for method in ("PROPFIND", "FOO"):
        refused = http.open("/cart", method=method)
        assert refused.status_code == 403 and refused.json["error"] == "csrf_failed"
    assert http.get("/session").json == {}


def test_csrf_token_survives_key_rotation(stack: Stack) -> None:
    """After a key rotation a page's old CSRF token passes (old key as a fallback) and the
    response sets the current key's token."""
    old_key, new_key = "old-key-0123456789abcdef0123456789", "new-key-0123456789abcdef0123456789"
    old = stack.framework(secret_key=old_key)
    app, ext = flask_app(stack, old)
    ext.run(old.register_user("lou", "password"))
    http = app.test_client()
    http.post("/login", json={"user": "lou", "password": "password"})
    old_csrf = http.get_cookie("authmw_csrf")
    assert old_csrf is not None
    new = stack.framework(secret_key=new_key, secret_key_fallbacks=[old_key])
    app, _ = flask_app(stack, new)
    cookies = {
        c.key: c.value for c in (http.get_cookie(n) for n in ("authmw_session", "authmw_csrf")) if c
    }
    http = app.test_client()
    for name, value in cookies.items():
        http.set_cookie(name, value)
    response = http.post("/cart", json={"item": "x"}, headers={"X-CSRF-Token": old_csrf.value})
    assert response.status_code == 200 and response.json == {"cart": ["x"]}
    new_csrf = http.get_cookie("authmw_csrf")
    assert new_csrf is not None and new_csrf.value != old_csrf.value


def test_fallback_key_cookie_is_resigned(stack: Stack) -> None:
    """A session cookie signed under a fallback key is accepted and re-signed."""
    old_key, new_key = "old-key-0123456789abcdef0123456789", "new-key-0123456789abcdef0123456789"
    old = stack.framework(secret_key=old_key)
    app, ext = flask_app(stack, old)
    ext.run(old.register_user("lou", "password"))
    http = app.test_client()
    http.post("/login", json={"user": "lou", "password": "password"})
    old_cookie = http.get_cookie("authmw_session")
    assert old_cookie is not None
    new = stack.framework(secret_key=new_key, secret_key_fallbacks=[old_key])
    app, _ = flask_app(stack, new)
    http = app.test_client()
    http.set_cookie("authmw_session", old_cookie.value)
    response = http.get("/whoami")
    assert response.json["user"] == "lou"
    resigned = http.get_cookie("authmw_session")
    assert resigned is not None and resigned.value != old_cookie.value
    assert (
        SessionCookieCodec([new_key.encode()], new.config.cookie, "x").unsign(resigned.value)[1]
        is False
    )  # signed with the current key now
    again = http.get("/whoami")
    assert again.json["user"] == "lou" and "Set-Cookie" not in again.headers


def test_storage_failure_is_503() -> None:
    """Storage down: bearer and cookie requests get 503 with Retry-After, never 500."""

    class Broken(RemoteLikeMemory):
        down = False

        async def get_token(self, token_id: str):  # type: ignore[no-untyped-def]
            if self.down:
                raise StorageUnavailable("memory", "get_token", "simulated outage")
            return await super().get_token(token_id)

        async def get_session(self, session_id: str):  # type: ignore[no-untyped-def]
            if self.down:
                raise StorageUnavailable("memory", "get_session", "simulated outage")
            return await super().get_session(session_id)

        async def update_session(self, session):  # type: ignore[no-untyped-def]
            if session.data:
                raise StorageUnavailable("memory", "update_session", "simulated outage")
            return await super().update_session(session)

    storage = Broken()
    app, ext = make_flask(AuthFramework(storage, test_config()), retry_after=9)
    try:
        token = login_token(ext.middleware)  # type: ignore[arg-type]
        http = app.test_client()
        http.post("/login", json={"user": "alice", "password": "password"})
        csrf = http.get_cookie("authmw_csrf")
        assert csrf is not None
        saved = http.post("/cart", json={"item": "x"}, headers={"X-CSRF-Token": csrf.value})
        assert saved.status_code == 503 and saved.headers["Retry-After"] == "9"
        assert saved.json["error"] == "service_unavailable"  # the view's body was discarded
        storage.down = True
        for client, headers in ((app.test_client(), bearer(token)), (http, {})):
            response = client.get("/whoami", headers=headers)
            assert response.status_code == 503 and response.headers["Retry-After"] == "9"
    finally:
        ext.close()


def test_context_isolation_under_concurrency(stack: Stack) -> None:
    """Concurrent requests in threads each see only their own principal, before and after I/O."""
    app, ext = flask_app(stack)
    mw = ext.middleware
    assert mw is not None
    tokens = {f"u{i}": login_token(mw, f"u{i}") for i in range(10)}
    jobs = [*tokens.items(), *((None, None) for _ in range(10))] * 2

    def call(job: tuple[str | None, str | None]) -> tuple[str, dict[str, str]]:
        name, token = job
        transport = httpx.WSGITransport(app=app)
        with httpx.Client(transport=transport, base_url="https://testserver") as http:
            body = http.get("/slow", headers=bearer(token) if token else {}).json()
        return name or "", body

    with ThreadPoolExecutor(20) as pool:
        for name, body in pool.map(call, jobs):
            assert body == {"before": name, "after": name, "context": name}


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def test_threaded_server(stack: Stack) -> None:
    """A real threaded WSGI server: 50 concurrent requests, no principal leaks between them."""
    app, ext = flask_app(stack)
    mw = ext.middleware
    assert mw is not None
    tokens = {f"t{i}": login_token(mw, f"t{i}") for i in range(20)}
    cookies: dict[str, str] = {}
    for i in range(15):
        mw.run(stack.auth.register_user(f"s{i}", "password"))
        session_id, _ = mw.run(stack.auth.create_session(f"s{i}"))
        signed = SessionCookieCodec(
            stack.auth.config.signing_keys, stack.auth.config.cookie, "x"
        ).sign(session_id)
        cookies[f"s{i}"] = f"authmw_session={signed}"
    jobs: list[tuple[str, dict[str, str]]] = [
        *((name, bearer(token)) for name, token in tokens.items()),
        *((name, {"Cookie": cookie}) for name, cookie in cookies.items()),
        *(("", {}) for _ in range(15)),
    ]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    start = threading.Barrier(len(jobs))
    # One client shared by the threads (it is thread-safe; building one costs ~0.1 s).
    http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=len(jobs)))
    try:
        url = f"http://127.0.0.1:{server.server_port}/slow"

        def call(job: tuple[str, dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
            name, headers = job
            start.wait(10)  # all threads fire together
            return name, [http.get(url, headers=headers).json() for _ in range(2)]

        with ThreadPoolExecutor(len(jobs)) as pool:
            results = list(pool.map(call, jobs))
    finally:
        http.close()
        server.shutdown()
        server.server_close()
        serving.join(10)
    assert len(results) == 50
    for name, bodies in results:
        for body in bodies:
            assert body == {"before": name, "after": name, "context": name}


def test_init_app_and_misuse(stack: Stack) -> None:
    """init_app works for app factories; misuse raises clear errors."""
    ext = AuthMW(login_view="login")
    with pytest.raises(TypeError, match="AuthFramework"):
        ext.init_app(Flask(__name__))
    with pytest.raises(RuntimeError, match="init_app"):
        ext.run(asyncio.sleep(0))
    app = Flask(__name__)
    ext.init_app(app, stack.auth)
    assert ext.middleware is not None
    stack.adopt(ext.middleware)
    assert app.extensions["authmw"] is ext and app.wsgi_app is ext.middleware

    bare = Flask(__name__)

    @bare.get("/guarded")
    @login_required
    def guarded() -> str:
        return "never"

    @bare.post("/in")
    def sign_in() -> str:
        login("x", "y")
        return "never"

    bare.testing = True
    with pytest.raises(RuntimeError, match="AuthMW"):
        bare.test_client().get("/guarded")
    with pytest.raises(RuntimeError, match="WSGIAuthMiddleware"):
        bare.test_client().post("/in")


def test_decorators_wrap_async_views(stack: Stack) -> None:
    """login_required and requires keep coroutine views coroutine functions."""
    app, ext = flask_app(stack)
    token = login_token(ext.middleware, roles=["admin"])  # type: ignore[arg-type]

    @login_required
    async def mine() -> str:
        return "mine"

    @requires("role:admin")
    async def theirs() -> str:
        return "theirs"

    assert asyncio.iscoroutinefunction(mine) and asyncio.iscoroutinefunction(theirs)
    with app.test_request_context("/", headers={"Accept": "application/json"}):
        refused = asyncio.run(mine())
        assert getattr(refused, "status_code", None) == 401
    seen: dict[str, Any] = {}

    @app.get("/async-check")
    def check() -> str:
        seen["mine"] = asyncio.run(mine())
        seen["theirs"] = asyncio.run(theirs())
        return "ok"

    app.test_client().get("/async-check", headers=bearer(token))
    assert seen == {"mine": "mine", "theirs": "theirs"}


def test_example_app(stack: Stack) -> None:
    """examples/flask_app.py's app works on every backend (bearer API, session page, CSRF)."""
    spec = importlib.util.spec_from_file_location(
        "flask_app_example", ROOT / "examples" / "flask_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        app, ext = module.create_app(stack.auth)
        stack.adopt(ext.middleware)
        module.exercise(app)
        assert app.test_client().get("/healthz").json == {"status": "ok"}
    finally:
        sys.modules.pop(spec.name, None)
