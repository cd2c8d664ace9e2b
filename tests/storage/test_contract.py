"""The AuthStorage behaviour suite: every test runs against every backend in tests/backends."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from authmw.errors import UserExists
from authmw.models import AuditEvent, utcnow
from authmw.storage import AuthStorage
from authmw.storage.base import SupportsCallTimeout, SupportsOwnerReads
from tests.support.factories import make_session, make_token, make_user


async def test_satisfies_protocol(storage: AuthStorage) -> None:
    """Every backend is an AuthStorage and answers ping."""
    assert isinstance(storage, AuthStorage)
    assert await storage.ping() >= 0
    assert isinstance(storage.name, str) and storage.name


# -- users ---------------------------------------------------------------------------------


async def test_user_round_trip(storage: AuthStorage) -> None:
    """A created user reads back equal, field for field."""
    user = make_user("alice", roles=("admin",), permissions=("read", "write"))
    await storage.create_user(user)
    assert await storage.get_user("alice") == user
    assert await storage.get_user("nobody") is None


async def test_create_user_twice_raises(storage: AuthStorage) -> None:
    """Creating an existing user id raises UserExists naming it."""
    await storage.create_user(make_user("bob"))
    with pytest.raises(UserExists) as info:
        await storage.create_user(make_user("bob"))
    assert info.value.user_id == "bob"


async def test_create_user_race_has_one_winner(storage: AuthStorage) -> None:
    """50 concurrent creations of one id: exactly one succeeds."""
    results = await asyncio.gather(
        *(storage.create_user(make_user("racer")) for _ in range(50)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, UserExists) for r in results if r is not None)


async def test_update_and_delete_user(storage: AuthStorage) -> None:
    """update_user replaces only existing users; delete_user reports what it did."""
    assert await storage.update_user(make_user("ghost")) is False
    assert await storage.get_user("ghost") is None
    user = make_user("carol")
    await storage.create_user(user)
    changed = dataclasses.replace(user, roles=("editor",), is_active=False)
    assert await storage.update_user(changed) is True
    assert await storage.get_user("carol") == changed
    assert await storage.delete_user("carol") is True
    assert await storage.delete_user("carol") is False
    assert await storage.get_user("carol") is None


async def test_user_ids_are_opaque_strings(storage: AuthStorage) -> None:
    """User ids with separators, unicode and quotes are stored verbatim."""
    for user_id in ("a:b:c", "ünï cödé", "o'brien\"", "x{tag}y", "user*"):
        await storage.create_user(make_user(user_id))
        got = await storage.get_user(user_id)
        assert got is not None and got.user_id == user_id
    assert await storage.get_user("user") is None


async def test_list_users_pages_in_code_point_order(storage: AuthStorage) -> None:
    """list_users pages by id in code-point order (not locale order) and filters by role and
    active; paging with ``after`` visits every user once."""
    ids = ["b", "a", "Z", "a1", "é", "a:b", "user*", "{x}", "ä", "zz"]
    for i, user_id in enumerate(ids):
        roles = ("admin",) if i % 3 == 0 else ("viewer",)
        await storage.create_user(make_user(user_id, roles=roles, is_active=i % 2 == 0))
    seen: list[str] = []
    after = None
    while True:
        page = await storage.list_users(after=after, limit=3)
        seen.extend(u.user_id for u in page)
        if len(page) < 3:
            break
        after = page[-1].user_id
    assert seen == sorted(ids)
    admins = await storage.list_users(role="admin", limit=100)
    assert [u.user_id for u in admins] == sorted(ids[i] for i in range(0, len(ids), 3))
    disabled = await storage.list_users(active=False, limit=100)
    assert [u.user_id for u in disabled] == sorted(ids[i] for i in range(1, len(ids), 2))
    both = await storage.list_users(role="admin", active=True, after="a", limit=2)
    expected = sorted(ids[i] for i in range(0, len(ids), 6) if ids[i] > "a")[:2]
    assert [u.user_id for u in both] == expected
    assert await storage.list_users(after=max(ids)) == []


# -- tokens --------------------------------------------------------------------------------


async def test_token_round_trip(storage: AuthStorage) -> None:
    """A stored token reads back equal by id and by refresh selector."""
    token = make_token(roles=("admin",), permissions=("read",))
    await storage.store_token(token)
    assert await storage.get_token(token.token_id) == token
    assert token.refresh_id is not None
    assert await storage.get_token_by_refresh(token.refresh_id) == token
    assert await storage.get_token("missing") is None
    assert await storage.get_token_by_refresh("missing") is None


async def test_token_and_user_read_together(storage: AuthStorage) -> None:
    """get_token_and_user answers what get_token and get_user answer: the owner beside a live
    token, None for a missing owner, (None, None) for a missing or expired token."""
    assert isinstance(storage, SupportsOwnerReads)
    owner = make_user("alice", roles=("admin",))
    await storage.create_user(owner)
    token = make_token("alice", roles=("admin",))
    await storage.store_token(token)
    assert await storage.get_token_and_user(token.token_id) == (token, owner)
    orphan = make_token("nobody")
    await storage.store_token(orphan)
    assert await storage.get_token_and_user(orphan.token_id) == (orphan, None)
    expired = make_token("alice", ttl=-5, refresh_ttl=-1)
    await storage.store_token(expired)
    assert await storage.get_token_and_user(expired.token_id) == (None, None)
    assert await storage.get_token_and_user("missing") == (None, None)
    # Ids JSON escapes (Redis finds the owner in the token's JSON) and one with braces.
    for odd in ('a"b\\c', "ünïcode 名前", "x}:{y"):
        someone = make_user(odd)
        await storage.create_user(someone)
        theirs = make_token(odd)
        await storage.store_token(theirs)
        assert await storage.get_token_and_user(theirs.token_id) == (theirs, someone)


async def test_session_and_user_read_together(storage: AuthStorage) -> None:
    """get_session_and_user answers what get_session and get_user answer: the owner beside a
    user's session, None beside an anonymous one or a deleted owner, (None, None) for none."""
    assert isinstance(storage, SupportsOwnerReads)
    owner = make_user("alice")
    await storage.create_user(owner)
    session = make_session("alice", data={"cart": [1]})
    anonymous = make_session(None, data={"flash": "hi"})
    orphan = make_session("gone")
    for stored in (session, anonymous, orphan):
        await storage.store_session(stored)
    assert await storage.get_session_and_user(session.session_id) == (session, owner)
    assert await storage.get_session_and_user(anonymous.session_id) == (anonymous, None)
    assert await storage.get_session_and_user(orphan.session_id) == (orphan, None)
    assert await storage.get_session_and_user("missing") == (None, None)


