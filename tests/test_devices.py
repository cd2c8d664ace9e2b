"""Per-session and per-token control on every backend: list, revoke one, log out elsewhere."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import authmw
from authmw import AuthFramework, InvalidToken, SessionInfo, TokenInfo
from tests.support.apps import client, make_app
from tests.support.cache_helpers import SERVERS, frameworks, refused_eventually

AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"


async def test_sessions_and_tokens_are_listed_with_their_login(auth: AuthFramework) -> None:
    """A user's sessions and tokens list when and where each login happened; client text is
    kept cleaned (no control characters) and other users' are not listed."""
    await auth.register_user("alice", "password1")
    await auth.register_user("bob", "password1")
    _, first = await auth.create_session("alice", ip_address="203.0.113.7", user_agent=AGENT)
    _, second = await auth.create_session("alice", user_agent="evil\x00agent\r\nX-Injected: 1")
    await auth.create_session("bob")
    token = await auth.authenticate("alice", "password1", ip_address="2001:db8::1")
    await auth.authenticate("bob", "password1")

    sessions = await auth.list_sessions("alice")
    assert [s.session_id for s in sessions] == [first.session_id, second.session_id]
    assert all(isinstance(s, SessionInfo) for s in sessions)
    assert (sessions[0].ip_address, sessions[0].user_agent) == ("203.0.113.7", AGENT)
    assert (sessions[1].ip_address, sessions[1].user_agent) == (None, "evilagentX-Injected: 1")
    assert sessions[0].created_at == first.created_at
    assert sessions[0].last_seen == first.last_accessed

    tokens = await auth.list_tokens("alice")
    assert len(tokens) == 1 and isinstance(tokens[0], TokenInfo)
    assert tokens[0].token_id == token.token_id
    assert tokens[0].ip_address == "2001:db8::1" and tokens[0].user_agent is None
    assert tokens[0].created_at == tokens[0].last_seen == token.created_at


async def test_a_refresh_keeps_the_login_and_moves_last_seen(auth: AuthFramework) -> None:
    """After a refresh the listing shows one client: the new token, with the login's time,
    address and user agent, and a later last-seen."""
    await auth.register_user("alice", "password1")
    first = await auth.authenticate(
        "alice", "password1", ip_address="198.51.100.2", user_agent=AGENT
    )
    second = await auth.refresh(first.refresh_token)
    [info] = await auth.list_tokens("alice")
    assert info.token_id == second.token_id and info.family_id == first.family_id
    assert info.created_at == first.created_at
    assert info.last_seen == second.created_at >= first.created_at
    assert (info.ip_address, info.user_agent) == ("198.51.100.2", AGENT)


async def test_revoke_session_by_public_id(auth: AuthFramework) -> None:
    """A session ends by its public id alone; the id of another user's session with
    ``user_id`` given, an unknown id and a repeat are refused."""
    await auth.register_user("alice", "password1")
    raw, session = await auth.create_session("alice")
    kept_raw, _ = await auth.create_session("alice")
    assert not await auth.revoke_session(session.session_id, user_id="bob")
    assert not await auth.revoke_session("no-such-session")
    assert not await auth.revoke_session("")
    assert await auth.revoke_session(session.session_id, user_id="alice")
    assert not await auth.revoke_session(session.session_id)
    with pytest.raises(InvalidToken):
        await auth.get_session(raw)
    assert (await auth.get_session(kept_raw)).user_id == "alice"
    assert [s.session_id for s in await auth.list_sessions("alice")] != [session.session_id]


