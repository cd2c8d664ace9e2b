"""authmw.exception_handlers: every AuthmwError answered with its own status, headers and body
(JSON or HTML by Accept) in Starlette and FastAPI; password-less login_user on every backend."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import authmw
from authmw import (
    AccountDisabled,
    AccountLocked,
    AuthFramework,
    AuthMiddleware,
    AuthmwError,
    BackupError,
    ConfigurationError,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    MalformedAuthorization,
    RefreshTokenReused,
    StorageUnavailable,
    UnknownUser,
    UserExists,
    storage_from_url,
)
from authmw.middleware import WSGIAuthMiddleware
from authmw.middleware._edge import prefers_html
from authmw.storage import InMemoryStorage
from authmw.testing import test_config
from tests.backends.redis import free_port
from tests.middleware.test_asgi import ws_call
from tests.support.apps import client
from tests.support.wsgi_apps import Called, environ_for, wsgi_app

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def invalid_token(reason: str) -> str:
    """The RFC 6750 challenge the edge sends for a refused bearer token."""
    return f'Bearer error="invalid_token", error_description="the token is {reason}"'


# name -> (error, status, headers it must carry)
ERRORS: dict[str, tuple[AuthmwError, int, dict[str, str]]] = {
    "credentials": (InvalidCredentials("bob"), 401, {"www-authenticate": "Bearer"}),
    "unknown": (UnknownUser("bob"), 401, {"www-authenticate": "Bearer"}),
    "disabled": (AccountDisabled("bob"), 403, {}),
    "locked": (AccountLocked("bob", 41.2), 429, {"retry-after": "42"}),
    "exists": (UserExists("bob"), 409, {}),
    "input": (InvalidInput("user_id", "must not be empty"), 422, {}),
    "malformed": (
        MalformedAuthorization("empty token"),
        400,
        {"www-authenticate": 'Bearer error="invalid_request", error_description="empty token"'},
    ),
    "token": (
        InvalidToken("expired", token_id="t1"),
        401,
        {"www-authenticate": invalid_token("expired")},
    ),
    "reused": (
        RefreshTokenReused(token_id="t1", user_id="bob", family_id="f"),
        401,
        {"www-authenticate": invalid_token("reused")},
    ),
    "storage": (
        StorageUnavailable("redis", "get_user", "secret-host:6379"),
        503,
        {"retry-after": "5"},
    ),
    "config": (ConfigurationError("bad key for db://user:hunter2@x"), 500, {}),
    "backup": (BackupError("/var/backup.jsonl: line 3 is damaged"), 500, {}),
}


async def raising(request: Request) -> Response:
    raise ERRORS[request.path_params["name"]][0]


def starlette_app(**handlers: Any) -> Starlette:
    """An app with no middleware whose /raise/{name} raises ERRORS[name]."""
    return Starlette(
        routes=[Route("/raise/{name}", raising)],
        exception_handlers={**authmw.exception_handlers, **handlers},
    )


def fastapi_app() -> FastAPI:
    """The same in FastAPI, registered with add_exception_handler."""
    app = FastAPI()
    app.add_exception_handler(AuthmwError, authmw.handle_authmw_error)

    @app.get("/raise/{name}")
    async def raise_it(name: str) -> None:
        raise ERRORS[name][0]

    return app


@pytest.mark.parametrize("accept", ["application/json", BROWSER, None])
@pytest.mark.parametrize("name", sorted(ERRORS))
@pytest.mark.parametrize("make", [starlette_app, fastapi_app], ids=["starlette", "fastapi"])
async def test_each_error_has_its_answer(make: Any, name: str, accept: str | None) -> None:
    """Status and headers are the error's; the body is JSON, or HTML for a browser's Accept;
    a 500 never shows the reason."""
    error, status, headers = ERRORS[name]
    sent = {} if accept is None else {"Accept": accept}
    async with client(make()) as http:
        response = await http.get(f"/raise/{name}", headers=sent)
    assert response.status_code == status
    for header, value in headers.items():
        assert response.headers[header] == value
    if accept == BROWSER:
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert f"<h1>{status} " in response.text
    else:
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": error.error, "error_description": error.description}
    assert "hunter2" not in response.text and "secret-host" not in response.text
    assert "Traceback" not in response.text


async def test_server_faults_are_logged_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    """ConfigurationError answers a generic 500; its reason goes to the authmw logger at ERROR."""
    with caplog.at_level(logging.WARNING, logger="authmw"):
        async with client(starlette_app()) as http:
            response = await http.get("/raise/config")
    assert response.json()["error_description"] == "internal server error"
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.name.startswith("authmw") and "bad key" in record.getMessage()


async def test_the_app_can_override_one_error() -> None:
    """A handler the app registers for a subclass wins over authmw's for the rest."""

    async def taken(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("pick another name", status_code=409)

    app = Starlette(
        routes=[Route("/raise/{name}", raising)],
        exception_handlers={**authmw.exception_handlers, UserExists: taken},
    )
    async with client(app) as http:
        response = await http.get("/raise/exists")
        assert (response.status_code, response.text) == (409, "pick another name")
        assert (await http.get("/raise/locked")).status_code == 429


async def test_websocket_errors_close_the_socket() -> None:
    """An AuthmwError in a websocket endpoint closes it with the matching code (1013 for 503)."""

    async def ws(websocket: WebSocket) -> None:
        raise StorageUnavailable("redis", "get_user")

    app = Starlette(
        routes=[WebSocketRoute("/ws", ws)], exception_handlers=authmw.exception_handlers
    )
    sent = await ws_call(app, {})
    assert sent == [{"type": "websocket.close", "code": 1013, "reason": "service_unavailable"}]


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/html", True),
        (BROWSER, True),
        ("text/*", True),
        ("application/json, text/html", False),  # a tie goes to JSON
        ("text/html;q=0.5, application/json", False),
        ("text/html, application/json;q=0.5", True),
        ("text/html;q=0, */*", False),
        ("text/html;q=bogus", False),
        ("*/*;q=0.1, text/html", True),
    ],
)
def test_prefers_html(accept: str | None, html: bool) -> None:
    """The one Accept negotiation: HTML only when text/html outranks application/json."""
    assert prefers_html(accept) is html


