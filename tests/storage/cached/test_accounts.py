"""Account changes made on one app instance reach live credentials cached by another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from authmw import AuthFramework
from authmw.errors import InvalidToken
from tests.support.cache_helpers import SERVERS, frameworks, refused_eventually


@pytest.fixture(params=SERVERS)
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[list[AuthFramework]]:
    """Two app instances, each with its own cache, on one namespace of Redis or PostgreSQL."""
    kind: str = request.param
    url: str = request.getfixturevalue("redis_url" if kind == "redis" else "postgres_url")
    async with frameworks(kind, url) as auths:
        yield auths


async def session_refused_eventually(auth: AuthFramework, session_id: str) -> None:
    """Wait (bounded, 10 s) until ``auth`` refuses the session."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            await auth.get_session(session_id)
        except InvalidToken:
            return
        await asyncio.sleep(0.0005)
    pytest.fail("session still accepted after 10 s")


async def warm(auth: AuthFramework, access: str, session_id: str) -> None:
    """Read the token, the session and the user on ``auth`` so its cache holds all three."""
    for _ in range(3):
        await auth.verify(access)
        await auth.get_session(session_id)


async def test_role_change_reaches_other_instance(pair: list[AuthFramework]) -> None:
    """A role removed on instance A is gone from a token and a session cached on B."""
    a, b = pair
    await a.register_user("alice", "password", roles=["admin", "staff"])
    access = (await a.authenticate("alice", "password")).access_token
    session_id, _ = await a.create_session("alice")
    await warm(b, access, session_id)
    assert b.verify_nowait(access) is not None
    await a.set_roles("alice", ["staff"])
    roles: list[tuple[str, ...]] = []

    async def check() -> None:
        roles[:] = [(await b.verify(access)).roles, (await b.get_session(session_id)).roles]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await check()
        if roles == [("staff",), ("staff",)]:
            break
        await asyncio.sleep(0.0005)
    assert roles == [("staff",), ("staff",)]
    verified = b.verify_nowait(access)
    assert verified is None or verified.roles == ("staff",)


async def test_disable_reaches_other_instance(pair: list[AuthFramework]) -> None:
    """A user disabled on instance A: B refuses the cached token and session on next use."""
    a, b = pair
    await a.register_user("alice", "password")
    access = (await a.authenticate("alice", "password")).access_token
    session_id, _ = await a.create_session("alice")
    await warm(b, access, session_id)
    await a.disable_user("alice")
    await refused_eventually(b, access)
    await session_refused_eventually(b, session_id)
    with pytest.raises(InvalidToken):
        b.verify_nowait(access)


async def test_delete_reaches_other_instance(pair: list[AuthFramework]) -> None:
    """A user deleted on instance A: B refuses the cached token and session on next use."""
    a, b = pair
    await a.register_user("alice", "password")
    access = (await a.authenticate("alice", "password")).access_token
    session_id, _ = await a.create_session("alice")
    await warm(b, access, session_id)
    await a.delete_user("alice")
    await refused_eventually(b, access)
    await session_refused_eventually(b, session_id)