async def test_stored_token_drops_raw_strings(storage: AuthStorage) -> None:
    """Raw access/refresh strings handed to store_token are never kept."""
    token = dataclasses.replace(make_token(), access_token="raw-a", refresh_token="raw-r")
    await storage.store_token(token)
    got = await storage.get_token(token.token_id)
    assert got is not None and got.access_token == "" and got.refresh_token == ""


async def test_expired_token_never_returned(storage: AuthStorage) -> None:
    """A token past its storage expiry is invisible to every read, before any clean-up."""
    token = make_token(ttl=-5, refresh_ttl=-1)
    await storage.store_token(token)
    assert await storage.get_token(token.token_id) is None
    assert token.refresh_id is not None
    assert await storage.get_token_by_refresh(token.refresh_id) is None
    assert await storage.list_user_tokens(token.user_id) == []
    assert await storage.update_token(token) is False
    assert (await storage.get_statistics()).total_tokens == 0


async def test_token_lives_until_refresh_expiry(storage: AuthStorage) -> None:
    """A token whose access part expired stays readable while its refresh part is valid."""
    token = make_token(ttl=-5, refresh_ttl=600)
    await storage.store_token(token)
    assert await storage.get_token(token.token_id) == token


async def test_update_token(storage: AuthStorage) -> None:
    """update_token replaces an existing record and refuses a missing one."""
    token = make_token()
    assert await storage.update_token(token) is False
    await storage.store_token(token)
    revoked = dataclasses.replace(token, revoked_at=utcnow(), revoke_reason="revoked")
    assert await storage.update_token(revoked) is True
    got = await storage.get_token(token.token_id)
    assert got is not None and got.is_revoked and got.revoke_reason == "revoked"


