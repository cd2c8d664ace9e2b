"""The CSRF check on both fronts: hostile tokens, every unsafe method, and key rotation.

Each test runs on the ASGI and the WSGI middleware (:class:`tests.support.fronts.Front`),
called with the raw method and header bytes a server may hand over.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from werkzeug.serving import make_server

from authmw import AuthConfig, AuthFramework, AuthMiddleware, InMemoryStorage
from authmw.middleware._cookies import SessionCookieCodec
from authmw.middleware.wsgi import WSGIAuthMiddleware
from authmw.testing import fast_password_hasher
from tests.support import apps, wsgi_apps
from tests.support.fronts import FRONTS, Answer, Front

KEY_A = "key-A-0123456789abcdef0123456789abcdef"
KEY_B = "key-B-0123456789abcdef0123456789abcdef"
SAFE = ("GET", "HEAD", "OPTIONS", "TRACE")
# Methods are case-sensitive (RFC 9110 9.1): only the four exact spellings are safe.
UNSAFE = ("POST", "PUT", "PATCH", "DELETE", "PROPFIND", "FOO", "post", "get", "M-SEARCH")


def config(key: str = KEY_A, *fallbacks: str) -> AuthConfig:
    return AuthConfig(
        secret_key=key, secret_key_fallbacks=fallbacks, password_hasher=fast_password_hasher()
    )


class Session:
    """A logged-in session on a front: its signed cookie and its CSRF token."""

    def __init__(self, front: Front) -> None:
        front.run(front.auth.register_user("ann", "password"))
        self.session_id, _ = front.run(front.auth.create_session("ann"))
        codec = SessionCookieCodec(front.auth.config.signing_keys, front.auth.config.cookie, "x")
        self.cookie = codec.sign(self.session_id)
        self.token = codec.csrf_token(self.session_id)

    def headers(
        self, token: bytes | str | None = None, echo: bytes | str | None = None
    ) -> dict[str, bytes]:
        """Cookie (session + ``echo`` as the CSRF cookie) and ``token`` as the CSRF header."""
        raw = [f"authmw_session={self.cookie}".encode()]
        if echo is not None:
            raw.append(b"authmw_csrf=" + (echo.encode() if isinstance(echo, str) else echo))
        headers = {"cookie": b"; ".join(raw)}
        if token is not None:
            headers["x-csrf-token"] = token.encode() if isinstance(token, str) else token
        return headers


@pytest.fixture(params=FRONTS)
def front(request: pytest.FixtureRequest) -> Iterator[Front]:
    """Each middleware in turn over a memory storage, with key A."""
    built = Front(request.param, InMemoryStorage(), config())
    try:
        yield built
    finally:
        built.close()


def user(answer: Answer) -> str:
    """The principal's name in the app's answer."""
    name: str = answer.json()["user"]
    return name


@pytest.mark.parametrize(
    ("token", "echo"),
    [
        ("é" * 64, "é" * 64),
        (b"\xe9" * 64, b"\xe9" * 64),
        (b"\xff\xfe\x00", b"\xff\xfe\x00"),
        ("right", b"\xe9" * 64),
        (b"\xe9" * 64, "right"),
        ("right", "right\xe9"),
    ],
    ids=["text", "latin-1", "binary", "cookie", "header", "suffix"],
)
def test_non_ascii_csrf_is_403(front: Front, token: bytes | str, echo: bytes | str) -> None:
    """A non-ASCII CSRF header or cookie on a POST of a session is refused with 403, not 500."""
    session = Session(front)

    def fill(value: bytes | str) -> bytes | str:
        """``"right"`` stands for the session's real token."""
        return value.replace("right", session.token) if isinstance(value, str) else value

    answer = front.request("POST", session.headers(fill(token), fill(echo)))
    assert answer.status == 403 and answer.json()["error"] == "csrf_failed"


