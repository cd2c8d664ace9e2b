"""A session save never brings back a session that logout or revoke_user ended meanwhile."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from authmw import AuthFramework, AuthMiddleware
from authmw.middleware.wsgi import WSGIAuthMiddleware
from tests.support.apps import client, do_login, do_logout, whoami

pytest.register_assert_rewrite("tests.support.wsgi_apps")

from tests.support import wsgi_apps  # noqa: E402 - after the rewrite registration
from tests.support.wsgi_apps import Stack  # noqa: E402

pytest_plugins = ["tests.support.wsgi_apps"]

TRIALS = 3


class Gate:
    """Holds the slow route between reading its session and writing it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


def slow_app(auth: AuthFramework, gate: Gate) -> Starlette:
    """An app whose /slow route writes the session after the test lets it go on."""

    async def slow(request: Request) -> Response:
        seen = dict(request.session)
        gate.entered.set()
        await gate.release.wait()
        request.session["visits"] = int(seen.get("visits", 0)) + 1
        return JSONResponse({"user": request.user.display_name})

    async def revoke(request: Request) -> Response:
        await auth.revoke_user(request.user.display_name)
        return PlainTextResponse("revoked")

    routes = [
        Route("/whoami", whoami),
        Route("/login", do_login, methods=["POST"]),
        Route("/logout", do_logout, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
        Route("/slow", slow),
    ]
    return Starlette(routes=routes, middleware=[Middleware(AuthMiddleware, auth=auth)])


async def _end_by_logout(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert (await http.post("/logout", headers=headers)).status_code == 200


async def _end_by_revoke(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert (await http.post("/revoke", headers=headers)).text == "revoked"


@pytest.mark.parametrize("end", [_end_by_logout, _end_by_revoke], ids=["logout", "revoke_user"])
async def test_slow_write_does_not_resurrect_ended_session(
    auth: AuthFramework,
    end: Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[None]],
) -> None:
    """A request that writes its session after logout/revoke_user ended it gets its answer,
    clears the cookie, and the old cookie stays refused."""
    await auth.register_user("alice", "password")
    for _ in range(TRIALS):
        gate = Gate()
        async with client(slow_app(auth, gate)) as http:
            login = await http.post("/login", json={"user": "alice", "password": "password"})
            assert login.status_code == 200
            cookie, csrf = http.cookies["authmw_session"], http.cookies["authmw_csrf"]
            http.cookies.clear()  # every request below names its cookies itself
            headers = {
                "Cookie": f"authmw_session={cookie}; authmw_csrf={csrf}",
                "X-CSRF-Token": csrf,
            }
            slow = asyncio.create_task(http.get("/slow", headers=headers))
            await asyncio.wait_for(gate.entered.wait(), 10)
            await end(http, headers)
            gate.release.set()
            response = await asyncio.wait_for(slow, 10)
            assert response.status_code == 200
            assert response.json() == {"user": "alice"}
            assert "Max-Age=0" in response.headers.get("set-cookie", "")
            http.cookies.clear()
            after = await http.get("/whoami", headers=headers)
            assert after.json()["authenticated"] is False
        assert await auth.storage.list_user_sessions("alice") == []


class ThreadGate:
    """The WSGI twin of :class:`Gate`, for a route running on a server thread."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()


def slow_wsgi_app(gate: ThreadGate) -> Callable[..., Iterable[bytes]]:
    """The WSGI test app plus /slow, which writes the session after the test lets it go on."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/slow":
            return wsgi_apps.wsgi_app(environ, start_response)
        session = environ["authmw.session"]
        gate.entered.set()
        assert gate.release.wait(10)
        session["visits"] = int(session.get("visits", 0)) + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow done"]

    return app


@pytest.mark.parametrize("end", ["logout", "revoke_user"])
def test_wsgi_slow_write_does_not_resurrect_ended_session(stack: Stack, end: str) -> None:
    """The same under WSGIAuthMiddleware: the late save clears the cookie, which stays dead."""
    gate = ThreadGate()
    app = stack.adopt(WSGIAuthMiddleware(slow_wsgi_app(gate), stack.auth))
    app.run(stack.auth.register_user("alice", "password"))
    with ThreadPoolExecutor(1) as pool:
        for _ in range(TRIALS):
            gate.entered.clear()
            gate.release.clear()
            with wsgi_apps.client(app) as http:
                http.post("/login", json={"user": "alice", "password": "password"})
                cookie, csrf = http.cookies["authmw_session"], http.cookies["authmw_csrf"]
                http.cookies.clear()
                headers = {
                    "Cookie": f"authmw_session={cookie}; authmw_csrf={csrf}",
                    "X-CSRF-Token": csrf,
                }

                def slow(headers: dict[str, str] = headers) -> httpx.Response:
                    with wsgi_apps.client(app) as other:
                        return other.get("/slow", headers=headers)

                pending = pool.submit(slow)
                assert gate.entered.wait(10)
                if end == "logout":
                    assert http.post("/logout", headers=headers).text == "bye"
                else:
                    assert app.run(stack.auth.revoke_user("alice")) >= 1
                gate.release.set()
                response = pending.result(10)
                assert response.status_code == 200 and response.text == "slow done"
                assert "Max-Age=0" in response.headers.get("set-cookie", "")
                http.cookies.clear()
                assert http.get("/whoami", headers=headers).json()["authenticated"] is False
    assert app.run(stack.storage.list_user_sessions("alice")) == []