async def test_rotate_token_once(storage: AuthStorage) -> None:
    """rotate_token retires the old record and stores the new one; a second rotation fails."""
    old = make_token()
    await storage.store_token(old)
    retired = dataclasses.replace(old, revoked_at=utcnow(), revoke_reason="rotated")
    new = make_token(family_id=old.family_id)
    assert await storage.rotate_token(retired, new) is True
    assert await storage.get_token(new.token_id) == new
    got_old = await storage.get_token(old.token_id)
    assert got_old is not None and got_old.revoke_reason == "rotated"
    another = make_token(family_id=old.family_id)
    assert await storage.rotate_token(retired, another) is False
    assert await storage.get_token(another.token_id) is None


async def test_rotate_token_race_has_one_winner(storage: AuthStorage) -> None:
    """20 concurrent rotations of one token: exactly one stores its successor."""
    old = make_token()
    await storage.store_token(old)
    retired = dataclasses.replace(old, revoked_at=utcnow(), revoke_reason="rotated")
    successors = [make_token(family_id=old.family_id) for _ in range(20)]
    results = await asyncio.gather(*(storage.rotate_token(retired, s) for s in successors))
    assert sum(results) == 1
    stored = [await storage.get_token(s.token_id) for s in successors]
    assert sum(s is not None for s in stored) == 1


async def test_revoke_token_family(storage: AuthStorage) -> None:
    """revoke_token_family revokes the family's live tokens, no other, and refuses its
    rotations from then on (nothing of the successor is stored)."""
    first = make_token("una")
    member = make_token("una", family_id=first.family_id)
    done = make_token(
        "una", family_id=first.family_id, revoked_at=utcnow(), revoke_reason="rotated"
    )
    other = make_token("una")
    for token in (first, member, done, other):
        await storage.store_token(token)
    until = utcnow() + timedelta(hours=3)
    assert await storage.revoke_token_family("una", first.family_id, until) == 2
    for token in (first, member):
        got = await storage.get_token(token.token_id)
        assert got is not None and got.revoke_reason == "family_revoked"
    got = await storage.get_token(done.token_id)
    assert got is not None and got.revoke_reason == "rotated"
    got = await storage.get_token(other.token_id)
    assert got is not None and not got.is_revoked
    assert await storage.revoke_token_family("una", first.family_id, until) == 0
    # A live token of the family stored afterwards (a restore, say) cannot rotate either.
    late = make_token("una", family_id=first.family_id)
    await storage.store_token(late)
    successor = make_token("una", family_id=first.family_id)
    retired = dataclasses.replace(late, revoked_at=utcnow(), revoke_reason="rotated")
    assert await storage.rotate_token(retired, successor) is False
    got = await storage.get_token(successor.token_id)
    assert got is None or got.is_revoked
    # Other families rotate as before.
    retired = dataclasses.replace(other, revoked_at=utcnow(), revoke_reason="rotated")
    assert await storage.rotate_token(retired, make_token("una", family_id=other.family_id))


async def test_rotate_missing_token_fails(storage: AuthStorage) -> None:
    """Rotating a token that is not stored changes nothing."""
    old = make_token()
    new = make_token()
    assert await storage.rotate_token(old, new) is False
    assert await storage.get_token(new.token_id) is None


