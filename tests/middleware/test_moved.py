"""The old module paths (authmw.asgi, .wsgi, .principal, .sessions) still work, and warn."""

from __future__ import annotations

import importlib
import warnings

import pytest

from authmw.middleware import _cookies, asgi, principal, wsgi

MOVED = [
    ("authmw.asgi", "AuthMiddleware", asgi.AuthMiddleware, "authmw.middleware.asgi"),
    ("authmw.asgi", "login", asgi.login, "authmw.middleware.asgi"),
    ("authmw.wsgi", "WSGIAuthMiddleware", wsgi.WSGIAuthMiddleware, "authmw.middleware.wsgi"),
    ("authmw.wsgi", "login", wsgi.login, "authmw.middleware.wsgi"),
    ("authmw.principal", "AuthUser", principal.AuthUser, "authmw.middleware.principal"),
    ("authmw.principal", "current_user", principal.current_user, "authmw.middleware.principal"),
    (
        "authmw.sessions",
        "SessionCookieCodec",
        _cookies.SessionCookieCodec,
        "authmw.middleware._cookies",
    ),
]


@pytest.mark.parametrize(
    ("old", "name", "new_object", "new"), MOVED, ids=[f"{old}.{name}" for old, name, _, _ in MOVED]
)
def test_old_path_serves_the_new_object_and_warns(
    old: str, name: str, new_object: object, new: str
) -> None:
    """Each old module hands out the very object of its new home, with a DeprecationWarning
    that names the new place."""
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}") as seen:
        value = getattr(module, name)
    assert value is new_object
    assert len(seen) == 1
    # The warning points at the caller's line, not at authmw's alias machinery.
    assert seen[0].filename == __file__


def test_from_imports_of_the_old_paths_work_and_warn() -> None:
    """The import statements users wrote before the move keep working, each with a warning."""
    with pytest.warns(DeprecationWarning, match=r"authmw\.middleware\.asgi"):
        from authmw.asgi import AuthMiddleware
    with pytest.warns(DeprecationWarning, match=r"authmw\.middleware\.wsgi"):
        from authmw.wsgi import WSGIAuthMiddleware
    with pytest.warns(DeprecationWarning, match=r"authmw\.middleware\.principal"):
        from authmw.principal import AuthUser
    with pytest.warns(DeprecationWarning, match=r"authmw\.middleware\._cookies"):
        from authmw.sessions import SessionCookieCodec
    assert AuthMiddleware is asgi.AuthMiddleware
    assert WSGIAuthMiddleware is wsgi.WSGIAuthMiddleware
    assert AuthUser is principal.AuthUser
    assert SessionCookieCodec is _cookies.SessionCookieCodec


def test_unknown_and_dunder_names_raise_attribute_error() -> None:
    """A name the new module lacks, or a dunder lookup, is an AttributeError (no warning)."""
    module = importlib.import_module("authmw.asgi")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no_such_name"):
            module.no_such_name  # noqa: B018 - the lookup is the test
        with pytest.raises(AttributeError, match="__wrapped__"):
            module.__wrapped__  # noqa: B018


def test_star_import_gives_the_new_modules_names() -> None:
    """``from authmw.asgi import *`` gives what the new module exports, not the stub's own."""
    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning, match=r"authmw\.middleware\.asgi"):
        # exec: a star import is only allowed at a module's top level.
        exec("from authmw.asgi import *", namespace)
    assert {name for name in namespace if not name.startswith("__")} == set(asgi.__all__)
    assert namespace["AuthMiddleware"] is asgi.AuthMiddleware
