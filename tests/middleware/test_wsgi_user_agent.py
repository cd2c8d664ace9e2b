"""A hostile User-Agent behind WSGI: a failed login is still counted and audited, on every backend.

WSGI servers such as werkzeug pass control characters in header values through (ASGI servers
refuse them), and PostgreSQL stores no NUL: the audit write of a failed login failed, and the
failure was neither audited nor counted towards the lockout. Client-supplied text is cleaned
(control characters dropped, length capped) before it reaches the audit log.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.test import Client

pytest.register_assert_rewrite("tests.support.wsgi_apps")

from tests.support.wsgi_apps import Stack  # noqa: E402 - after the rewrite registration

pytest_plugins = ["tests.support.wsgi_apps"]

HOSTILE = "evil\x00agent\x07\x1b[31m" + "x" * 2000
CLEAN = "evilagent[31m" + "x" * (512 - len("evilagent[31m"))


def check_counted_and_audited(stack: Stack, post: object) -> None:
    """Two wrong passwords lock the account (max_failed_logins=2); both are audited with the
    cleaned user agent; the right password is then refused."""
    auth = stack.framework(max_failed_logins=2)
    app = stack.app(auth)
    app.run(auth.register_user("alice", "password"))
    for expected in ("invalid credentials", "locked"):
        status, body = post({"user": "alice", "password": "wrong"})  # type: ignore[operator]
        assert status == 401 and expected in body["error"].lower(), body
    status, body = post({"user": "alice", "password": "password"})  # type: ignore[operator]
    assert status == 401 and "locked" in body["error"].lower()
    events = app.run(auth.storage.query_audit(user_id="alice", action="login"))
    failures = [e for e in events if not e.outcome]
    assert len(failures) == 3
    assert {e.user_agent for e in failures} == {CLEAN}
    lockouts = app.run(auth.storage.query_audit(user_id="alice", action="account.lockout"))
    assert len(lockouts) == 1 and lockouts[0].user_agent == CLEAN


def test_werkzeug_test_client(stack: Stack) -> None:
    """Through werkzeug's test client, a NUL in User-Agent does not hide failed logins."""

    def post(form: dict[str, str]) -> tuple[int, dict[str, str]]:
        client = Client(stack.middlewares[-1])
        response = client.post("/login", json=form, headers={"User-Agent": HOSTILE})
        return response.status_code, response.get_json()

    check_counted_and_audited(stack, post)


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        """No access log lines in the test output."""


@pytest.fixture
def served(stack: Stack) -> Iterator[list[int]]:
    """A real werkzeug server on 127.0.0.1 serving the stack's latest app; yields [port]."""
    server = make_server(
        "127.0.0.1",
        0,
        lambda environ, start: stack.middlewares[-1](environ, start),
        threaded=True,
        request_handler=_Quiet,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield [server.server_port]
    finally:
        server.shutdown()
        thread.join(10)


def test_werkzeug_server(stack: Stack, served: list[int]) -> None:
    """Over a real werkzeug server and socket, a NUL in User-Agent does not hide failed logins."""

    def post(form: dict[str, str]) -> tuple[int, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", served[0], timeout=30)
        try:
            connection.request(
                "POST",
                "/login",
                body=json.dumps(form),
                headers={"Content-Type": "application/json", "User-Agent": HOSTILE},
            )
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    check_counted_and_audited(stack, post)