async def test_revoke_token_by_public_id_ends_its_refresh_too(auth: AuthFramework) -> None:
    """A token revoked by its id is refused, its refresh token too; the user's other login
    keeps working; another user's id with ``user_id`` given is refused."""
    await auth.register_user("alice", "password1")
    phone = await auth.authenticate("alice", "password1")
    laptop = await auth.authenticate("alice", "password1")
    assert not await auth.revoke_token(phone.token_id, user_id="bob")
    assert not await auth.revoke_token("no-such-token")
    assert await auth.revoke_token(phone.token_id, user_id="alice")
    assert not await auth.revoke_token(phone.token_id)
    with pytest.raises(InvalidToken):
        await auth.verify(phone.access_token)
    with pytest.raises(InvalidToken):
        await auth.refresh(phone.refresh_token)
    assert (await auth.verify(laptop.access_token)).user_id == "alice"
    assert [t.token_id for t in await auth.list_tokens("alice")] == [laptop.token_id]


async def test_logout_everywhere_else_keeps_the_current_one(auth: AuthFramework) -> None:
    """Every other session and token of the user ends; the kept session and the kept token's
    family (a refresh of it included) go on; other users are untouched."""
    await auth.register_user("alice", "password1")
    await auth.register_user("bob", "password1")
    here_raw, here = await auth.create_session("alice")
    there_raw, _ = await auth.create_session("alice")
    kept = await auth.authenticate("alice", "password1")
    kept = await auth.refresh(kept.refresh_token)
    other = await auth.authenticate("alice", "password1")
    bob_raw, _ = await auth.create_session("bob")
    bob = await auth.authenticate("bob", "password1")

    ended = await auth.logout_everywhere_else(
        "alice", keep_session=here.session_id, keep_token=kept.token_id
    )
    assert ended == 2
    assert (await auth.get_session(here_raw)).user_id == "alice"
    assert (await auth.verify(kept.access_token)).user_id == "alice"
    await auth.refresh(kept.refresh_token)
    for refused in (auth.get_session(there_raw), auth.verify(other.access_token)):
        with pytest.raises(InvalidToken):
            await refused
    assert (await auth.get_session(bob_raw)).user_id == "bob"
    assert (await auth.verify(bob.access_token)).user_id == "bob"
    assert [s.session_id for s in await auth.list_sessions("alice")] == [here.session_id]


@pytest.mark.parametrize("junk", ["", "a\x00b", "x" * 100_000, "é", "a b", None, 42])
async def test_junk_public_ids_are_refused_without_error(auth: AuthFramework, junk: Any) -> None:
    """Ids no selector can be (empty, NUL, huge, not base64url, not text) revoke nothing and
    raise nothing on any backend; a junk kept token keeps nothing."""
    await auth.register_user("alice", "password1")
    await auth.create_session("alice")
    assert await auth.revoke_session(junk) is False
    assert await auth.revoke_token(junk) is False
    assert await auth.logout_everywhere_else("alice", keep_session=junk, keep_token=junk) == 1


async def test_logout_everywhere_else_with_nothing_kept_ends_all(auth: AuthFramework) -> None:
    """Without a kept session or token every one of the user's ends (a kept token of another
    user keeps nothing)."""
    await auth.register_user("alice", "password1")
    await auth.register_user("bob", "password1")
    await auth.create_session("alice")
    await auth.authenticate("alice", "password1")
    bob = await auth.authenticate("bob", "password1")
    assert await auth.logout_everywhere_else("alice", keep_token=bob.token_id) == 2
    assert await auth.list_sessions("alice") == []
    assert await auth.list_tokens("alice") == []
    assert [t.token_id for t in await auth.list_tokens("bob")] == [bob.token_id]


async def _logout_elsewhere(request: Request) -> Response:
    user = request.user
    keep = user.session_record.session_id if user.session_record else None
    ended = await request.app.state.auth.logout_everywhere_else(user.user_id, keep_session=keep)
    return JSONResponse({"ended": ended})


async def _devices(request: Request) -> Response:
    sessions = await request.app.state.auth.list_sessions(request.user.user_id)
    return JSONResponse([{"ip": s.ip_address, "agent": s.user_agent} for s in sessions])


def _app(auth: AuthFramework, **options: Any) -> Any:
    app = make_app(auth, **options)
    app.router.routes.append(Route("/elsewhere", _logout_elsewhere, methods=["POST"]))
    app.router.routes.append(Route("/devices", _devices))
    app.state.auth = auth
    return app