async def test_delete_token(storage: AuthStorage) -> None:
    """delete_token removes the record and its refresh index."""
    token = make_token()
    await storage.store_token(token)
    assert await storage.delete_token(token.token_id) is True
    assert await storage.delete_token(token.token_id) is False
    assert await storage.get_token(token.token_id) is None
    assert token.refresh_id is not None
    assert await storage.get_token_by_refresh(token.refresh_id) is None
    assert await storage.list_user_tokens(token.user_id) == []


async def test_list_and_delete_user_tokens(storage: AuthStorage) -> None:
    """A user's tokens are listed and deleted together; other users' are untouched."""
    mine = [make_token("dave") for _ in range(5)]
    theirs = make_token("erin")
    for token in [*mine, theirs]:
        await storage.store_token(token)
    listed = await storage.list_user_tokens("dave")
    assert sorted(t.token_id for t in listed) == sorted(t.token_id for t in mine)
    assert await storage.delete_user_tokens("dave") == 5
    assert await storage.list_user_tokens("dave") == []
    assert await storage.get_token(theirs.token_id) == theirs
    assert await storage.delete_user_tokens("nobody") == 0


async def test_store_token_replaces_refresh_index(storage: AuthStorage) -> None:
    """Storing a record again with another refresh selector drops the old selector."""
    token = make_token()
    await storage.store_token(token)
    replacement = dataclasses.replace(token, refresh_id="new-refresh-selector")
    await storage.store_token(replacement)
    assert token.refresh_id is not None
    assert await storage.get_token_by_refresh(token.refresh_id) is None
    assert await storage.get_token_by_refresh("new-refresh-selector") == replacement


async def test_token_without_refresh(storage: AuthStorage) -> None:
    """A token without a refresh part is stored and read back."""
    token = make_token(refresh_ttl=None)
    await storage.store_token(token)
    assert await storage.get_token(token.token_id) == token


# -- sessions ------------------------------------------------------------------------------


async def test_session_round_trip(storage: AuthStorage) -> None:
    """A stored session reads back equal, data included."""
    session = make_session(data={"cart": [1, 2], "nested": {"a": "b"}, "n": None})
    await storage.store_session(session)
    got = await storage.get_session(session.session_id)
    assert got == session
    assert got is not None and got.data == {"cart": [1, 2], "nested": {"a": "b"}, "n": None}
    assert await storage.get_session("missing") is None


async def test_login_details_round_trip(storage: AuthStorage) -> None:
    """A token's and a session's login time, client address and user agent read back, by id,
    by refresh selector and in the user's listings; records without them read back None."""
    login = utcnow() - timedelta(hours=3)
    agent = "Mozilla/5.0 (X11; Linux x86_64) \u00e9\u4e2d"
    token = make_token(login_at=login, ip_address="2001:db8::1", user_agent=agent)
    session = make_session(ip_address="203.0.113.7", user_agent=agent)
    bare_token, bare_session = make_token(), make_session()
    for record in (token, bare_token):
        await storage.store_token(record)
    for record in (session, bare_session):
        await storage.store_session(record)
    assert token.refresh_id is not None
    for got in (
        await storage.get_token(token.token_id),
        await storage.get_token_by_refresh(token.refresh_id),
    ):
        assert got is not None
        assert (got.login_at, got.ip_address, got.user_agent) == (login, "2001:db8::1", agent)
    got_session = await storage.get_session(session.session_id)
    assert got_session is not None
    assert (got_session.ip_address, got_session.user_agent) == ("203.0.113.7", agent)
    listed = {t.token_id: t for t in await storage.list_user_tokens("alice")}
    assert listed == {token.token_id: token, bare_token.token_id: bare_token}
    assert listed[bare_token.token_id].login_at is None
    sessions = {s.session_id: s for s in await storage.list_user_sessions("alice")}
    assert sessions[session.session_id] == session
    assert sessions[bare_session.session_id].ip_address is None