@pytest.mark.parametrize("method", SAFE)
def test_safe_methods_need_no_token(front: Front, method: str) -> None:
    """GET, HEAD, OPTIONS and TRACE of a session pass without a CSRF token."""
    session = Session(front)
    answer = front.request(method, session.headers())
    assert answer.status == 200 and user(answer) == "ann"


@pytest.mark.parametrize("method", UNSAFE)
def test_every_other_method_needs_the_token(front: Front, method: str) -> None:
    """Any other method, unusual or lower-case, is refused without the token and passes with it."""
    session = Session(front)
    refused = front.request(method, session.headers())
    assert refused.status == 403 and refused.json()["error"] == "csrf_failed"
    wrong = front.request(method, session.headers("0" * 64, "0" * 64))
    assert wrong.status == 403
    passed = front.request(method, session.headers(session.token, session.token))
    assert passed.status == 200 and user(passed) == "ann"


METHODS = st.one_of(
    st.sampled_from(SAFE + UNSAFE),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_!#$%&'*+.^`|~", min_size=1),
)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def test_any_csrf_bytes_never_fail(front: Front) -> None:
    """Any bytes as the CSRF header and cookie, with any method: 200 or 403, never a 500; an
    unsafe method passes only with the session's own token in both."""
    session = Session(front)
    token_bytes = st.one_of(
        st.binary(max_size=100),
        st.just(session.token.encode()),
        st.builds(lambda b: session.token.encode() + b, st.binary(min_size=1, max_size=4)),
    )

    @SETTINGS
    @given(
        method=METHODS,
        token=st.none() | token_bytes,
        echo=st.none() | token_bytes,
    )
    def run(method: str, token: bytes | None, echo: bytes | None) -> None:
        answer = front.request(method, session.headers(token, echo))
        assert answer.status in (200, 403), answer.body
        right = session.token.encode()
        if method in SAFE or (token == right and echo == right):
            assert answer.status == 200 and user(answer) == "ann"
        elif token != right or echo is None or right not in echo:
            assert answer.status == 403 and answer.json()["error"] == "csrf_failed"
        # else: the right header and a cookie around the token, which the cookie parser may
        # read as the token (surrounding whitespace is dropped): either answer is sound.

    run()


@pytest.mark.parametrize("kind", FRONTS)
def test_token_of_a_rotated_key(kind: str) -> None:
    """After a key rotation an old page's CSRF token passes while the old key is a fallback,
    and the current key's token is sent back; once the fallback is removed the session itself
    (its id is tagged under the old key) no longer authenticates."""
    storage = InMemoryStorage()
    before = Front(kind, storage, config(KEY_A))
    try:
        session = Session(before)
        old_token = session.token
        assert before.request("POST", session.headers(old_token, old_token)).status == 200
    finally:
        before.close()

    rotated = Front(kind, storage, config(KEY_B, KEY_A))
    try:
        answer = rotated.request("POST", session.headers(old_token, old_token))
        assert answer.status == 200 and user(answer) == "ann"
        cookies = answer.cookies()
        new_cookie, new_token = cookies["authmw_session"], cookies["authmw_csrf"]
        assert new_cookie != session.cookie and new_token != old_token
        session.cookie = new_cookie  # the browser keeps the re-signed cookie
        # A page loaded before the rotation still sends the old token: it passes.
        assert rotated.request("POST", session.headers(old_token, old_token)).status == 200
        assert rotated.request("POST", session.headers(new_token, new_token)).status == 200
    finally:
        rotated.close()

    retired = Front(kind, storage, config(KEY_B))
    try:
        answer = retired.request("POST", session.headers(new_token, new_token))
        assert answer.status == 200 and user(answer) == ""
        assert answer.cookies()["authmw_session"] in ("", '""')
    finally:
        retired.close()


