"""WSGIAuthMiddleware on a plain WSGI app, on every backend: the edge table row by row."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import authmw
from authmw import AuthConfig, AuthFramework, CookieConfig
from authmw.errors import StorageUnavailable
from authmw.middleware._cookies import SessionCookieCodec
from authmw.middleware.wsgi import WSGIAuthMiddleware
from authmw.storage import InMemoryStorage
from authmw.testing import fast_password_hasher
from tests.conftest import TEST_SECRET
from tests.support.factories import RemoteLikeMemory

pytest.register_assert_rewrite("tests.support.wsgi_apps")

from tests.support.wsgi_apps import (  # noqa: E402 - after the rewrite registration
    Called,
    Stack,
    bearer,
    client,
    environ_for,
    login_token,
    wsgi_app,
)

pytest_plugins = ["tests.support.wsgi_apps"]


def signed_cookie(auth: AuthFramework, session_id: str) -> str:
    return SessionCookieCodec(auth.config.signing_keys, auth.config.cookie, "x").sign(session_id)


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "authmw-wsgi-loop"]


def test_no_credentials_is_anonymous(stack: Stack) -> None:
    """Without credentials the app runs with UnauthenticatedUser and decides itself."""
    with client(stack.app()) as http:
        response = http.get("/whoami")
        assert response.status_code == 200
        assert response.json() == {
            "authenticated": False,
            "user": "",
            "method": None,
            "scopes": [],
            "current": "",
        }
        assert "set-cookie" not in response.headers
        assert http.get("/private").status_code == 403


def test_valid_bearer(stack: Stack) -> None:
    """A valid bearer token reaches the app as an AuthUser with scopes for roles/permissions."""
    app = stack.app()
    token = login_token(app, roles=["admin"], permissions=["read"])
    with client(app) as http:
        body = http.get("/whoami", headers=bearer(token)).json()
        assert body == {
            "authenticated": True,
            "user": "alice",
            "method": "bearer",
            "scopes": ["authenticated", "read", "role:admin"],
            "current": "alice",
        }
        assert http.get("/private", headers=bearer(token)).text == "hello alice"
        assert http.get("/admin", headers=bearer(token)).status_code == 200


def test_missing_role_is_refused_by_the_app(stack: Stack) -> None:
    """A user without the role scope is refused by the app's own scope check."""
    app = stack.app()
    token = login_token(app)
    with client(app) as http:
        assert http.get("/admin", headers=bearer(token)).status_code == 403


@pytest.mark.parametrize("mutate", ["junk", "forged", "revoked", "expired", "unknown"])
def test_bad_bearer_is_401(stack: Stack, mutate: str) -> None:
    """Unknown, expired, revoked, forged or junk tokens get 401 invalid_token; app not called."""
    ttl = 0.2 if mutate == "expired" else 3600
    calls = 0

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        nonlocal calls
        calls += 1
        return wsgi_app(environ, start_response)

    auth = stack.framework(access_token_ttl=ttl)
    app = stack.adopt(WSGIAuthMiddleware(counting, auth))
    token = login_token(app)
    if mutate == "junk":
        token = "definitely-not-a-token"
    elif mutate == "forged":
        token = token[:-2] + ("00" if not token.endswith("00") else "11")
    elif mutate == "revoked":
        app.run(auth.revoke(token))
    elif mutate == "expired":
        time.sleep(0.3)
    elif mutate == "unknown":
        app.run(auth.revoke_user("alice"))
    with client(app) as http:
        response = http.get("/whoami", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"
    assert response.headers["content-type"] == "application/json"
    assert calls == 0


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer ab=cd",
        "Bearer " + "a" * 5000,
        "Bearer \u00e9".encode().decode("latin-1"),
        "Bearer a\x00b",
    ],
)
def test_malformed_authorization_is_400(stack: Stack, header: str) -> None:
    """Malformed Authorization headers (as a WSGI server passes them) get 400 invalid_request."""
    called = Called(stack.app(), environ_for(AUTHORIZATION=header))
    assert called.status == "400 Bad Request"
    assert called.header("www-authenticate")[0].startswith('Bearer error="invalid_request"')
    assert b"invalid_request" in called.body