async def test_session_reads_are_copies(storage: AuthStorage) -> None:
    """Mutating data read back (or passed in) does not change what is stored."""
    data = {"cart": [1]}
    session = make_session(data=data)
    await storage.store_session(session)
    data["cart"].append(99)
    got = await storage.get_session(session.session_id)
    assert got is not None and got.data == {"cart": [1]}
    got.data["cart"].append(2)
    again = await storage.get_session(session.session_id)
    assert again is not None and again.data == {"cart": [1]}


async def test_session_store_overwrites(storage: AuthStorage) -> None:
    """store_session with the same id replaces the data."""
    session = make_session(data={"v": 1})
    await storage.store_session(session)
    await storage.store_session(dataclasses.replace(session, data={"v": 2}))
    got = await storage.get_session(session.session_id)
    assert got is not None and got.data == {"v": 2}


async def test_session_data_must_be_json(storage: AuthStorage) -> None:
    """Non-JSON session data is refused with TypeError and nothing is stored."""
    session = make_session(data={"bad": object()})
    with pytest.raises(TypeError):
        await storage.store_session(session)
    assert await storage.get_session(session.session_id) is None


async def test_expired_session_never_returned(storage: AuthStorage) -> None:
    """An expired session is invisible to reads, lists, counts and touch."""
    session = make_session(ttl=-1)
    await storage.store_session(session)
    assert await storage.get_session(session.session_id) is None
    assert await storage.list_user_sessions(session.user_id) == []
    assert await storage.count_active_sessions() == 0
    now = utcnow()
    assert await storage.touch_session(session.session_id, now, now + timedelta(hours=1)) is False


async def test_touch_session(storage: AuthStorage) -> None:
    """touch_session moves last_accessed and expiry forward, keeping the data."""
    session = make_session(ttl=60)
    await storage.store_session(session)
    later = utcnow() + timedelta(seconds=5)
    new_expiry = later + timedelta(seconds=600)
    assert await storage.touch_session(session.session_id, later, new_expiry) is True
    got = await storage.get_session(session.session_id)
    assert got is not None
    assert got.last_accessed == later and got.expires_at == new_expiry
    assert got.data == session.data
    assert await storage.touch_session("missing", later, new_expiry) is False


async def test_touch_can_shorten_to_expiry(storage: AuthStorage) -> None:
    """Touching a session with an expiry in the past makes it unreadable at once."""
    session = make_session(ttl=60)
    await storage.store_session(session)
    now = utcnow()
    assert await storage.touch_session(session.session_id, now, now - timedelta(seconds=1))
    assert await storage.get_session(session.session_id) is None


async def test_user_sessions(storage: AuthStorage) -> None:
    """A user's sessions are listed, counted and deleted together."""
    mine = [make_session("frank") for _ in range(3)]
    theirs = make_session("gina")
    for session in [*mine, theirs]:
        await storage.store_session(session)
    assert await storage.count_active_sessions() == 4
    listed = await storage.list_user_sessions("frank")
    assert sorted(s.session_id for s in listed) == sorted(s.session_id for s in mine)
    assert await storage.delete_user_sessions("frank") == 3
    assert await storage.list_user_sessions("frank") == []
    assert await storage.count_active_sessions() == 1
    assert await storage.delete_session(theirs.session_id) is True
    assert await storage.delete_session(theirs.session_id) is False


async def test_update_session(storage: AuthStorage) -> None:
    """update_session writes data, access time and expiry of a live session."""
    session = make_session("hank", ttl=60)
    await storage.store_session(session)
    later = utcnow() + timedelta(seconds=5)
    changed = dataclasses.replace(
        session, data={"v": 2}, last_accessed=later, expires_at=later + timedelta(seconds=600)
    )
    assert await storage.update_session(changed) is True
    got = await storage.get_session(session.session_id)
    assert got == changed
    assert [s.session_id for s in await storage.list_user_sessions("hank")] == [session.session_id]