async def _login(http: Any, **headers: str) -> None:
    response = await http.post(
        "/login", json={"user": "alice", "password": "password1"}, headers=headers
    )
    assert response.status_code == 200, response.text


async def test_logout_everywhere_else_through_the_middleware(auth: AuthFramework) -> None:
    """Two browsers logged in; one logs out everywhere else: the other's cookie is refused on
    its next request, the current one still works."""
    await auth.register_user("alice", "password1")
    app = _app(auth, csrf=False)
    async with client(app) as browser, client(app) as other:
        await _login(browser, **{"user-agent": "browser"})
        await _login(other, **{"user-agent": "other"})
        assert (await other.get("/private")).status_code == 200
        listed = (await browser.get("/devices")).json()
        assert sorted(d["agent"] for d in listed) == ["browser", "other"]
        assert all(d["ip"] == "127.0.0.1" for d in listed)
        assert (await browser.post("/elsewhere")).json() == {"ended": 1}
        assert (await other.get("/private")).status_code == 403
        assert (await other.get("/whoami")).json()["authenticated"] is False
        assert (await browser.get("/private")).status_code == 200
        assert [d["agent"] for d in (await browser.get("/devices")).json()] == ["browser"]


async def test_trusted_proxy_names_the_client(auth: AuthFramework) -> None:
    """X-Forwarded-For names the recorded client only when the peer is a trusted proxy."""
    await auth.register_user("alice", "password1")
    spoof = {"x-forwarded-for": "198.51.100.9, 203.0.113.50"}
    async with client(_app(auth, csrf=False)) as http:
        await _login(http, **spoof)
        assert [d["ip"] for d in (await http.get("/devices")).json()] == ["127.0.0.1"]
    await auth.logout_everywhere_else("alice")
    async with client(_app(auth, csrf=False, trusted_proxies=["127.0.0.0/8"])) as http:
        await _login(http, **spoof)
        assert [d["ip"] for d in (await http.get("/devices")).json()] == ["203.0.113.50"]


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, url) of the run's Redis, then of its PostgreSQL database."""
    kind: str = request.param
    url: str = request.getfixturevalue("redis_url" if kind == "redis" else "postgres_url")
    return kind, url


async def _session_refused_eventually(auth: AuthFramework, raw: str, limit: float = 10.0) -> None:
    """Wait (bounded) until ``auth`` refuses the session id ``raw``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            await auth.get_session(raw)
        except InvalidToken:
            return
        await asyncio.sleep(0.0005)
    pytest.fail(f"session still accepted after {limit} s")


async def test_revocations_reach_another_instances_cache(server: tuple[str, str]) -> None:
    """Sessions and tokens revoked by public id, or logged out elsewhere, on one app instance
    are refused by another instance that had them cached."""
    kind, url = server
    async with frameworks(kind, url) as (here, there):
        await here.register_user("alice", "password1")
        session_raw, session = await here.create_session("alice")
        token = await here.authenticate("alice", "password1")
        other_raw, _ = await here.create_session("alice")
        other = await here.authenticate("alice", "password1")
        kept_raw, kept = await here.create_session("alice")
        for raw in (session_raw, other_raw, kept_raw):
            await there.get_session(raw)
        for access in (token.access_token, other.access_token):
            await there.verify(access)

        assert await here.revoke_session(session.session_id)
        assert await here.revoke_token(token.token_id)
        await _session_refused_eventually(there, session_raw)
        await refused_eventually(there, token.access_token)

        assert await here.logout_everywhere_else("alice", keep_session=kept.session_id) == 2
        await _session_refused_eventually(there, other_raw)
        await refused_eventually(there, other.access_token)
        assert (await there.get_session(kept_raw)).user_id == "alice"


def test_public_types_are_exported() -> None:
    """SessionInfo and TokenInfo are part of the public API."""
    assert authmw.SessionInfo is SessionInfo and authmw.TokenInfo is TokenInfo
