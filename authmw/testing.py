"""Helpers for testing apps that use authmw.

Real argon2 parameters take tens of milliseconds per hash by design; tests that register and
log in many users should use :func:`fast_password_hasher` instead. Never use it in production.

:func:`asgi_client` and :func:`wsgi_client` are httpx clients that call an app in-process over
``https://testserver``: the session cookie is ``Secure`` by default
(``CookieConfig(secure=True)``, right for production), and httpx, like a browser, sends a
``Secure`` cookie back only over https, so a client on ``http://`` would be logged out again
on its next request. They need ``httpx`` (in authmw's ``dev`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher

from .config import AuthConfig

if TYPE_CHECKING:
    import httpx

__all__ = ["TEST_BASE_URL", "asgi_client", "fast_password_hasher", "test_config", "wsgi_client"]

#: The base URL of the test clients: https, so ``Secure`` session cookies travel.
TEST_BASE_URL = "https://testserver"


def fast_password_hasher() -> PasswordHasher:
    """argon2id with the cheapest parameters argon2 accepts (8 KiB, one pass): tests only."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=16, salt_len=8)


def test_config(**overrides: Any) -> AuthConfig:
    """An ``AuthConfig`` with a fixed test key and :func:`fast_password_hasher`."""
    settings: dict[str, Any] = {
        "secret_key": "authmw-testing-key-not-for-production-use!",
        "password_hasher": fast_password_hasher(),
    }
    settings.update(overrides)
    return AuthConfig(**settings)


def asgi_client(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` calling the ASGI ``app`` in-process at :data:`TEST_BASE_URL`
    (``https``, so the ``Secure`` session cookie is sent back). ``kwargs`` go to httpx."""
    import httpx

    kwargs.setdefault("base_url", TEST_BASE_URL)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), **kwargs)


def wsgi_client(app: Any, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` calling the WSGI ``app`` (Flask, or ``WSGIAuthMiddleware``)
    in-process at :data:`TEST_BASE_URL`; see :func:`asgi_client`."""
    import httpx

    kwargs.setdefault("base_url", TEST_BASE_URL)
    return httpx.Client(transport=httpx.WSGITransport(app=app), **kwargs)


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