async def test_update_session_never_recreates(storage: AuthStorage) -> None:
    """update_session after delete_session, delete_user_sessions or expiry writes nothing."""
    deleted, revoked, expired = (make_session("ivy", ttl=60) for _ in range(3))
    expired = dataclasses.replace(expired, expires_at=utcnow() - timedelta(seconds=1))
    for session in (deleted, revoked, expired):
        await storage.store_session(session)
    assert await storage.delete_session(deleted.session_id) is True
    assert await storage.delete_user_sessions("ivy") == 1
    for session in (deleted, revoked, expired, make_session("ivy")):
        fresh = dataclasses.replace(
            session, data={"back": True}, expires_at=utcnow() + timedelta(hours=1)
        )
        assert await storage.update_session(fresh) is False
        assert await storage.get_session(session.session_id) is None
    assert await storage.list_user_sessions("ivy") == []
    assert await storage.count_active_sessions() == 0
    now = utcnow()
    assert await storage.touch_session(deleted.session_id, now, now + timedelta(hours=1)) is False
    assert await storage.get_session(deleted.session_id) is None


async def test_session_data_with_nul_round_trips(storage: AuthStorage) -> None:
    """Session data holding NUL characters, in values and keys, is stored faithfully."""
    data = {"k": "a\u0000b", "nul\u0000key": ["\u0000"], "plain": 1}
    session = make_session(data=data)
    await storage.store_session(session)
    got = await storage.get_session(session.session_id)
    assert got is not None and got.data == data
    updated = dataclasses.replace(session, data={"\u0000": "x\u0000"})
    assert await storage.update_session(updated) is True
    got = await storage.get_session(session.session_id)
    assert got is not None and got.data == {"\u0000": "x\u0000"}


async def test_anonymous_sessions(storage: AuthStorage) -> None:
    """A session without a user (user_id None) round-trips, is touched, is in no user's list,
    survives a revocation of users, and is counted in statistics as anonymous."""
    cart = make_session(None, data={"cart": ["book"]})
    user = make_session("hana")
    await storage.store_session(cart)
    await storage.store_session(user)
    got = await storage.get_session(cart.session_id)
    assert got == cart and got is not None and got.user_id is None
    later = utcnow() + timedelta(seconds=5)
    assert await storage.touch_session(cart.session_id, later, later + timedelta(seconds=600))
    got = await storage.get_session(cart.session_id)
    assert got is not None and got.user_id is None and got.data == {"cart": ["book"]}
    assert [s.session_id for s in await storage.list_user_sessions("hana")] == [user.session_id]
    assert await storage.delete_user_sessions("hana") == 1
    assert await storage.get_session(cart.session_id) is not None
    await storage.store_session(make_session(None, ttl=-1))  # expired: never counted
    stats = await storage.get_statistics()
    assert (stats.active_sessions, stats.anonymous_sessions) == (1, 1)
    assert await storage.delete_session(cart.session_id) is True
    assert (await storage.get_statistics()).anonymous_sessions == 0


# -- key-value -----------------------------------------------------------------------------


async def test_kv_round_trip(storage: AuthStorage) -> None:
    """Bytes stored under a key read back; delete reports what it did."""
    await storage.kv_set("k1", b"\x00\xffvalue", ttl=60)
    assert await storage.kv_get("k1") == b"\x00\xffvalue"
    await storage.kv_set("k1", b"second", ttl=60)
    assert await storage.kv_get("k1") == b"second"
    assert await storage.kv_delete("k1") is True
    assert await storage.kv_delete("k1") is False
    assert await storage.kv_get("k1") is None


