"""MiddlewareOptions: one options type for both middlewares, given as keywords or options=."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any, get_type_hints

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

import authmw
from authmw import (
    AuthFramework,
    AuthMiddleware,
    ConfigurationError,
    InMemoryStorage,
    MiddlewareOptions,
    WSGIAuthMiddleware,
)
from authmw.middleware import _options
from authmw.testing import test_config
from tests.support import apps, wsgi_apps

BAD_OPTIONS: list[dict[str, Any]] = [
    {"exclude_paths": "/health"},  # one string: its "/" would exclude every path
    {"exclude_paths": ["health"]},
    {"exclude_paths": [b"/health"]},
    {"retry_after": -1},
    {"retry_after": 1.5},
    {"retry_after": True},
    {"csrf_header": ""},
    {"csrf_header": "X CSRF"},
    {"csrf_header": "X-CSRF:"},
    {"csrf_cookie": ""},
    {"csrf_cookie": "a;b"},
    {"csrf_cookie": "a=b"},
]


async def noop_asgi(scope: Any, receive: Any, send: Any) -> None:
    """Never called: these tests only build middlewares."""


def noop_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    """Never called: these tests only build middlewares."""
    return []


def auth() -> AuthFramework:
    """A framework over a fresh in-memory storage."""
    return AuthFramework(InMemoryStorage(), test_config())


def test_public_names() -> None:
    """MiddlewareOptions is exported by authmw and authmw.middleware."""
    assert authmw.MiddlewareOptions is authmw.middleware.MiddlewareOptions is MiddlewareOptions
    assert "MiddlewareOptions" in authmw.__all__
    assert "MiddlewareOptions" in authmw.middleware.__all__


def test_keywords_list_the_fields() -> None:
    """The keyword form the constructors take names exactly the dataclass fields."""
    fields = [field.name for field in dataclasses.fields(MiddlewareOptions)]
    assert list(get_type_hints(_options.OptionKeywords)) == fields


def test_defaults() -> None:
    """The defaults are the ones documented (and the ones both constructors had)."""
    options = MiddlewareOptions()
    assert (options.bearer, options.session_cookie, options.csrf) == (True, True, True)
    assert (options.csrf_header, options.csrf_cookie) == ("X-CSRF-Token", "authmw_csrf")
    assert (options.exclude_paths, options.retry_after) == ((), 5)
    assert AuthMiddleware(noop_asgi, auth()).options == options
    assert WSGIAuthMiddleware(noop_wsgi, auth()).options == options


def test_exclude_paths_are_kept_as_a_tuple() -> None:
    """Any iterable of paths is accepted and stored as a tuple (the options stay hashable)."""
    options = MiddlewareOptions(exclude_paths=(p for p in ["/a", "/b/"]))
    assert options.exclude_paths == ("/a", "/b/")
    assert hash(options) == hash(MiddlewareOptions(exclude_paths=["/a", "/b/"]))


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=[repr(b) for b in BAD_OPTIONS])
def test_bad_values_are_refused_everywhere(bad: dict[str, Any]) -> None:
    """A bad value is a ConfigurationError when built: as options or as either front's
    keywords."""
    with pytest.raises(ConfigurationError):
        MiddlewareOptions(**bad)
    with pytest.raises(ConfigurationError):
        AuthMiddleware(noop_asgi, auth(), **bad)
    with pytest.raises(ConfigurationError):
        WSGIAuthMiddleware(noop_wsgi, auth(), **bad)
    with pytest.raises(ConfigurationError):  # overriding a good options object
        AuthMiddleware(noop_asgi, auth(), options=MiddlewareOptions(), **bad)


def test_csrf_cookie_must_differ_from_the_session_cookie() -> None:
    """A CSRF cookie named like the session cookie would overwrite it: refused."""
    with pytest.raises(ConfigurationError, match="session cookie"):
        AuthMiddleware(noop_asgi, auth(), csrf_cookie="authmw_session")
    with pytest.raises(ConfigurationError, match="session cookie"):
        WSGIAuthMiddleware(
            noop_wsgi, auth(), options=MiddlewareOptions(csrf_cookie="authmw_session")
        )


def test_unknown_option_and_wrong_options_type() -> None:
    """An unknown keyword is a TypeError; options= that is not a MiddlewareOptions is refused."""
    with pytest.raises(TypeError, match="bogus"):
        AuthMiddleware(noop_asgi, auth(), bogus=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="bogus"):
        WSGIAuthMiddleware(noop_wsgi, auth(), bogus=True)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="MiddlewareOptions"):
        AuthMiddleware(noop_asgi, auth(), options={"csrf": False})  # type: ignore[arg-type]


def test_keywords_override_the_options_fields() -> None:
    """options= gives the base; keywords replace single fields and keep the others."""
    base = MiddlewareOptions(csrf=False, retry_after=3, exclude_paths=["/health"])
    for front in (
        AuthMiddleware(noop_asgi, auth(), options=base, retry_after=7),
        WSGIAuthMiddleware(noop_wsgi, auth(), options=base, retry_after=7),
    ):
        assert front.options == dataclasses.replace(base, retry_after=7)
        assert front.edge.options is front.options
    assert AuthMiddleware(noop_asgi, auth(), options=base).options is base


def test_wsgi_timeout_is_a_positive_duration() -> None:
    """WSGI's own timeout takes seconds or a timedelta and refuses zero or less."""
    assert WSGIAuthMiddleware(noop_wsgi, auth(), timeout=timedelta(seconds=2)).timeout == 2.0
    assert WSGIAuthMiddleware(noop_wsgi, auth(), timeout=3).timeout == 3.0
    for bad in (0, -1, "5"):
        with pytest.raises(ConfigurationError, match="timeout"):
            WSGIAuthMiddleware(noop_wsgi, auth(), timeout=bad)  # type: ignore[arg-type]


async def test_asgi_options_object_takes_effect() -> None:
    """Middleware(AuthMiddleware, auth=auth, options=...) behaves as the keywords would:
    with csrf off, a cookie POST without the CSRF header is served."""
    framework = auth()
    await framework.register_user("opt", "password")
    app = Starlette(
        routes=apps.make_app(framework).routes,
        middleware=[
            Middleware(AuthMiddleware, auth=framework, options=MiddlewareOptions(csrf=False))
        ],
    )
    async with apps.client(app) as http:
        await http.post("/login", json={"user": "opt", "password": "password"})
        assert "authmw_csrf" not in http.cookies
        cart = await http.post("/cart", json={"item": "tea"})
        assert cart.status_code == 200 and cart.json() == {"cart": ["tea"]}


def test_wsgi_options_object_takes_effect() -> None:
    """WSGIAuthMiddleware(app, auth, options=...) behaves as the keywords would."""
    with WSGIAuthMiddleware(
        wsgi_apps.wsgi_app, auth(), options=MiddlewareOptions(csrf=False, exclude_paths=["/health"])
    ) as mw:
        mw.run(mw.auth.register_user("opt", "password"))
        with httpx.Client(
            transport=httpx.WSGITransport(app=mw), base_url="https://testserver"
        ) as http:
            http.post("/login", json={"user": "opt", "password": "password"})
            assert "authmw_csrf" not in http.cookies
            cart = http.post("/cart", json={"item": "tea"})
            assert cart.status_code == 200 and cart.json() == {"cart": ["tea"]}
            assert http.get("/health").json()["authenticated"] is False
