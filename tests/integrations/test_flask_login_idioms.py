"""Flask-Login idioms on AuthMW, on every backend: current_user's attributes for anonymous and
logged-in users, refusals through flask.abort for browsers, settings from app.config, typing."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from mypy import api as mypy_api

from authmw.errors import ConfigurationError
from authmw.integrations.flask import AuthMW, current_user, login_required, login_user, requires
from authmw.middleware.principal import ANONYMOUS, AnonymousUser

pytest.register_assert_rewrite("tests.support.wsgi_apps")

from tests.support.wsgi_apps import (  # noqa: E402 - after the rewrite registration
    Stack,
    bearer,
    client,
    login_token,
)

pytest_plugins = ["tests.support.wsgi_apps"]

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
ROOT = Path(__file__).resolve().parents[2]


def make_app(ext: AuthMW) -> Flask:
    app = Flask(__name__)

    @app.get("/who")
    def who() -> dict[str, Any]:
        return {
            "user_id": current_user.user_id,
            "get_id": current_user.get_id(),
            "is_authenticated": current_user.is_authenticated,
            "is_active": current_user.is_active,
            "is_anonymous": current_user.is_anonymous,
            "roles": list(current_user.roles),
        }

    @app.get("/me")
    @login_required
    def me() -> str:
        return f"hello {current_user.get_id()}"

    @app.get("/admin")
    @requires("role:admin")
    def admin() -> str:
        return "admin"

    @app.post("/sso")
    def sso() -> str:
        return login_user("ann").user_id

    @app.errorhandler(401)
    def please_log_in(error: Exception) -> tuple[str, int]:
        return "<p>Please log in</p>", 401

    @app.errorhandler(403)
    def forbidden(error: Exception) -> tuple[str, int]:
        return "<p>Not for you</p>", 403

    ext.init_app(app)
    return app


def test_current_user_attributes(stack: Stack) -> None:
    """Anonymous: user_id None, get_id() None, not authenticated/active, anonymous; logged
    in: the user's id and the opposite flags."""
    ext = AuthMW(auth=stack.auth)
    app = make_app(ext)
    assert ext.middleware is not None
    stack.adopt(ext.middleware)
    token = login_token(ext.middleware, "ann", roles=["admin"])
    with client(app) as http:
        assert http.get("/who").json() == {
            "user_id": None,
            "get_id": None,
            "is_authenticated": False,
            "is_active": False,
            "is_anonymous": True,
            "roles": [],
        }
        assert http.get("/who", headers=bearer(token)).json() == {
            "user_id": "ann",
            "get_id": "ann",
            "is_authenticated": True,
            "is_active": True,
            "is_anonymous": False,
            "roles": ["admin"],
        }
    assert isinstance(current_user._get_current_object(), AnonymousUser)  # type: ignore[union-attr]
    assert current_user.user_id is None  # outside a request


def test_refusals_render_app_error_pages_for_browsers(stack: Stack) -> None:
    """Browsers get the app's errorhandler(401/403) pages (flask.abort); API clients JSON
    with the WWW-Authenticate challenge."""
    ext = AuthMW(auth=stack.auth)
    app = make_app(ext)
    assert ext.middleware is not None
    stack.adopt(ext.middleware)
    token = login_token(ext.middleware, "bo")
    with client(app) as http:
        page = http.get("/me", headers=HTML)
        assert (page.status_code, page.text) == (401, "<p>Please log in</p>")
        page = http.get("/admin", headers={**HTML, **bearer(token)})
        assert (page.status_code, page.text) == (403, "<p>Not for you</p>")
        api = http.get("/me")
        assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"
        assert api.json()["error"] == "unauthorized"
        api = http.get("/admin", headers=bearer(token))
        assert api.status_code == 403 and api.json()["error"] == "insufficient_scope"
        assert http.get("/me", headers=bearer(token)).text == "hello bo"


def test_settings_from_app_config() -> None:
    """AuthMW(app) without a framework reads AUTHMW_* from app.config (storage URL, key,
    cookie settings); the cookie it sets follows them."""
    ext = AuthMW()
    app = Flask(__name__)
    app.config.update(
        AUTHMW_STORAGE_URL="memory://",
        AUTHMW_SECRET_KEY="a-flask-config-secret-key-of-32-bytes!!",
        AUTHMW_COOKIE_NAME="sid",
        AUTHMW_COOKIE_SECURE=False,
        AUTHMW_MIN_PASSWORD_LENGTH=4,
    )
    try:
        app = make_app_with_config(ext, app)
        assert ext.auth is not None
        assert ext.auth.config.cookie.name == "sid" and not ext.auth.config.cookie.secure
        assert ext.auth.config.min_password_length == 4
        assert ext.middleware is not None
        ext.run(ext.auth.register_user("ann", "pass"))
        with client(app) as http:
            answer = http.post("/sso")
            assert answer.text == "ann"
            cookie = answer.headers["set-cookie"]
            assert cookie.startswith("sid=") and "Secure" not in cookie
    finally:
        ext.close()


def make_app_with_config(ext: AuthMW, app: Flask) -> Flask:
    @app.post("/sso")
    def sso() -> str:
        return login_user("ann").user_id

    ext.init_app(app)
    return app


def test_misspelled_app_config_setting() -> None:
    """A misspelled AUTHMW_* setting is a ConfigurationError naming the closest one."""
    app = Flask(__name__)
    app.config.update(AUTHMW_STORAGE_URL="memory://", AUTHMW_SECRET_KEYS="x" * 40)
    with pytest.raises(ConfigurationError, match="did you mean AUTHMW_SECRET_KEY"):
        AuthMW(app)
    with pytest.raises(TypeError, match="AUTHMW_STORAGE_URL"):
        AuthMW(Flask(__name__))


def test_current_user_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    """``current_user.user_id`` and the Flask-Login attributes type-check under --strict."""
    source = tmp_path / "view.py"
    source.write_text(
        textwrap.dedent(
            """
            from authmw.integrations.flask import current_user

            def view() -> str:
                user_id: str | None = current_user.user_id
                flags: list[bool] = [
                    current_user.is_authenticated,
                    current_user.is_active,
                    current_user.is_anonymous,
                ]
                reveal_type(current_user.get_id())
                return f"{user_id} {flags} {current_user.identity}"
            """
        )
    )
    out, err, status = mypy_api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache"), str(source)]
    )
    assert status == 0 and "error" not in out, out + err
    assert 'Revealed type is "str | None"' in out or "Union[builtins.str, None]" in out, out
    assert ANONYMOUS.user_id is None
