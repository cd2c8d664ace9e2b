"""The synchronous fast path: WSGIAuthMiddleware answers cache hits on the request's thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from authmw.middleware.wsgi import WSGIAuthMiddleware
from authmw.storage import CachedStorage, InMemoryStorage
from authmw.storage.redis import RedisConfig, RedisStorage
from tests.backends.postgres import run_async
from tests.backends.redis import prefix, purge
from tests.support.cache_helpers import cache_of, framework

pytest.register_assert_rewrite("tests.support.wsgi_apps")

from tests.support.wsgi_apps import bearer, client, login_token, wsgi_app  # noqa: E402 - after the line above


@pytest.fixture
def middleware(redis_url: str) -> Iterator[WSGIAuthMiddleware]:
    """The WSGI test app over a cached Redis storage of its own prefix."""
    inner = RedisStorage(RedisConfig(url=redis_url, key_prefix=prefix()))
    auth = framework(CachedStorage(inner))
    built = WSGIAuthMiddleware(wsgi_app, auth, timeout=10)
    try:
        yield built
    finally:
        built.close()

        async def clean() -> None:
            await purge(inner)
            await inner.close()

        run_async(clean)


async def _hold_the_loop(started: threading.Event, release: threading.Event) -> None:
    started.set()
    release.wait(30)  # blocking the loop thread is the point


def _block_loop(mw: WSGIAuthMiddleware, release: threading.Event) -> threading.Thread:
    """Keep the middleware's loop thread blocked until ``release`` is set (from a helper)."""
    started = threading.Event()
    blocker = threading.Thread(target=mw.run, args=(_hold_the_loop(started, release), 60))
    blocker.start()
    assert started.wait(5)
    return blocker


def test_cache_hits_do_not_cross_to_the_loop(middleware: WSGIAuthMiddleware) -> None:
    """Once a token and a session are cached, requests carrying them are answered while the
    loop thread is blocked; a request that needs storage waits for the loop."""
    token = login_token(middleware)
    with client(middleware) as http:
        assert http.get("/private", headers=bearer(token)).status_code == 200
        assert (
            http.post("/login", json={"user": "alice", "password": "password"}).status_code == 200
        )
        assert http.get("/session").status_code == 200  # read once: cached from now on
        release = threading.Event()
        blocker = _block_loop(middleware, release)
        try:
            # Answered while the loop is blocked: a request that needed it would wait, then
            # get 503 from the middleware's timeout.
            assert http.get("/private", headers=bearer(token)).text == "hello alice"
            assert http.get("/whoami").json()["method"] == "session"
            refused = http.get("/private", headers=bearer("junk-token"))
            assert refused.status_code == 401  # decided in-process, no storage needed
            # A call that needs storage runs on the loop: it cannot finish until released.
            tokens: list[str] = []
            bob = threading.Thread(target=lambda: tokens.append(login_token(middleware, "bob")))
            bob.start()
            bob.join(0.5)
            assert bob.is_alive() and not tokens
        finally:
            release.set()
            blocker.join(10)
        bob.join(10)
        assert http.get("/private", headers=bearer(tokens[0])).text == "hello bob"
    stats = cache_of(middleware.auth).cache_statistics()
    assert stats.hits >= 3


def test_revocation_is_seen_by_the_fast_path(middleware: WSGIAuthMiddleware) -> None:
    """A token revoked (here through the loop) is refused by the next fast-path request."""
    token = login_token(middleware)
    with client(middleware) as http:
        assert http.get("/private", headers=bearer(token)).status_code == 200
        assert middleware.run(middleware.auth.revoke(token))
        assert http.get("/private", headers=bearer(token)).status_code == 401


def test_fast_path_is_off_without_a_cache() -> None:
    """With a storage that cannot answer from memory, every request takes the loop as before."""
    auth = framework(InMemoryStorage())
    with WSGIAuthMiddleware(wsgi_app, auth) as mw:
        assert mw.edge.authenticate_nowait("GET", b"Bearer x", None, None) is None
        token = login_token(mw)
        with client(mw) as http:
            assert http.get("/private", headers=bearer(token)).status_code == 200