def test_malformed_authorization_through_httpx(stack: Stack) -> None:
    """The same refusal through httpx's WSGI transport, with a JSON body and Content-Length."""
    with client(stack.app()) as http:
        response = http.get("/whoami", headers={"Authorization": "Bearer a b"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert int(response.headers["content-length"]) == len(response.content)


def test_other_schemes_pass_through(stack: Stack) -> None:
    """A Basic Authorization header is left to the app (anonymous)."""
    with client(stack.app()) as http:
        response = http.get("/whoami", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 200 and response.json()["authenticated"] is False


def test_excluded_paths_skip_authentication(stack: Stack) -> None:
    """Excluded paths are served anonymously even with a bad token, SCRIPT_NAME included."""
    app = stack.app(exclude_paths=["/api/health"])
    with client(app) as http:
        assert http.get("/whoami", headers=bearer("garbage")).status_code == 401
    environ = environ_for("/health", AUTHORIZATION="Bearer garbage")
    environ["SCRIPT_NAME"] = "/api"
    called = Called(app, environ)
    assert called.code == 200 and b'"authenticated": false' in called.body


def test_session_login_flow(stack: Stack) -> None:
    """Login sets a session cookie; the session authenticates and persists data; logout ends it."""
    app = stack.app()
    app.run(stack.auth.register_user("bob", "password", roles=["staff"]))
    with client(app) as http:
        response = http.post("/login", json={"user": "bob", "password": "password"})
        assert response.status_code == 200
        assert response.json() == {"user": "bob", "current": "bob"}
        cookies = response.headers.get_list("set-cookie")
        session_cookie = next(c for c in cookies if c.startswith("authmw_session="))
        for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
            assert attribute in session_cookie
        csrf = http.cookies["authmw_csrf"]

        who = http.get("/whoami").json()
        assert who["user"] == "bob" and who["method"] == "session"
        assert "role:staff" in who["scopes"]
        cart = http.post("/cart", json={"item": "apple"}, headers={"X-CSRF-Token": csrf})
        assert cart.json() == {"cart": ["apple"]}
        assert http.get("/session").json() == {"cart": ["apple"]}
        old_cookie = http.cookies["authmw_session"]

        response = http.post("/logout", headers={"X-CSRF-Token": csrf})
        assert response.status_code == 200
        assert any(
            c.startswith("authmw_session=") and "Max-Age=0" in c
            for c in response.headers.get_list("set-cookie")
        )
        assert http.get("/whoami").json()["authenticated"] is False
    # The old cookie is dead server-side, not just forgotten by the client.
    with client(app) as http:
        response = http.get("/whoami", headers={"Cookie": f"authmw_session={old_cookie}"})
        assert response.json()["authenticated"] is False
        assert "Max-Age=0" in response.headers["set-cookie"]


def test_session_saved_only_when_changed(stack: Stack) -> None:
    """Reading a session writes nothing and re-signs nothing (no Set-Cookie); changing it
    writes once; replacing the dict saves it."""
    app = stack.app()
    app.run(stack.auth.register_user("cat", "password"))
    writes = 0
    original = stack.storage.update_session

    async def counting(session):  # type: ignore[no-untyped-def]
        nonlocal writes
        writes += 1
        return await original(session)

    with client(app) as http:
        http.post("/login", json={"user": "cat", "password": "password"})
        stack.storage.update_session = counting  # type: ignore[method-assign]
        try:
            for _ in range(3):
                response = http.get("/session")
                assert response.status_code == 200
                assert "set-cookie" not in response.headers
            assert writes == 0
            csrf = {"X-CSRF-Token": http.cookies["authmw_csrf"]}
            http.post("/cart", json={"item": "pear"}, headers=csrf)
            assert writes == 1
            http.post("/replace-session", headers=csrf)
            assert writes == 2
        finally:
            del stack.storage.update_session  # type: ignore[method-assign]
        assert http.get("/session").json() == {"replaced": True}


def test_login_rotates_session_id(stack: Stack) -> None:
    """Logging in again issues a new session id and the old one stops working."""
    app = stack.app()
    app.run(stack.auth.register_user("dan", "password"))
    with client(app) as http:
        http.post("/login", json={"user": "dan", "password": "password"})
        first = http.cookies["authmw_session"]
        http.post(
            "/cart", json={"item": "kiwi"}, headers={"X-CSRF-Token": http.cookies["authmw_csrf"]}
        )
        http.post(
            "/login",
            json={"user": "dan", "password": "password"},
            headers={"X-CSRF-Token": http.cookies["authmw_csrf"]},
        )
        second = http.cookies["authmw_session"]
        assert first != second
        assert http.get("/session").json() == {"cart": ["kiwi"]}
    with client(app) as http:
        response = http.get("/whoami", headers={"Cookie": f"authmw_session={first}"})
        assert response.json()["authenticated"] is False


def test_failed_login_sets_no_cookie(stack: Stack) -> None:
    """A wrong password creates no session and sets no cookie."""
    app = stack.app()
    app.run(stack.auth.register_user("eve", "password"))
    with client(app) as http:
        response = http.post("/login", json={"user": "eve", "password": "nope"})
        assert response.status_code == 401 and "set-cookie" not in response.headers
    assert app.run(stack.storage.list_user_sessions("eve")) == []


@pytest.mark.parametrize("cookie", ["garbage", "st1.a.b.c.sig", ""])
def test_tampered_cookie_is_anonymous_and_deleted(stack: Stack, cookie: str) -> None:
    """A tampered or junk session cookie: anonymous, and the response deletes it."""
    with client(stack.app()) as http:
        response = http.get("/whoami", headers={"Cookie": f"authmw_session={cookie}"})
    assert response.status_code == 200 and response.json()["authenticated"] is False
    if cookie:
        assert "Max-Age=0" in response.headers["set-cookie"]


def test_unrelated_cookies_are_ignored(stack: Stack) -> None:
    """Cookies of other names leave the request anonymous and the response untouched."""
    with client(stack.app()) as http:
        response = http.get("/whoami", headers={"Cookie": "theme=dark; lang=en"})
    assert response.json()["authenticated"] is False and "set-cookie" not in response.headers


def test_expired_session_cookie(stack: Stack) -> None:
    """An expired session is anonymous and its cookie is deleted."""
    auth = stack.framework(session_idle_timeout=0.2)
    app = stack.app(auth)
    app.run(auth.register_user("fin", "password"))
    with client(app) as http:
        http.post("/login", json={"user": "fin", "password": "password"})
        time.sleep(0.3)
        response = http.get("/whoami")
        assert response.json()["authenticated"] is False
        assert "Max-Age=0" in response.headers["set-cookie"]


def test_bearer_wins_over_cookie(stack: Stack) -> None:
    """With both a bearer token and a session cookie, the bearer token decides."""
    app = stack.app()
    app.run(stack.auth.register_user("gil", "password"))
    token = login_token(app, "hal")
    with client(app) as http:
        http.post("/login", json={"user": "gil", "password": "password"})
        body = http.get("/whoami", headers=bearer(token)).json()
    assert body["user"] == "hal" and body["method"] == "bearer"


def test_csrf(stack: Stack) -> None:
    """Unsafe cookie requests need the CSRF header; bearer requests are exempt."""
    app = stack.app()
    app.run(stack.auth.register_user("ivy", "password"))
    token = login_token(app, "jon")
    with client(app) as http:
        http.post("/login", json={"user": "ivy", "password": "password"})
        missing = http.post("/cart", json={"item": "x"})
        assert missing.status_code == 403 and "CSRF" in missing.json()["error_description"]
        wrong = http.post("/cart", json={"item": "x"}, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        assert http.get("/session").json() == {}
        ok = http.post(
            "/cart", json={"item": "x"}, headers={"X-CSRF-Token": http.cookies["authmw_csrf"]}
        )
        assert ok.status_code == 200
    with client(app) as http:
        response = http.post("/cart", json={"item": "y"}, headers=bearer(token))
        assert response.status_code == 200


def test_csrf_header_and_cookie_names(stack: Stack) -> None:
    """csrf_header and csrf_cookie rename the double-submit pair."""
    app = stack.app(csrf_header="X-XSRF-Token", csrf_cookie="xsrf")
    app.run(stack.auth.register_user("jay", "password"))
    with client(app) as http:
        http.post("/login", json={"user": "jay", "password": "password"})
        token = http.cookies["xsrf"]
        assert (
            http.post("/cart", json={"item": "x"}, headers={"X-CSRF-Token": token}).status_code
            == 403
        )
        assert (
            http.post("/cart", json={"item": "x"}, headers={"X-XSRF-Token": token}).status_code
            == 200
        )


def test_csrf_can_be_turned_off(stack: Stack) -> None:
    """With csrf=False unsafe cookie requests pass without the header."""
    app = stack.app(csrf=False)
    app.run(stack.auth.register_user("kai", "password"))
    with client(app) as http:
        http.post("/login", json={"user": "kai", "password": "password"})
        assert "authmw_csrf" not in http.cookies
        assert http.post("/cart", json={"item": "x"}).status_code == 200


def test_fallback_key_cookie_is_resigned(stack: Stack) -> None:
    """A cookie signed with a fallback key is accepted and re-signed with the current key."""
    old_key, new_key = "old-key-0123456789abcdef0123456789", "new-key-0123456789abcdef0123456789"
    old = stack.framework(secret_key=old_key)
    app = stack.app(old)
    app.run(old.register_user("lou", "password"))
    with client(app) as http:
        http.post("/login", json={"user": "lou", "password": "password"})
        old_cookie = http.cookies["authmw_session"]
    new = stack.framework(secret_key=new_key, secret_key_fallbacks=[old_key])
    with client(stack.app(new)) as http:
        response = http.get("/whoami", headers={"Cookie": f"authmw_session={old_cookie}"})
        assert response.json()["user"] == "lou"
        resigned = http.cookies["authmw_session"]
        assert resigned != old_cookie
        response = http.get("/whoami", headers={"Cookie": f"authmw_session={resigned}"})
        assert response.json()["user"] == "lou" and "set-cookie" not in response.headers


def test_cookie_attributes_follow_config(stack: Stack) -> None:
    """Cookie name, path, domain, SameSite and Max-Age come from CookieConfig."""
    auth = stack.framework(cookie=CookieConfig(name="__Host-sid", same_site="strict", max_age=600))
    app = stack.app(auth)
    app.run(auth.register_user("mia", "password"))
    with client(app) as http:
        response = http.post("/login", json={"user": "mia", "password": "password"})
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("__Host-sid="))
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Max-Age=600", "Path=/"):
        assert attribute in cookie
    assert "Domain" not in cookie


def test_disabled_credentials_sources(stack: Stack) -> None:
    """bearer=False ignores Authorization; session_cookie=False ignores the cookie."""
    app = stack.app(bearer=False)
    token = login_token(app)
    with client(app) as http:
        assert http.get("/whoami", headers=bearer(token)).json()["authenticated"] is False
    app = stack.app(session_cookie=False)
    app.run(stack.auth.register_user("pia", "password"))
    with client(app) as http:
        http.post("/login", json={"user": "pia", "password": "password"})
        assert http.get("/whoami").json()["authenticated"] is False


def test_environ_keys_and_streamed_body(stack: Stack) -> None:
    """environ carries user/auth/session; current_user() holds in streamed bodies and write()."""
    app = stack.app()
    token = login_token(app)
    with client(app) as http:
        assert http.get("/stream", headers=bearer(token)).text == "alice;alice;alice;"
        assert http.get("/stream").text == ";;;"
    # httpx's transport drops write() output, so call the app directly.
    assert (
        Called(app, environ_for("/write", AUTHORIZATION=f"Bearer {token}")).body == b"written:alice"
    )
    assert authmw.current_user().is_authenticated is False


def test_context_variable_isolated_between_threads(stack: Stack) -> None:
    """Concurrent requests from many threads each see their own principal in current_user()."""
    app = stack.app()
    tokens = {f"user{i}": login_token(app, f"user{i}") for i in range(12)}
    jobs = [*tokens.items(), *((None, None) for _ in range(12))] * 3

    def call(job: tuple[str | None, str | None]) -> tuple[str | None, dict[str, Any]]:
        name, token = job
        with client(app) as http:
            headers = bearer(token) if token else {}
            return name, http.get("/whoami", headers=headers).json()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, jobs))
    for name, body in results:
        assert body["current"] == body["user"] == (name or "")


def test_context_variable_reset_after_error(stack: Stack) -> None:
    """current_user() is back to anonymous after an app that raised."""
    app = stack.app()
    token = login_token(app)
    with pytest.raises(RuntimeError, match="the app failed"):
        Called(app, environ_for("/boom", AUTHORIZATION=f"Bearer {token}"))
    assert authmw.current_user().is_authenticated is False


def test_session_save_failure_is_503(stack: Stack) -> None:
    """If a changed session cannot be saved, the client gets 503 and the app's body is closed."""
    app = stack.app()
    app.run(stack.auth.register_user("oda", "password"))
    with client(app) as http:
        http.post("/login", json={"user": "oda", "password": "password"})

        async def failing(session):  # type: ignore[no-untyped-def]
            raise StorageUnavailable("test", "update_session", "simulated outage")

        stack.storage.update_session = failing  # type: ignore[method-assign]
        try:
            response = http.post(
                "/cart", json={"item": "x"}, headers={"X-CSRF-Token": http.cookies["authmw_csrf"]}
            )
        finally:
            del stack.storage.update_session  # type: ignore[method-assign]
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert response.json()["error"] == "service_unavailable"
        assert "set-cookie" not in response.headers


class _Broken(RemoteLikeMemory):
    async def get_token(self, token_id: str):  # type: ignore[no-untyped-def]
        raise StorageUnavailable("memory", "get_token", "simulated outage")

    async def get_session(self, session_id: str):  # type: ignore[no-untyped-def]
        raise StorageUnavailable("memory", "get_session", "simulated outage")


def _config() -> AuthConfig:
    return AuthConfig(secret_key=TEST_SECRET, password_hasher=fast_password_hasher())


def test_storage_down_is_503() -> None:
    """When storage fails, credentials get 503 with Retry-After, never a 500 or anonymity."""
    auth = AuthFramework(_Broken(), _config())
    with WSGIAuthMiddleware(wsgi_app, auth, retry_after=7) as app:
        app.run(auth.register_user("ned", "password"))
        token = app.run(auth.authenticate("ned", "password")).access_token
        sid, _ = app.run(auth.create_session("ned"))
        with client(app) as http:
            cookie = {"Cookie": f"authmw_session={signed_cookie(auth, sid)}"}
            for headers in (bearer(token), cookie):
                response = http.get("/whoami", headers=headers)
                assert response.status_code == 503
                assert response.headers["retry-after"] == "7"
                assert response.json()["error"] == "service_unavailable"
            assert http.get("/whoami").status_code == 200


def test_slow_storage_is_503_after_timeout() -> None:
    """A loop that does not answer within ``timeout`` gives 503, not a hung request."""

    class Slow(RemoteLikeMemory):
        async def get_token(self, token_id: str):  # type: ignore[no-untyped-def]
            await asyncio.sleep(5)

    auth = AuthFramework(Slow(), _config())
    with WSGIAuthMiddleware(wsgi_app, auth, timeout=0.3) as app:
        app.run(auth.register_user("sam", "password"))
        token = app.run(auth.authenticate("sam", "password")).access_token
        started = time.monotonic()
        called = Called(app, environ_for(AUTHORIZATION=f"Bearer {token}"))
        assert called.code == 503 and called.header("retry-after") == ["5"]
        assert time.monotonic() - started < 3
        with pytest.raises(TimeoutError):
            app.run(asyncio.sleep(5), timeout=0.1)


@pytest.mark.parametrize("app_body", [[b"the app's body"], []])
def test_lazy_start_response_save_failure_replaces_body(app_body: list[bytes]) -> None:
    """An app calling start_response inside its body still gets the 503 and is closed."""

    class FailingSave(RemoteLikeMemory):
        async def update_session(self, session):  # type: ignore[no-untyped-def]
            if session.data:
                raise StorageUnavailable("memory", "update_session", "simulated outage")
            return await super().update_session(session)

    auth = AuthFramework(FailingSave(), _config())
    closed = []

    def lazy(environ: dict[str, Any], start_response: Any) -> Any:
        environ["authmw.session"]["cart"] = ["x"]  # a change that cannot be saved

        class Body:
            def __iter__(self):  # type: ignore[no-untyped-def]
                start_response("200 OK", [("Content-Type", "text/plain")])
                yield from app_body

            def close(self) -> None:
                closed.append(True)

        return Body()

    with WSGIAuthMiddleware(lazy, auth) as app:
        app.run(auth.register_user("uma", "password"))
        sid, _ = app.run(auth.create_session("uma"))
        called = Called(app, environ_for("/", COOKIE=f"authmw_session={signed_cookie(auth, sid)}"))
    assert called.code == 503 and called.header("retry-after") == ["5"]
    assert b"service_unavailable" in called.body and b"the app's body" not in called.body
    assert closed == [True]


def test_refused_principal_never_reaches_app(stack: Stack) -> None:
    """The app is not called at all for a refused bearer token."""
    calls = 0

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        nonlocal calls
        calls += 1
        return []

    middleware = stack.adopt(WSGIAuthMiddleware(app, stack.auth))
    assert Called(middleware, environ_for(AUTHORIZATION="Bearer x")).code == 401
    assert calls == 0


def test_login_helper_needs_middleware() -> None:
    """authmw.middleware.wsgi.login outside the middleware raises a clear RuntimeError."""
    with pytest.raises(RuntimeError, match="WSGIAuthMiddleware"):
        authmw.middleware.wsgi.login(environ_for(), "x", "y")
    with pytest.raises(RuntimeError, match="WSGIAuthMiddleware"):
        authmw.middleware.wsgi.logout(environ_for())


def test_loop_lifecycle(stack: Stack) -> None:
    """The loop starts on the first request, close() stops it, and a later request reopens."""
    before = len(loop_threads())
    app = stack.app()
    assert len(loop_threads()) == before
    token = login_token(app)
    assert len(loop_threads()) == before + 1 and stack.auth._open
    app.close()
    assert len(loop_threads()) == before and not stack.auth._open
    app.close()  # idempotent
    with client(app) as http:
        assert http.get("/whoami", headers=bearer(token)).json()["user"] == "alice"
    assert len(loop_threads()) == before + 1


def test_collected_middleware_stops_its_thread() -> None:
    """A middleware that is garbage collected closes its framework and stops its thread."""
    auth = AuthFramework(InMemoryStorage(), _config())
    app = WSGIAuthMiddleware(wsgi_app, auth)
    token = login_token(app)
    assert Called(app, environ_for(AUTHORIZATION=f"Bearer {token}")).code == 200
    thread = app._loop._thread
    assert thread is not None and thread.is_alive()
    ref = weakref.ref(app)
    del app
    gc.collect()
    assert ref() is None
    thread.join(5)
    assert not thread.is_alive() and not auth._open


def test_run_called_on_the_loop_thread_refuses() -> None:
    """run() from the loop's own thread raises instead of deadlocking."""
    auth = AuthFramework(InMemoryStorage(), _config())
    with WSGIAuthMiddleware(wsgi_app, auth) as app:

        async def nested() -> None:
            app.run(asyncio.sleep(0))

        with pytest.raises(RuntimeError, match="own loop"):
            app.run(nested())


def test_server_file_wrapper_is_passed_through(stack: Stack) -> None:
    """A response made with the server's wsgi.file_wrapper reaches the server unwrapped."""

    class FileWrapper:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def __iter__(self):  # type: ignore[no-untyped-def]
            yield self.data

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](b"file body")

    middleware = stack.adopt(WSGIAuthMiddleware(app, stack.auth))
    token = login_token(middleware)
    environ = environ_for(AUTHORIZATION=f"Bearer {token}")
    environ["wsgi.file_wrapper"] = FileWrapper
    result = middleware(environ, lambda status, headers, exc_info=None: None)
    assert isinstance(result, FileWrapper) and list(result) == [b"file body"]


