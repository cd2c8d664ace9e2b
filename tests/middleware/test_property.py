"""Property tests: arbitrary Authorization, Cookie and CSRF headers at both middlewares.

Whatever a client sends, the answer is the app (anonymous) or a clean refusal: never a 500, a
503 or a traceback, and never an authenticated principal. The inputs include near misses: a
real access token and a real session cookie with one character changed, dropped or added.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authmw import AuthFramework, AuthMiddleware, InMemoryStorage
from authmw.middleware._cookies import SessionCookieCodec
from authmw.middleware.wsgi import WSGIAuthMiddleware
from authmw.testing import test_config
from tests.support.fronts import asgi_app, wsgi_app

pytest.register_assert_rewrite("tests.support.wsgi_apps")

from tests.support.wsgi_apps import Called, environ_for  # noqa: E402 - after the rewrite registration

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
B64TOKEN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
ALLOWED = {200, 400, 401, 403}


async def seed(auth: AuthFramework) -> tuple[str, str]:
    """A real access token and a real signed session cookie value, to mutate."""
    await auth.register_user("victim", "password", roles=["admin"])
    token = (await auth.authenticate("victim", "password")).access_token
    session_id, _ = await auth.create_session("victim")
    cookie = SessionCookieCodec(auth.config.signing_keys, auth.config.cookie, "authmw_csrf").sign(
        session_id
    )
    return token, cookie


@st.composite
def near_miss(draw: st.DrawFn, original: str) -> str:
    """``original`` with one character replaced, removed or inserted (never unchanged)."""
    i = draw(st.integers(0, len(original) - 1))
    edit = draw(st.sampled_from(["replace", "delete", "insert"]))
    if edit == "delete":
        return original[:i] + original[i + 1 :]
    char = draw(st.characters(codec="ascii").filter(lambda c: c != original[i]))
    if edit == "insert":
        return original[:i] + char + original[i:]
    return original[:i] + char + original[i + 1 :]


def authorizations(token: str) -> st.SearchStrategy[bytes]:
    texts = st.text(alphabet=B64TOKEN + '= \t,;"\\', max_size=80)
    return st.one_of(
        st.binary(max_size=200),
        st.builds(lambda raw: b"Bearer " + raw, st.binary(max_size=120)),
        st.builds(lambda t: f"Bearer {t}".encode(), near_miss(token)),
        st.builds(
            lambda scheme, gap, rest: f"{scheme}{gap}{rest}".encode(),
            st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Digest", ""]),
            st.sampled_from([" ", "  ", "\t", ""]),
            texts,
        ),
        st.builds(lambda n: b"Bearer " + b"a" * n, st.integers(4000, 6000)),
    )


def cookies(cookie: str) -> st.SearchStrategy[bytes]:
    miss = near_miss(cookie)
    value = st.one_of(miss, st.text(max_size=80), st.just(""), st.builds(lambda v: f'"{v}"', miss))
    pairs = st.lists(
        st.tuples(st.sampled_from(["authmw_session", "authmw_csrf", "other", ""]), value),
        max_size=3,
    )
    return st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda items: "; ".join(f"{k}={v}" for k, v in items).encode("utf-8", "replace"), pairs
        ),
    )


def headers_strategy(token: str, cookie: str) -> st.SearchStrategy[dict[str, bytes]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "authorization": authorizations(token),
            "cookie": cookies(cookie),
            "x-csrf-token": st.one_of(
                st.binary(max_size=80), st.text(B64TOKEN, max_size=80).map(str.encode)
            ),
        },
    )


METHODS = st.sampled_from(["GET", "POST", "DELETE", "OPTIONS"])


def check(status: int, headers: dict[str, str], body: bytes) -> None:
    """The response is the anonymous app or a clean refusal."""
    assert status in ALLOWED, (status, body)
    assert b"Traceback" not in body
    if status == 200:
        assert json.loads(body) == {"authenticated": False, "user": ""}
    else:
        assert json.loads(body)["error"]
        if status in (400, 401):
            assert headers["www-authenticate"].startswith("Bearer error=")


def test_asgi_middleware_never_fails_or_authenticates() -> None:
    """AuthMiddleware: arbitrary credentials never give a 500 or an authenticated principal."""
    auth = AuthFramework(InMemoryStorage(), test_config())
    with asyncio.Runner() as runner:
        token, cookie = runner.run(seed(auth))
        transport = httpx.ASGITransport(
            app=AuthMiddleware(asgi_app, auth), raise_app_exceptions=False
        )
        http = httpx.AsyncClient(transport=transport, base_url="https://testserver")

        @SETTINGS
        @given(method=METHODS, headers=headers_strategy(token, cookie))
        def run(method: str, headers: dict[str, bytes]) -> None:
            response = runner.run(http.request(method, "/anything", headers=headers))
            check(response.status_code, dict(response.headers), response.content)

        try:
            run()
        finally:
            runner.run(http.aclose())
            runner.run(auth.close())


def test_wsgi_middleware_never_fails_or_authenticates() -> None:
    """WSGIAuthMiddleware via httpx: arbitrary credentials never give a 500 or a principal."""
    auth = AuthFramework(InMemoryStorage(), test_config())
    with WSGIAuthMiddleware(wsgi_app, auth) as app:
        token, cookie = app.run(seed(auth))
        transport = httpx.WSGITransport(app=app, raise_app_exceptions=False)

        @SETTINGS
        @given(method=METHODS, headers=headers_strategy(token, cookie))
        def run(method: str, headers: dict[str, bytes]) -> None:
            # httpx's WSGI transport carries ASCII header values only.
            ascii_headers = {k: bytes(b & 0x7F for b in v) for k, v in headers.items()}
            with httpx.Client(transport=transport, base_url="https://testserver") as http:
                response = http.request(method, "/anything", headers=ascii_headers)
            check(response.status_code, dict(response.headers), response.content)

        run()


def test_wsgi_middleware_with_any_latin1_environ() -> None:
    """WSGIAuthMiddleware called directly with any bytes a server may decode (latin-1)."""
    auth = AuthFramework(InMemoryStorage(), test_config())
    with WSGIAuthMiddleware(wsgi_app, auth) as app:
        token, cookie = app.run(seed(auth))

        @SETTINGS
        @given(method=METHODS, headers=headers_strategy(token, cookie))
        def run(method: str, headers: dict[str, bytes]) -> None:
            environ = environ_for(
                "/anything",
                method,
                **{
                    name.replace("-", "_"): value.decode("latin-1")
                    for name, value in headers.items()
                },
            )
            called = Called(app, environ)
            check(called.code, {k.lower(): v for k, v in called.headers}, called.body)

        run()