async def test_kv_default_ttl(storage: AuthStorage) -> None:
    """kv_set without a ttl stores with the backend's default expiry (still readable now)."""
    await storage.kv_set("k-default", b"v")
    assert await storage.kv_get("k-default") == b"v"
    entries = [e async for batch in storage.iter_kv() for e in batch if e.key == "k-default"]
    assert len(entries) == 1 and entries[0].expires_at is not None
    assert entries[0].expires_at > utcnow()


async def test_kv_expiry(storage: AuthStorage) -> None:
    """An entry is unreadable once its ttl has passed."""
    await storage.kv_set("short", b"v", ttl=0.2)
    assert await storage.kv_get("short") == b"v"
    await asyncio.sleep(0.35)
    assert await storage.kv_get("short") is None


async def test_kv_incr_is_atomic(storage: AuthStorage) -> None:
    """100 concurrent increments of one counter give 1..100 exactly once each."""
    results = await asyncio.gather(*(storage.kv_incr("counter", 60) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await storage.kv_get("counter") == b"100"


async def test_kv_incr_window_restarts(storage: AuthStorage) -> None:
    """A counter whose window expired starts again at one."""
    assert await storage.kv_incr("window", 0.2) == 1
    assert await storage.kv_incr("window", 0.2) == 2
    await asyncio.sleep(0.35)
    assert await storage.kv_incr("window", 0.2) == 1


# -- audit ---------------------------------------------------------------------------------


async def test_audit_append_and_query(storage: AuthStorage) -> None:
    """Audit events come back newest first and filter by user, action and time."""
    base = utcnow() - timedelta(minutes=10)
    events = [
        AuditEvent(
            action="login",
            outcome=i % 2 == 0,
            user_id=f"u{i % 3}",
            timestamp=base + timedelta(seconds=i),
            metadata={"i": i},
            ip_address="127.0.0.1",
            user_agent="pytest",
        )
        for i in range(12)
    ]
    for event in events:
        await storage.append_audit(event)
    await storage.append_audit(
        AuditEvent(
            action="token.issue", outcome=True, user_id="u0", timestamp=base + timedelta(seconds=30)
        )
    )
    everything = await storage.query_audit(limit=100)
    assert len(everything) == 13
    assert everything[0].action == "token.issue"
    assert [e.timestamp for e in everything] == sorted(
        (e.timestamp for e in everything), reverse=True
    )
    u1 = await storage.query_audit(user_id="u1", action="login")
    assert [e.metadata["i"] for e in u1] == [10, 7, 4, 1]
    window = await storage.query_audit(
        since=base + timedelta(seconds=3), until=base + timedelta(seconds=5)
    )
    assert sorted(e.metadata["i"] for e in window) == [3, 4, 5]
    assert len(await storage.query_audit(limit=2)) == 2
    assert everything[-1] == events[0]


# -- maintenance ---------------------------------------------------------------------------


async def test_cleanup_removes_only_expired(storage: AuthStorage) -> None:
    """cleanup_expired removes expired records and leaves live ones readable."""
    live_token, dead_token = make_token("hank"), make_token("hank", ttl=-5, refresh_ttl=-1)
    live_session, dead_session = make_session("hank"), make_session("hank", ttl=-1)
    for token in (live_token, dead_token):
        await storage.store_token(token)
    for session in (live_session, dead_session):
        await storage.store_session(session)
    await storage.kv_set("live", b"1", ttl=60)
    removed = await storage.cleanup_expired()
    assert set(removed) >= {"tokens", "sessions", "kv"}
    assert all(isinstance(n, int) and n >= 0 for n in removed.values())
    assert await storage.get_token(live_token.token_id) == live_token
    assert await storage.get_session(live_session.session_id) == live_session
    assert await storage.kv_get("live") == b"1"
    assert [t.token_id for t in await storage.list_user_tokens("hank")] == [live_token.token_id]


async def test_statistics_count_live_records(storage: AuthStorage) -> None:
    """get_statistics counts users, live tokens, live sessions and kv entries."""
    await storage.create_user(make_user("ivy"))
    for _ in range(3):
        await storage.store_token(make_token("ivy"))
    await storage.store_token(make_token("ivy", ttl=-5, refresh_ttl=-1))
    await storage.store_session(make_session("ivy"))
    await storage.store_session(make_session("ivy", ttl=-1))
    await storage.kv_set("stat", b"1", ttl=60)
    stats = await storage.get_statistics()
    assert stats.backend == storage.name
    assert (stats.total_users, stats.total_tokens, stats.active_sessions) == (1, 3, 1)
    assert stats.kv_entries == 1


async def test_bulk_iterators_cover_everything(storage: AuthStorage) -> None:
    """The bulk iterators yield every live record exactly once, in bounded batches."""
    for i in range(25):
        await storage.create_user(make_user(f"bulk{i}"))
        await storage.store_token(make_token(f"bulk{i}"))
        await storage.store_session(make_session(f"bulk{i}"))
        await storage.kv_set(f"bulk{i}", str(i).encode(), ttl=60)
        await storage.append_audit(AuditEvent(action="login", outcome=True, user_id=f"bulk{i}"))
    await storage.store_token(make_token("bulk0", ttl=-5, refresh_ttl=-1))

    async def collect(iterator: object) -> list[object]:
        out: list[object] = []
        async for batch in iterator:  # type: ignore[attr-defined]
            assert 0 < len(batch) <= 7
            out.extend(batch)
        return out

    users = await collect(storage.iter_users(7))
    tokens = await collect(storage.iter_tokens(7))
    sessions = await collect(storage.iter_sessions(7))
    kv = await collect(storage.iter_kv(7))
    audit = await collect(storage.iter_audit(7))
    assert len({u.user_id for u in users}) == len(users) == 25  # type: ignore[attr-defined]
    assert len({t.token_id for t in tokens}) == len(tokens) == 25  # type: ignore[attr-defined]
    assert len({s.session_id for s in sessions}) == len(sessions) == 25  # type: ignore[attr-defined]
    assert sorted(e.key for e in kv) == sorted(f"bulk{i}" for i in range(25))  # type: ignore[attr-defined]
    assert len(audit) == 25
    stamps = [e.timestamp for e in audit]  # type: ignore[attr-defined]
    assert stamps == sorted(stamps)


async def test_open_and_close_are_idempotent(storage: AuthStorage) -> None:
    """open() twice is harmless; data survives until the test's own close."""
    await storage.open()
    await storage.kv_set("still", b"here", ttl=60)
    assert await storage.kv_get("still") == b"here"


async def test_reopen_after_close(storage: AuthStorage) -> None:
    """close() then open() reconnects; what was stored is still there (memory keeps it too)."""
    await storage.kv_set("survivor", b"yes", ttl=60)
    await storage.close()
    await storage.close()
    await storage.open()
    assert await storage.kv_get("survivor") == b"yes"


async def test_call_timeout_is_declared(storage: AuthStorage) -> None:
    """Every backend says how long one call may take (SupportsCallTimeout): a positive number
    of seconds, or None for one that does no I/O (memory, and the cache in front of it)."""
    assert isinstance(storage, SupportsCallTimeout)
    bound = storage.call_timeout
    assert bound is None or bound > 0
    assert (bound is None) == ("memory" in storage.name)


async def test_a_burst_of_concurrent_calls_is_served_not_shed(storage: AuthStorage) -> None:
    """3,000 reads started at once on the default settings all get their answer: the waiting
    bound (1,000 per pooled connection) sheds load only far past what a healthy server clears
    (at 100 per connection, 1,000 concurrent logins had 995 refused on Redis)."""
    await storage.kv_set("burst", b"x", 60)
    answers = await asyncio.gather(*(storage.kv_get("burst") for _ in range(3000)))
    assert answers == [b"x"] * 3000
