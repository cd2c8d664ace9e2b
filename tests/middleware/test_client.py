"""The client address: the peer unless trusted proxies forward it, the same on ASGI and WSGI."""

from __future__ import annotations

from typing import Any

import pytest

from authmw import AuthConfig, AuthFramework, MiddlewareOptions
from authmw.errors import ConfigurationError
from authmw.middleware._client import TrustedProxies
from authmw.middleware.wsgi import WSGIAuthMiddleware
from authmw.storage import InMemoryStorage
from authmw.testing import fast_password_hasher
from tests.conftest import TEST_SECRET
from tests.support.apps import client, make_app
from tests.support.wsgi_apps import client as wsgi_client
from tests.support.wsgi_apps import wsgi_app

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client_address"),
    [
        # An untrusted peer: the header is ignored, whatever it says.
        ("203.0.113.5", "198.51.100.1", "203.0.113.5"),
        # A trusted proxy: the right-most hop that is not a trusted proxy.
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.1.1.1", "198.51.100.1"),
        ("2001:db8::1", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", " ::ffff:198.51.100.1 ", "198.51.100.1"),
        # Only trusted proxies in the chain: the left-most of them.
        ("10.0.0.2", "10.0.0.9, 10.0.0.3", "10.0.0.9"),
        # Junk stops the walk at the last trusted proxy.
        ("10.0.0.2", "198.51.100.1, junk", "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", None, "10.0.0.2"),
        (None, "198.51.100.1", None),
        ("testclient", "198.51.100.1", "testclient"),
    ],
)
def test_client_address(peer: str | None, forwarded: str | None, client_address: str) -> None:
    """X-Forwarded-For counts only behind a trusted proxy, read from the right."""
    assert PROXIES.client(peer, forwarded) == client_address


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    """The default trusts no proxy: the peer is the client."""
    assert TrustedProxies([]).client("127.0.0.1", "198.51.100.1") == "127.0.0.1"


@pytest.mark.parametrize("bad", ["10.0.0.0/8", ["not-an-address"], ["10.0.0.0/33"], [None]])
def test_bad_trusted_proxies_are_refused(bad: Any) -> None:
    """One string, or anything not an address or network, is a configuration error."""
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        MiddlewareOptions(trusted_proxies=bad)


def test_trusted_proxies_are_kept_as_a_tuple() -> None:
    """Any iterable is accepted and kept as a tuple."""
    options = MiddlewareOptions(trusted_proxies=iter(["10.0.0.0/8"]))
    assert options.trusted_proxies == ("10.0.0.0/8",)


def _auth() -> AuthFramework:
    config = AuthConfig(
        secret_key=TEST_SECRET, password_hasher=fast_password_hasher(), login_delay_after=100
    )
    return AuthFramework(InMemoryStorage(), config)


async def test_asgi_lockout_counts_the_forwarded_client() -> None:
    """Behind a trusted proxy, five wrong logins lock the forwarded client's address only:
    the owner, forwarded from another address by the same proxy, still logs in."""
    auth = _auth()
    async with auth:
        await auth.register_user("alice", "password1")
        app = make_app(auth, csrf=False, trusted_proxies=["127.0.0.1"])
        async with client(app) as http:

            async def login(password: str, address: str) -> int:
                response = await http.post(
                    "/login",
                    json={"user": "alice", "password": password},
                    headers={"x-forwarded-for": address},
                )
                return response.status_code

            for _ in range(5):
                assert await login("wrong", "203.0.113.9") == 401
            assert await login("password1", "203.0.113.9") == 401
            assert await login("password1", "198.51.100.1") == 200
        [session] = await auth.list_sessions("alice")
        assert session.ip_address == "198.51.100.1"


def test_wsgi_lockout_counts_the_forwarded_client() -> None:
    """The WSGI middleware reads X-Forwarded-For the same way."""
    auth = _auth()
    middleware = WSGIAuthMiddleware(wsgi_app, auth, csrf=False, trusted_proxies=["127.0.0.1"])
    try:
        with wsgi_client(middleware) as http:

            def login(password: str, address: str) -> int:
                response = http.post(
                    "/login",
                    json={"user": "alice", "password": password},
                    headers={"x-forwarded-for": address},
                )
                return response.status_code

            middleware.run(auth.register_user("alice", "password1"))
            for _ in range(5):
                assert login("wrong", "203.0.113.9") == 401
            assert login("password1", "203.0.113.9") == 401
            assert login("password1", "198.51.100.1") == 200
            [session] = middleware.run(auth.list_sessions("alice"))
            assert session.ip_address == "198.51.100.1"
    finally:
        middleware.close()