# -- password-less login and storage outages behind the middleware ----------------------------


async def sso(request: Request) -> Response:
    user = await authmw.login_user(request, request.path_params["user"])
    return JSONResponse(
        {"user": user.user_id, "current": authmw.current_user().display_name, **request.session}
    )


async def whoami(request: Request) -> Response:
    return JSONResponse(
        {"user": request.user.display_name, "method": getattr(request.user, "auth_method", None)}
    )


async def password_login(request: Request) -> Response:
    form = await request.json()
    user = await authmw.login(request, form["user"], form["password"])
    return JSONResponse({"user": user.user_id})


async def cart(request: Request) -> Response:
    request.session["cart"] = ["tea"]
    return JSONResponse(request.session)


def sso_app(auth: AuthFramework, **options: Any) -> Starlette:
    """An app with a password-less login route and the ready handlers, behind AuthMiddleware."""
    return Starlette(
        routes=[
            Route("/sso/{user}", sso, methods=["POST"]),
            Route("/login", password_login, methods=["POST"]),
            Route("/cart", cart, methods=["POST"]),
            Route("/whoami", whoami),
        ],
        middleware=[Middleware(AuthMiddleware, auth=auth, csrf=False, **options)],
        exception_handlers=authmw.exception_handlers,
    )


async def test_login_user_starts_a_fresh_session(auth: AuthFramework) -> None:
    """login_user logs in without a password: cookie set, principal published, session data
    of the same user carried to a new id, the old id dead (fixation), audited."""
    await auth.register_user("sso-user", "password", roles=["staff"])
    app = sso_app(auth)
    async with client(app) as http:
        first = await http.post("/sso/sso-user", headers={"user-agent": "idp"})
        assert first.json() == {"user": "sso-user", "current": "sso-user"}
        old = http.cookies["authmw_session"]
        assert (await http.get("/whoami")).json() == {"user": "sso-user", "method": "session"}
        await http.post("/cart")
        again = await http.post("/sso/sso-user")
        assert again.json()["cart"] == ["tea"]
        assert http.cookies["authmw_session"] != old
    async with client(app) as stale:
        stale.cookies["authmw_session"] = old
        assert (await stale.get("/whoami")).json()["method"] is None
    logins = await auth.storage.query_audit(user_id="sso-user", action="login")
    assert [e.metadata["method"] for e in logins] == ["passwordless", "passwordless"]
    assert all(e.outcome for e in logins) and "idp" in {e.user_agent for e in logins}


