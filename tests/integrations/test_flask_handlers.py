"""The Flask extension's error handlers and password-less login_user (on every backend)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flask import Flask, request

from authmw import (
    AccountLocked,
    AuthFramework,
    ConfigurationError,
    InvalidCredentials,
    InvalidToken,
    StorageUnavailable,
    UserExists,
    storage_from_url,
)
from authmw.errors import AuthmwError
from authmw.integrations.flask import AuthMW, current_session, current_user, login, login_user
from authmw.storage import InMemoryStorage
from authmw.testing import test_config
from tests.backends.redis import free_port

pytest.register_assert_rewrite("tests.support.wsgi_apps")

from tests.support.wsgi_apps import Stack  # noqa: E402 - after the rewrite registration

pytest_plugins = ["tests.support.wsgi_apps"]

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

ERRORS: dict[str, AuthmwError] = {
    "credentials": InvalidCredentials("bob"),
    "locked": AccountLocked("bob", 9.5),
    "exists": UserExists("bob"),
    "token": InvalidToken("revoked"),
    "storage": StorageUnavailable("redis", "get_user", "secret-host"),
    "config": ConfigurationError("password hunter2 refused"),
}


def make_app(auth: AuthFramework, **options: Any) -> tuple[Flask, AuthMW]:
    """A Flask app behind AuthMW with password-less, password and raising routes."""
    app = Flask(__name__)
    ext = AuthMW(app, auth, **options)

    @app.post("/sso/<user_id>")
    def sso(user_id: str) -> dict[str, Any]:
        user = login_user(user_id)
        return {"user": user.user_id, "now": current_user.display_name, **current_session}

    @app.post("/login")
    def password_login() -> dict[str, Any]:
        form = request.get_json()
        return {"user": login(form["user"], form["password"]).user_id}

    @app.post("/cart")
    def cart() -> dict[str, Any]:
        current_session["cart"] = ["tea"]
        return dict(current_session)

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        return {"user": current_user.display_name}

    @app.get("/raise/<name>")
    def raising(name: str) -> str:
        raise ERRORS[name]

    return app, ext


@pytest.fixture
def memory_app() -> Any:
    """make_app over an in-memory storage, closed afterwards."""
    app, ext = make_app(AuthFramework(InMemoryStorage(), test_config()), retry_after=11)
    yield app
    ext.close()


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_answer_by_themselves(memory_app: Flask, name: str) -> None:
    """AuthMW registers the handlers: each error's status and headers, JSON by default, HTML
    for a browser, no reason shown for a 500; StorageUnavailable uses the middleware's
    retry_after."""
    error = ERRORS[name]
    http = memory_app.test_client()
    answer = http.get(f"/raise/{name}", headers={"Accept": "application/json"})
    assert answer.status_code == error.status_code
    expected = dict(error.headers)
    if name == "storage":
        expected["Retry-After"] = "11"
    for header, value in expected.items():
        assert answer.headers[header] == value
    assert answer.json == {"error": error.error, "error_description": error.description}
    page = http.get(f"/raise/{name}", headers={"Accept": BROWSER})
    assert page.status_code == error.status_code and page.mimetype == "text/html"
    for header, value in expected.items():
        assert page.headers[header] == value
    for body in (answer.text, page.text):
        assert "hunter2" not in body and "secret-host" not in body


def test_app_pages_and_handlers_win(memory_app: Flask) -> None:
    """The app's errorhandler(409) page serves browsers; its errorhandler(UserExists) wins
    outright; error_handlers=False leaves errors to Flask (a 500)."""

    @memory_app.errorhandler(429)
    def slow_down(exc: Exception) -> tuple[str, int]:
        return "<p>slow down</p>", 429

    @memory_app.errorhandler(UserExists)
    def taken(exc: UserExists) -> tuple[str, int]:
        return "pick another name", 409

    http = memory_app.test_client()
    page = http.get("/raise/locked", headers={"Accept": BROWSER})
    assert (page.status_code, page.text) == (429, "<p>slow down</p>")
    assert page.headers["Retry-After"] == "10"
    assert http.get("/raise/locked").json["error"] == "account_locked"  # API clients: JSON
    assert http.get("/raise/exists").text == "pick another name"

    bare, ext = make_app(AuthFramework(InMemoryStorage(), test_config()), error_handlers=False)
    try:
        assert bare.test_client().get("/raise/exists").status_code == 500
    finally:
        ext.close()


def test_login_user(stack: Stack) -> None:
    """login_user logs in without a password on every backend: cookie, new session id on each
    login with the same user's data carried over, old id dead; unknown 401, disabled 403."""
    app, ext = make_app(stack.auth, csrf=False)
    mw = ext.middleware
    assert mw is not None
    stack.adopt(mw)
    user = mw.run(stack.auth.register_user("sso", "password"))
    http = app.test_client()
    assert http.post("/sso/sso").json == {"user": "sso", "now": "sso"}
    first = http.get_cookie("authmw_session")
    assert first is not None
    http.post("/cart")
    assert http.post("/sso/sso").json["cart"] == ["tea"]
    second = http.get_cookie("authmw_session")
    assert second is not None and second.value != first.value
    stale = app.test_client()
    stale.set_cookie("authmw_session", first.value)
    assert stale.get("/whoami").json == {"user": ""}
    (event, _) = mw.run(stack.storage.query_audit(user_id="sso", action="login"))
    assert event.metadata == {"method": "passwordless"}

    unknown = app.test_client().post("/sso/nobody")
    assert unknown.status_code == 401 and unknown.json["error"] == "invalid_credentials"
    mw.run(stack.storage.update_user(dataclasses.replace(user, is_active=False)))
    disabled = app.test_client().post("/sso/sso")
    assert disabled.status_code == 403 and "Set-Cookie" not in disabled.headers


def test_login_while_redis_is_down_is_503() -> None:
    """A login while Redis is unreachable (a dead port) is a 503 with Retry-After, not a 500."""
    auth = AuthFramework(storage_from_url(f"redis://127.0.0.1:{free_port()}/0"), test_config())
    app, ext = make_app(auth, retry_after=3)
    try:
        http = app.test_client()
        down = http.post("/login", json={"user": "bob", "password": "password"})
        assert down.status_code == 503 and down.headers["Retry-After"] == "3"
        assert down.json["error"] == "service_unavailable"
        sso = http.post("/sso/bob", headers={"Accept": BROWSER})
        assert sso.status_code == 503 and sso.mimetype == "text/html"
    finally:
        ext.close()