@pytest.mark.parametrize("kind", FRONTS)
def test_token_of_a_retired_key_is_refused(kind: str) -> None:
    """A CSRF token derived under a fallback key passes; once that key is retired, 403."""
    storage = InMemoryStorage()
    rotated = Front(kind, storage, config(KEY_B, KEY_A))
    try:
        session = Session(rotated)
        old_key = SessionCookieCodec([KEY_A.encode()], rotated.auth.config.cookie, "x")
        old_token = old_key.csrf_token(session.session_id)
        assert old_token != session.token
        answer = rotated.request("POST", session.headers(old_token, old_token))
        assert answer.status == 200 and user(answer) == "ann"
    finally:
        rotated.close()
    retired = Front(kind, storage, config(KEY_B))
    try:
        refused = retired.request("POST", session.headers(old_token, old_token))
        assert refused.status == 403 and refused.json()["error"] == "csrf_failed"
        passed = retired.request("POST", session.headers(session.token, session.token))
        assert passed.status == 200 and user(passed) == "ann"
    finally:
        retired.close()


@contextlib.contextmanager
def _serve_uvicorn(auth: AuthFramework) -> Iterator[int]:
    """The ASGI app (login and cart) under a real uvicorn on 127.0.0.1; yields the port."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await auth.register_user("ann", "password")  # on uvicorn's loop, after the open
        yield

    app = Starlette(
        routes=[
            Route("/login", apps.do_login, methods=["POST"]),
            Route("/cart", apps.add_to_cart, methods=["POST"]),
        ],
        middleware=[Middleware(AuthMiddleware, auth=auth)],
        lifespan=lifespan,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):  # wait for the start-up, up to 10 s
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def _serve_werkzeug(auth: AuthFramework) -> Iterator[int]:
    """The WSGI app (login and cart) under a real werkzeug server; yields the port."""
    with WSGIAuthMiddleware(wsgi_apps.wsgi_app, auth) as middleware:
        middleware.run(auth.register_user("ann", "password"))
        server = make_server("127.0.0.1", 0, middleware, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_port
        finally:
            server.shutdown()
            thread.join(10)


def _call(port: int, method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        # http.client sends str header values as latin-1, byte for byte.
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.body = response.read()
        return response
    finally:
        connection.close()


@pytest.mark.parametrize("server", ["uvicorn", "werkzeug"])
def test_real_servers_refuse_hostile_csrf(server: str) -> None:
    """Over a real server and socket: non-ASCII CSRF tokens and unusual methods get 403."""
    auth = AuthFramework(InMemoryStorage(), config())
    serve = _serve_uvicorn if server == "uvicorn" else _serve_werkzeug
    with serve(auth) as port:
        login = _call(
            port,
            "POST",
            "/login",
            b'{"user": "ann", "password": "password"}',
            {"Content-Type": "application/json"},
        )
        assert login.status == 200, login.body
        jar = dict(c.split(";", 1)[0].split("=", 1) for c in login.headers.get_all("set-cookie"))
        cookie = f"authmw_session={jar['authmw_session']}"
        token = jar["authmw_csrf"]
        body, json_type = b'{"item": "x"}', {"Content-Type": "application/json"}
        for headers in (
            {"Cookie": f"{cookie}; authmw_csrf={token}", "X-CSRF-Token": "é" * 64},
            {"Cookie": f"{cookie}; authmw_csrf={'é' * 64}", "X-CSRF-Token": "é" * 64},
            {"Cookie": f"{cookie}; authmw_csrf={'é' * 64}", "X-CSRF-Token": token},
        ):
            refused = _call(port, "POST", "/cart", body, {**json_type, **headers})
            assert refused.status == 403, refused.body
        for method in ("PROPFIND", "FOO"):
            refused = _call(port, method, "/cart", body, {**json_type, "Cookie": cookie})
            assert refused.status == 403, refused.body
        passed = _call(
            port,
            "POST",
            "/cart",
            body,
            {**json_type, "Cookie": f"{cookie}; authmw_csrf={token}", "X-CSRF-Token": token},
        )
        assert passed.status == 200 and json.loads(passed.body) == {"cart": ["x"]}