async def test_login_user_refuses_unknown_and_disabled(auth: AuthFramework) -> None:
    """Unknown users get 401, disabled ones 403, through the ready handlers; no cookie is set."""
    user = await auth.register_user("gone", "password")
    await auth.storage.update_user(dataclasses.replace(user, is_active=False))
    async with client(sso_app(auth)) as http:
        unknown = await http.post("/sso/nobody")
        assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_credentials"
        disabled = await http.post("/sso/gone")
        assert disabled.status_code == 403 and disabled.json()["error"] == "account_disabled"
        assert "set-cookie" not in disabled.headers
        assert (await http.post("/sso/%E2%80%8Bx")).status_code == 422  # zero-width space


async def test_duplicate_sign_up_is_409(auth: AuthFramework) -> None:
    """A sign-up route that lets UserExists escape answers 409 JSON, on every backend."""

    async def sign_up(request: Request) -> Response:
        await auth.register_user(request.path_params["user"], "password")
        await authmw.login_user(request, request.path_params["user"])
        return PlainTextResponse("welcome", status_code=201)

    app = sso_app(auth)
    app.router.routes.append(Route("/sign-up/{user}", sign_up, methods=["POST"]))
    async with client(app) as http:
        assert (await http.post("/sign-up/newbie")).status_code == 201
        assert "authmw_session" in http.cookies
    async with client(app) as http:
        taken = await http.post("/sign-up/newbie")
    assert taken.status_code == 409 and taken.json()["error"] == "user_exists"


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
async def test_login_while_storage_is_down_is_503(scheme: str) -> None:
    """A login (password or password-less) while the storage's server is unreachable (a dead
    port) answers 503 with the middleware's Retry-After, never a 500."""
    url = f"{scheme}://{'postgres@' if scheme == 'postgresql' else ''}127.0.0.1:{free_port()}/0"
    auth = AuthFramework(storage_from_url(url), test_config())
    async with client(sso_app(auth, retry_after=7)) as http:
        down = await http.post("/login", json={"user": "bob", "password": "password"})
        assert down.status_code == 503 and down.headers["retry-after"] == "7"
        assert down.json()["error"] == "service_unavailable"
        page = await http.post("/sso/bob", headers={"Accept": BROWSER})
        assert page.status_code == 503 and page.headers["retry-after"] == "7"
        assert page.headers["content-type"].startswith("text/html")


# -- the edge's own refusals negotiate the same way ------------------------------------------


async def dead_storage_token() -> tuple[AuthFramework, str]:
    """A framework over an unreachable Redis, and a well-formed token it would have to look up."""
    minter = AuthFramework(InMemoryStorage(), test_config())
    await minter.register_user("bob", "password")
    token = (await minter.issue_tokens("bob")).access_token
    dead = AuthFramework(storage_from_url(f"redis://127.0.0.1:{free_port()}/0"), test_config())
    return dead, token


async def test_asgi_edge_refusals_follow_accept() -> None:
    """AuthMiddleware's 401 and 503 are JSON for API clients and an HTML page for browsers,
    with the same status and headers: the decision the error handlers use."""
    auth, token = await dead_storage_token()
    async with client(sso_app(auth, retry_after=4)) as http:
        for accept, kind in ((BROWSER, "text/html"), ("application/json", "application/json")):
            forged = await http.get(
                "/whoami", headers={"Authorization": "Bearer junk", "Accept": accept}
            )
            assert forged.status_code == 401 and forged.headers["content-type"].startswith(kind)
            assert forged.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
            down = await http.get(
                "/whoami", headers={"Authorization": f"Bearer {token}", "Accept": accept}
            )
            assert down.status_code == 503 and down.headers["retry-after"] == "4"
            assert down.headers["content-type"].startswith(kind)
    assert down.json()["error"] == "service_unavailable"


async def test_wsgi_edge_refusals_follow_accept() -> None:
    """WSGIAuthMiddleware answers its refusals by Accept too."""
    auth, token = await dead_storage_token()
    middleware = WSGIAuthMiddleware(wsgi_app, auth, retry_after=4)
    try:
        page = Called(middleware, environ_for(AUTHORIZATION=f"Bearer {token}", ACCEPT=BROWSER))
        api = Called(middleware, environ_for(AUTHORIZATION=f"Bearer {token}"))
    finally:
        middleware.close()
    assert page.status.startswith("503") and api.status.startswith("503")
    assert dict(page.headers)["Content-Type"] == "text/html; charset=utf-8"
    assert b"<h1>503 Service Unavailable</h1>" in page.body
    assert dict(api.headers)["Content-Type"] == "application/json"
    assert json.loads(api.body)["error"] == "service_unavailable"
    assert page.header("Retry-After") == api.header("Retry-After") == ["4"]
