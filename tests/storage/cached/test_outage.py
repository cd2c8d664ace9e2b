"""The outage policy with the server really stopped (throwaway Redis and PostgreSQL servers)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from authmw import AuthFramework
from authmw.errors import InvalidToken, StorageUnavailable
from tests.backends.postgres import PgCluster
from tests.backends.redis import RedisServer
from tests.support.apps import client, make_app
from tests.support.cache_helpers import (
    SERVERS,
    cache_of,
    eventually,
    frameworks,
    refused_eventually,
)


class Server:
    """A throwaway Redis or PostgreSQL server that a test may stop and start again."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.redis = RedisServer() if kind == "redis" else None
        self.pg = PgCluster() if kind == "postgres" else None

    @property
    def url(self) -> str:
        if self.redis is not None:
            return self.redis.url
        assert self.pg is not None
        return self.pg.url()

    @property
    def options(self) -> dict[str, object]:
        """Storage options that fail fast once the server is gone."""
        if self.kind == "redis":
            return {"retry_attempts": 1, "retry_delay": 0.05, "timeout": 2}
        return {"timeout": 2}

    def start(self) -> None:
        """Start the server unless it runs already."""
        redis_proc = None if self.redis is None else self.redis.proc
        if self.redis is not None and (redis_proc is None or redis_proc.poll() is not None):
            self.redis.start()
        elif self.pg is not None and not self.pg.running:
            self.pg.start()

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.kill()
        elif self.pg is not None:
            # "fast": clients are cut off at once, and (unlike "immediate", a crash of a
            # server running with fsync off) what was committed is still there afterwards.
            self.pg.stop("fast")

    def destroy(self) -> None:
        if self.redis is not None:
            self.redis.destroy()
        elif self.pg is not None:
            self.pg.destroy()


@pytest.fixture(scope="module", params=SERVERS)
def throwaway(request: pytest.FixtureRequest) -> Iterator[Server]:
    """One throwaway server per kind for this module (PostgreSQL's initdb is the slow part)."""
    server = Server(request.param)
    try:
        if server.pg is not None:
            server.pg.init()
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def running(throwaway: Server) -> Iterator[Server]:
    """The throwaway server, running now and again after the test (which may stop it)."""
    throwaway.start()
    yield throwaway
    throwaway.start()


@pytest.fixture
async def pair_factory(running: Server) -> AsyncIterator[object]:
    """Call with cache settings to get two app instances on the throwaway server."""
    opened: list[object] = []

    async def make(**cache: object) -> list[AuthFramework]:
        context = frameworks(
            running.kind,
            running.url,
            inner_options=running.options,
            retry_after_outage=0.2,
            **cache,
        )
        opened.append(context)
        return await context.__aenter__()

    yield make
    running.start()  # cleaning up needs the server
    for context in opened:
        await context.__aexit__(None, None, None)  # type: ignore[attr-defined]


async def _down(server: Server, *auths: AuthFramework) -> None:
    server.stop()
    for auth in auths:  # the caches learn it from their subscription connection
        await eventually(lambda auth=auth: not cache_of(auth).subscribed)


async def test_fail_closed_answers_503(running: Server, pair_factory: object) -> None:
    """fail_closed (the default): with the server down, a cached token is not served; the
    framework raises StorageUnavailable and the middleware answers 503 with Retry-After."""
    a, _ = await pair_factory()  # type: ignore[operator]
    await a.register_user("alice", "password")
    token = (await a.authenticate("alice", "password")).access_token
    await a.verify(token)
    app = make_app(a)
    async with client(app) as http:
        assert (
            await http.get("/private", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 200
        await _down(running, a)
        with pytest.raises(StorageUnavailable):
            await a.verify(token)
        response = await http.get("/private", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503 and response.headers["retry-after"]
    assert cache_of(a).cache_statistics().stale_hits == 0


async def test_serve_stale_answers_from_what_it_saw(
    running: Server,
    pair_factory: object,
) -> None:
    """serve_stale: with the server down, tokens valid when last read are served up to
    max_stale; a token revoked before the outage, or never read, is not."""
    a, b = await pair_factory(on_outage="serve_stale", max_stale=3.0)  # type: ignore[operator]
    await a.register_user("alice", "password")
    kept = (await a.authenticate("alice", "password")).access_token
    revoked = (await a.authenticate("alice", "password")).access_token
    never_read = (await a.authenticate("alice", "password")).access_token
    await b.verify(kept)
    await b.verify(revoked)
    read_at = time.monotonic()
    await a.revoke(revoked)
    await eventually(lambda: b.verify_nowait(revoked) is None, 1)  # dropped on b
    await _down(running, b)

    assert (await b.verify(kept)).user_id == "alice"
    for token in (revoked, never_read):
        with pytest.raises(StorageUnavailable):
            await b.verify(token)
    async with client(make_app(b)) as http:
        ok = await http.get("/private", headers={"Authorization": f"Bearer {kept}"})
        assert ok.status_code == 200
        gone = await http.get("/private", headers={"Authorization": f"Bearer {revoked}"})
        assert gone.status_code == 503
    assert cache_of(b).cache_statistics().stale_hits >= 2

    await eventually(lambda: time.monotonic() - read_at > 3.05, 5)  # past max_stale
    with pytest.raises(StorageUnavailable):
        await b.verify(kept)


async def test_back_after_the_outage(running: Server, pair_factory: object) -> None:
    """Once the server is back, the cache resubscribes by itself and answers fresh again."""
    a, b = await pair_factory()  # type: ignore[operator]
    await a.register_user("alice", "password")
    token = (await a.authenticate("alice", "password")).access_token
    await b.verify(token)
    await _down(running, a, b)
    running.start()
    await eventually(lambda: cache_of(a).subscribed and cache_of(b).subscribed, 15)
    if running.kind == "redis":  # a throwaway Redis keeps nothing over a restart
        with pytest.raises(InvalidToken):
            await b.verify(token)
    else:
        assert (await b.verify(token)).user_id == "alice"
        await a.revoke(token)
        await refused_eventually(b, token)