def test_interpreter_exit_closes_the_framework(tmp_path: Any) -> None:
    """At interpreter exit an unclosed middleware closes its framework on its loop thread."""
    script = tmp_path / "unclosed.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, threading
        from authmw import AuthFramework, InMemoryStorage
        from authmw.testing import test_config
        from authmw.middleware.wsgi import WSGIAuthMiddleware

        class Loud(InMemoryStorage):
            async def close(self):
                await super().close()
                print("closed on", threading.current_thread().name, flush=True)

        auth = AuthFramework(Loud(), test_config())
        app = WSGIAuthMiddleware(lambda e, s: (s("200 OK", []), [b"ok"])[1], auth)
        app.run(auth.register_user("a", "password"))
        print("served", b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/"},
                                     lambda *a: None)), flush=True)
    """)
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["served b'ok'", "closed on authmw-wsgi-loop"]
    assert result.stderr == ""


def test_forked_child_starts_its_own_loop() -> None:
    """After a fork the child does not wait on the parent's (absent) loop thread."""
    auth = AuthFramework(InMemoryStorage(), _config())
    with WSGIAuthMiddleware(wsgi_app, auth, timeout=5) as app:
        token = login_token(app)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: answer one request, report its status, exit at once
            try:
                called = Called(app, environ_for(AUTHORIZATION=f"Bearer {token}"))
                os.write(write, called.status.encode() + b" " + called.body)
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
    assert answer.startswith(b"200 OK ") and b'"user": "alice"' in answer


def test_cached_answers_skip_the_loop() -> None:
    """With CachedStorage, cached tokens and sessions are answered without a trip to the loop."""
    from authmw.storage import CachedStorage

    auth = AuthFramework(CachedStorage(InMemoryStorage()), _config())
    with WSGIAuthMiddleware(wsgi_app, auth) as app:
        token = login_token(app)
        session_id, _ = app.run(auth.create_session("alice"))
        cookie = f"authmw_session={signed_cookie(auth, session_id)}"
        trips: list[str] = []
        call = app._call

        def counting(coro: Any, operation: str) -> Any:
            trips.append(operation)
            return call(coro, operation)

        app._call = counting  # type: ignore[method-assign]
        for headers in ({"AUTHORIZATION": f"Bearer {token}"}, {"COOKIE": cookie}):
            Called(app, environ_for(**headers))  # a miss fills the cache if needed
            trips.clear()
            called = Called(app, environ_for(**headers))
            assert called.code == 200 and b'"user": "alice"' in called.body
            assert trips == []
        app.run(auth.revoke(token))  # revocation reaches the cache at once
        assert Called(app, environ_for(AUTHORIZATION=f"Bearer {token}")).code == 401
