"""AuthFramework flows, on every backend: register, login, verify, refresh, revoke, sessions."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta
from typing import Any

import pytest

from authmw import (
    AccountLocked,
    AuthConfig,
    AuthFramework,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    RefreshTokenReused,
    UserExists,
)
from authmw.storage import AuthStorage, InMemoryStorage
from authmw.testing import fast_password_hasher
from tests.conftest import TEST_SECRET
from tests.support.factories import forge


def make_auth(storage: AuthStorage, **overrides: object) -> AuthFramework:
    settings: dict[str, object] = {
        "secret_key": TEST_SECRET,
        "password_hasher": fast_password_hasher(),
    }
    settings.update(overrides)
    return AuthFramework(storage, AuthConfig(**settings))  # type: ignore[arg-type]


# -- registration and login ----------------------------------------------------------------


async def test_register_then_authenticate(auth: AuthFramework) -> None:
    """A registered user logs in and gets an access and a refresh token that verify."""
    user = await auth.register_user("user123", "password", roles=["admin"], permissions=["read"])
    assert user.password_hash.startswith("$argon2id$")
    token = await auth.authenticate("user123", "password")
    assert token.access_token and token.refresh_token
    assert token.user_id == "user123" and token.token_id in token.access_token
    assert token.expires_at > token.created_at
    verified = await auth.verify(token.access_token)
    assert verified.token_id == token.token_id
    assert verified.roles == ("admin",) and verified.permissions == ("read",)


async def test_wrong_password_and_unknown_user_look_alike(auth: AuthFramework) -> None:
    """Wrong passwords and unknown users both raise InvalidCredentials naming the user id."""
    await auth.register_user("alice", "correct horse")
    with pytest.raises(InvalidCredentials) as wrong:
        await auth.authenticate("alice", "wrong horse")
    with pytest.raises(InvalidCredentials) as unknown:
        await auth.authenticate("mallory", "whatever1")
    assert wrong.value.user_id == "alice" and unknown.value.user_id == "mallory"
    assert "horse" not in str(wrong.value)


async def test_duplicate_registration_race(auth: AuthFramework) -> None:
    """50 concurrent registrations of one id: exactly one wins, the rest raise UserExists."""
    results = await asyncio.gather(
        *(auth.register_user("dup", f"password{i}") for i in range(50)), return_exceptions=True
    )
    winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, UserExists) for r in results if isinstance(r, BaseException))
    token = await auth.authenticate("dup", f"password{winners[0]}")
    assert token.user_id == "dup"


async def test_guide_concurrent_example(auth: AuthFramework) -> None:
    """The guide's 100 concurrent register-then-authenticate tasks all succeed."""

    async def one(i: int) -> str:
        await auth.register_user(f"user{i}", "password")
        return (await auth.authenticate(f"user{i}", "password")).access_token

    tokens = await asyncio.gather(*(one(i) for i in range(100)))
    assert len(set(tokens)) == 100
    verified = await asyncio.gather(*(auth.verify(t) for t in tokens))
    assert sorted(v.user_id for v in verified) == sorted(f"user{i}" for i in range(100))


@pytest.mark.parametrize(
    ("user_id", "password", "field"),
    [
        ("", "password", "user_id"),
        ("x" * 256, "password", "user_id"),
        ("   ", "password", "user_id"),
        ("bad\x00id", "password", "user_id"),
        ("zero\u200bwidth", "password", "user_id"),
        ("tab\tid", "password", "user_id"),
        ("bob", "", "password"),
        ("bob", "tiny12", "password"),
        ("bob", "p" * 1025, "password"),
        ("bob", "é" * 513, "password"),
        ("bob", "pass\x00word", "password"),
        ("bob", "pass\ud800word", "password"),
    ],
)
async def test_register_rejects_bad_input(
    auth: AuthFramework, user_id: str, password: str, field: str
) -> None:
    """Empty, oversized or control-character ids and out-of-bounds passwords raise InvalidInput."""
    with pytest.raises(InvalidInput) as info:
        await auth.register_user(user_id, password)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert password not in str(info.value) or not password


async def test_login_rejects_oversized_input(auth: AuthFramework) -> None:
    """Logging in with a huge password or user id is refused before any hashing."""
    with pytest.raises(InvalidInput):
        await auth.authenticate("bob", "p" * 5000)
    with pytest.raises(InvalidInput):
        await auth.authenticate("u" * 1000, "password")


async def test_non_string_input_is_refused(auth: AuthFramework) -> None:
    """Non-string ids and passwords raise InvalidInput, not TypeError."""
    with pytest.raises(InvalidInput):
        await auth.register_user(123, "password")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await auth.authenticate("bob", None)  # type: ignore[arg-type]


async def test_lockout_after_failures(storage: AuthStorage) -> None:
    """After max_failed_logins failures the account locks, even for the right password."""
    auth = make_auth(storage, max_failed_logins=3, lockout_duration=60)
    await auth.register_user("carol", "right password")
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await auth.authenticate("carol", "wrong password")
    with pytest.raises(AccountLocked) as third:
        await auth.authenticate("carol", "wrong password")
    assert third.value.user_id == "carol" and 0 < third.value.retry_after <= 60
    with pytest.raises(AccountLocked) as locked:
        await auth.authenticate("carol", "right password")
    assert locked.value.retry_after <= 60
    actions = [e.action for e in await storage.query_audit(user_id="carol")]
    assert "account.lockout" in actions


async def test_lockout_expires(storage: AuthStorage) -> None:
    """A lockout ends after lockout_duration and the right password works again."""
    auth = make_auth(storage, max_failed_logins=1, lockout_duration=0.3)
    await auth.register_user("dan", "right password")
    with pytest.raises(AccountLocked):
        await auth.authenticate("dan", "wrong password")
    await asyncio.sleep(0.45)
    assert (await auth.authenticate("dan", "right password")).user_id == "dan"


async def test_success_resets_failure_count(storage: AuthStorage) -> None:
    """A successful login clears earlier failures."""
    auth = make_auth(storage, max_failed_logins=2)
    await auth.register_user("erin", "right password")
    with pytest.raises(InvalidCredentials):
        await auth.authenticate("erin", "wrong password")
    await auth.authenticate("erin", "right password")
    with pytest.raises(InvalidCredentials):
        await auth.authenticate("erin", "wrong password")


async def test_unknown_users_lock_out_too(storage: AuthStorage) -> None:
    """Lockout does not reveal whether a user exists: unknown ids lock the same way."""
    auth = make_auth(storage, max_failed_logins=2)
    with pytest.raises(InvalidCredentials):
        await auth.authenticate("ghost", "password1")
    with pytest.raises(AccountLocked):
        await auth.authenticate("ghost", "password1")


async def test_rehash_on_login(storage: AuthStorage) -> None:
    """A hash made with old parameters is replaced by a current one at the next login."""
    from argon2 import PasswordHasher

    old = make_auth(
        storage, password_hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    await old.register_user("fay", "password")
    before = await storage.get_user("fay")
    new = make_auth(
        storage, password_hasher=PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    )
    await new.authenticate("fay", "password")
    after = await storage.get_user("fay")
    assert before is not None and after is not None
    assert after.password_hash != before.password_hash and "t=2" in after.password_hash
    await new.authenticate("fay", "password")


async def test_disabled_user_cannot_log_in(auth: AuthFramework) -> None:
    """A user marked inactive is refused like a wrong password."""
    user = await auth.register_user("gus", "password")
    await auth.storage.update_user(dataclasses.replace(user, is_active=False))
    with pytest.raises(InvalidCredentials):
        await auth.authenticate("gus", "password")


# -- verify --------------------------------------------------------------------------------


async def test_verify_refusals(auth: AuthFramework) -> None:
    """Garbage, forged, unknown and revoked tokens each raise InvalidToken with its reason."""
    await auth.register_user("hal", "password")
    token = await auth.authenticate("hal", "password")
    cases = {
        "": "malformed",
        "garbage": "malformed",
        "x" * 5000: "malformed",
        token.refresh_token: "malformed",
        forge(token.access_token): "forged",
    }
    for value, reason in cases.items():
        with pytest.raises(InvalidToken) as info:
            await auth.verify(value)
        assert info.value.reason == reason
    # Right shape and tag, wrong secret part: unknown.
    other = await auth.authenticate("hal", "password")
    body = token.access_token.split(".")
    swapped = ".".join([body[0], body[1], other.access_token.split(".")[2]])
    with pytest.raises(InvalidToken) as info:
        await auth.verify(_retag(auth, swapped))
    assert info.value.reason == "unknown"
    assert await auth.revoke(token.access_token) is True
    with pytest.raises(InvalidToken) as info:
        await auth.verify(token.access_token)
    assert info.value.reason == "revoked"


def _retag(auth: AuthFramework, body: str) -> str:
    """Tag a token body with the framework's own key (simulates a leaked selector)."""
    return f"{body}.{auth._codec._tag(auth._codec._blake_keys[0], body)}"


async def test_verify_expired(storage: AuthStorage) -> None:
    """An access token past its lifetime is refused as expired while its refresh still works."""
    auth = make_auth(storage, access_token_ttl=0.2)
    await auth.register_user("ida", "password")
    token = await auth.authenticate("ida", "password")
    await auth.verify(token.access_token)
    await asyncio.sleep(0.3)
    with pytest.raises(InvalidToken) as info:
        await auth.verify(token.access_token)
    assert info.value.reason == "expired"
    renewed = await auth.refresh(token.refresh_token)
    assert (await auth.verify(renewed.access_token)).user_id == "ida"


async def test_forged_tokens_never_touch_storage(storage: AuthStorage) -> None:
    """Tokens minted under another key are refused as forged without a storage read."""
    auth = make_auth(storage)
    attacker = make_auth(storage, secret_key="another-key-entirely-0123456789abcdef")
    await auth.register_user("jo", "password")
    forged = await attacker.authenticate("jo", "password")
    calls = 0
    original = storage.get_token

    async def counting(token_id: str):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return await original(token_id)

    storage.get_token = counting  # type: ignore[method-assign]
    try:
        for _ in range(50):
            with pytest.raises(InvalidToken) as info:
                await auth.verify(forged.access_token)
            assert info.value.reason == "forged"
    finally:
        del storage.get_token  # type: ignore[method-assign]
    assert calls == 0


async def test_key_rotation(storage: AuthStorage) -> None:
    """Tokens signed by an old key verify when it is a fallback, and not after it is dropped."""
    old = make_auth(storage, secret_key="old-key-0123456789abcdef0123456789")
    await old.register_user("kim", "password")
    token = await old.authenticate("kim", "password")
    rotated = make_auth(
        storage,
        secret_key="new-key-0123456789abcdef0123456789",
        secret_key_fallbacks=["old-key-0123456789abcdef0123456789"],
    )
    assert (await rotated.verify(token.access_token)).user_id == "kim"
    fresh = await rotated.authenticate("kim", "password")
    dropped = make_auth(storage, secret_key="new-key-0123456789abcdef0123456789")
    with pytest.raises(InvalidToken) as info:
        await dropped.verify(token.access_token)
    assert info.value.reason == "forged"
    assert (await dropped.verify(fresh.access_token)).user_id == "kim"


async def test_verify_cache_still_sees_revocation(auth: AuthFramework) -> None:
    """A token verified before is refused right after revocation (storage asked each time)."""
    await auth.register_user("lee", "password")
    token = await auth.authenticate("lee", "password")
    for _ in range(3):
        await auth.verify(token.access_token)
    await auth.storage.update_token(
        dataclasses.replace(
            await auth.verify(token.access_token),
            revoked_at=token.created_at,
            revoke_reason="revoked",
        )
    )
    with pytest.raises(InvalidToken) as info:
        await auth.verify(token.access_token)
    assert info.value.reason == "revoked"
    await auth.revoke_user("lee")
    with pytest.raises(InvalidToken) as gone:
        await auth.verify(token.access_token)
    assert gone.value.reason == "unknown"


# -- refresh -------------------------------------------------------------------------------


async def test_refresh_rotates(auth: AuthFramework) -> None:
    """Refresh issues a new pair; the old access and refresh tokens stop working."""
    await auth.register_user("max", "password", roles=["r1"])
    first = await auth.authenticate("max", "password")
    second = await auth.refresh(first.refresh_token)
    assert second.token_id != first.token_id and second.family_id == first.family_id
    assert second.roles == ("r1",)
    assert (await auth.verify(second.access_token)).user_id == "max"
    with pytest.raises(InvalidToken) as info:
        await auth.verify(first.access_token)
    assert info.value.reason == "revoked"
    third = await auth.refresh(second.refresh_token)
    assert (await auth.verify(third.access_token)).family_id == first.family_id


async def test_refresh_reuse_revokes_family(auth: AuthFramework) -> None:
    """A refresh token used twice raises RefreshTokenReused and kills the whole family."""
    await auth.register_user("ned", "password")
    first = await auth.authenticate("ned", "password")
    other_login = await auth.authenticate("ned", "password")
    second = await auth.refresh(first.refresh_token)
    with pytest.raises(RefreshTokenReused) as info:
        await auth.refresh(first.refresh_token)
    assert info.value.reason == "reused" and info.value.user_id == "ned"
    assert isinstance(info.value, InvalidToken)
    for dead in (second.access_token,):
        with pytest.raises(InvalidToken):
            await auth.verify(dead)
    with pytest.raises(InvalidToken):
        await auth.refresh(second.refresh_token)
    assert (await auth.verify(other_login.access_token)).user_id == "ned"
    events = await auth.storage.query_audit(user_id="ned", action="token.refresh")
    assert any(not e.outcome and e.metadata.get("reason") == "reused" for e in events)


async def test_concurrent_refresh_has_one_winner(auth: AuthFramework) -> None:
    """Ten concurrent refreshes of one token: one succeeds, the rest are reuse."""
    await auth.register_user("oli", "password")
    token = await auth.authenticate("oli", "password")
    results = await asyncio.gather(
        *(auth.refresh(token.refresh_token) for _ in range(10)), return_exceptions=True
    )
    # On a Redis cluster the winner checks the family's revocation mark after its write (the
    # mark is in another slot), so the losers' reuse detection may refuse it too.
    cluster = getattr(auth.storage, "mode", None) == "cluster"
    assert sum(not isinstance(r, BaseException) for r in results) in ((0, 1) if cluster else (1,))
    assert all(isinstance(r, InvalidToken) for r in results if isinstance(r, BaseException))


async def test_reuse_during_refresh_of_newest_leaves_family_dead(auth: AuthFramework) -> None:
    """Reuse detection racing a refresh of the family's newest token: no pair escapes."""
    await auth.register_user("ola", "password")
    escaped = 0
    for _ in range(50):
        first = await auth.authenticate("ola", "password")
        newest = await auth.refresh(first.refresh_token)
        results = await asyncio.gather(
            auth.refresh(first.refresh_token),
            auth.refresh(newest.refresh_token),
            return_exceptions=True,
        )
        assert isinstance(results[0], RefreshTokenReused)
        issued = [first, newest, *(r for r in results if not isinstance(r, BaseException))]
        for token in issued:
            try:
                await auth.verify(token.access_token)
            except InvalidToken:
                continue
            escaped += 1
        for token in issued[2:]:
            with pytest.raises(InvalidToken):
                await auth.refresh(token.refresh_token)
    assert escaped == 0


async def test_refresh_refusals(auth: AuthFramework) -> None:
    """Access tokens, junk and revoked refresh tokens are refused by refresh."""
    await auth.register_user("pat", "password")
    token = await auth.authenticate("pat", "password")
    with pytest.raises(InvalidToken) as info:
        await auth.refresh(token.access_token)
    assert info.value.reason == "malformed"
    with pytest.raises(InvalidToken):
        await auth.refresh("rt1.junk")
    assert await auth.revoke(token.refresh_token) is True
    with pytest.raises(InvalidToken) as revoked:
        await auth.refresh(token.refresh_token)
    assert revoked.value.reason == "revoked"


async def test_refresh_for_deleted_user_is_refused(auth: AuthFramework) -> None:
    """A refresh token of a user deleted since login no longer works."""
    await auth.register_user("quin", "password")
    token = await auth.authenticate("quin", "password")
    await auth.storage.delete_user("quin")
    with pytest.raises(InvalidToken) as info:
        await auth.refresh(token.refresh_token)
    assert info.value.reason == "revoked"


# -- revoke --------------------------------------------------------------------------------


async def test_revoke_is_idempotent(auth: AuthFramework) -> None:
    """Revoking twice returns True then False; forged input raises."""
    await auth.register_user("ray", "password")
    token = await auth.authenticate("ray", "password")
    assert await auth.revoke(token.access_token) is True
    assert await auth.revoke(token.access_token) is False
    with pytest.raises(InvalidToken):
        await auth.revoke("not a token")
    events = await auth.storage.query_audit(user_id="ray", action="token.revoke")
    assert len(events) == 1


async def test_revoke_user_ends_everything(auth: AuthFramework) -> None:
    """revoke_user kills every token and session of one user and leaves others alone."""
    await auth.register_user("sam", "password")
    await auth.register_user("tia", "password")
    tokens = [await auth.authenticate("sam", "password") for _ in range(3)]
    sid, _ = await auth.create_session("sam")
    keep = await auth.authenticate("tia", "password")
    assert await auth.revoke_user("sam") == 4
    for token in tokens:
        with pytest.raises(InvalidToken):
            await auth.verify(token.access_token)
        with pytest.raises(InvalidToken):
            await auth.refresh(token.refresh_token)
    with pytest.raises(InvalidToken):
        await auth.get_session(sid)
    assert (await auth.verify(keep.access_token)).user_id == "tia"


# -- sessions ------------------------------------------------------------------------------


async def test_session_lifecycle(auth: AuthFramework) -> None:
    """A session is created, read, saved with new data and destroyed."""
    await auth.register_user("uma", "password", roles=["staff"])
    sid, session = await auth.create_session("uma", {"cart": [1]})
    assert session.roles == ("staff",)
    loaded = await auth.get_session(sid)
    assert loaded.user_id == "uma" and loaded.data == {"cart": [1]}
    await auth.save_session(loaded, {"cart": [1, 2]})
    assert (await auth.get_session(sid)).data == {"cart": [1, 2]}
    assert await auth.destroy_session(sid) is True
    assert await auth.destroy_session(sid) is False
    with pytest.raises(InvalidToken) as info:
        await auth.get_session(sid)
    assert info.value.reason == "unknown"


async def test_session_refusals(auth: AuthFramework) -> None:
    """Junk, forged and access-token-shaped session ids are refused."""
    await auth.register_user("val", "password")
    token = await auth.authenticate("val", "password")
    sid, _ = await auth.create_session("val")
    for bad, reason in (
        ("junk", "malformed"),
        (token.access_token, "malformed"),
        (forge(sid), "forged"),
    ):
        with pytest.raises(InvalidToken) as info:
            await auth.get_session(bad)
        assert info.value.reason == reason


async def test_remembered_ids_keep_their_kind_and_still_ask_storage(auth: AuthFramework) -> None:
    """Verified once, an access token is still malformed as a session id (and a session id
    as an access token), and a session id is still looked up: gone from storage, refused."""
    await auth.register_user("wes", "password")
    token = (await auth.authenticate("wes", "password")).access_token
    sid, session = await auth.create_session("wes")
    await auth.verify(token)
    await auth.get_session(sid)
    for call, wrong in ((auth.get_session, token), (auth.verify, sid)):
        with pytest.raises(InvalidToken) as info:
            await call(wrong)
        assert info.value.reason == "malformed"
    await auth.storage.delete_session(session.session_id)
    with pytest.raises(InvalidToken) as info:
        await auth.get_session(sid)
    assert info.value.reason == "unknown"


async def test_verified_memo_stays_within_its_bound() -> None:
    """With ``verified_token_cache=2``, tokens and session ids verified past the bound evict
    the oldest memo entries and every one still verifies."""
    auth = make_auth(InMemoryStorage(), verified_token_cache=2)
    await auth.register_user("xia", "password")
    tokens = [(await auth.issue_tokens("xia")).access_token for _ in range(4)]
    sessions = [(await auth.create_session("xia"))[0] for _ in range(4)]
    for _ in range(2):
        for token in tokens:
            assert (await auth.verify(token)).user_id == "xia"
        for session_id in sessions:
            assert (await auth.get_session(session_id)).user_id == "xia"
    assert len(auth._verified) <= 2 and len(auth._verified_sessions) <= 2
    await auth.close()


async def test_session_idle_timeout(storage: AuthStorage) -> None:
    """A session unused for longer than the idle timeout is gone."""
    auth = make_auth(storage, session_idle_timeout=0.3, session_touch_interval=0)
    sid, _ = await auth.create_session("wes")
    await asyncio.sleep(0.15)
    await auth.get_session(sid)  # activity moves the idle deadline
    await asyncio.sleep(0.2)
    await auth.get_session(sid)
    await asyncio.sleep(0.45)
    with pytest.raises(InvalidToken):
        await auth.get_session(sid)


async def test_session_absolute_timeout(storage: AuthStorage) -> None:
    """Activity cannot keep a session alive past its absolute timeout."""
    auth = make_auth(
        storage, session_idle_timeout=10, session_absolute_timeout=0.4, session_touch_interval=0
    )
    sid, session = await auth.create_session("xia")
    assert session.expires_at == session.absolute_expires_at
    deadline = time.monotonic() + 0.8
    with pytest.raises(InvalidToken):
        while time.monotonic() < deadline:
            await auth.get_session(sid)
            await asyncio.sleep(0.05)


async def test_session_touch_is_throttled(storage: AuthStorage) -> None:
    """last_accessed is written at most once per touch interval, not on every read."""
    auth = make_auth(storage, session_touch_interval=3600)
    sid, created = await auth.create_session("yan")
    for _ in range(5):
        loaded = await auth.get_session(sid)
    assert loaded.last_accessed == created.last_accessed
    auth2 = make_auth(storage, session_touch_interval=timedelta(0))
    touched = await auth2.get_session(sid)
    assert touched.last_accessed > created.last_accessed


# -- lifecycle and audit -------------------------------------------------------------------


async def test_seed_example_auto_opens(storage: AuthStorage) -> None:
    """The guide's example runs without an explicit open()."""
    auth = make_auth(storage)
    await auth.register_user("user123", "password")
    token = await auth.authenticate("user123", "password")
    assert token.access_token


async def test_async_with(storage: AuthStorage) -> None:
    """async with opens and closes the framework."""
    async with make_auth(storage) as auth:
        await auth.register_user("zed", "password")
        assert (await auth.authenticate("zed", "password")).user_id == "zed"


async def test_audit_trail(auth: AuthFramework) -> None:
    """Login success and failure, issue, refresh and revoke each leave an audit event."""
    await auth.register_user("amy", "password")
    with pytest.raises(InvalidCredentials):
        await auth.authenticate("amy", "nope-nope", ip_address="10.0.0.1", user_agent="ua")
    token = await auth.authenticate("amy", "password", ip_address="10.0.0.1")
    new = await auth.refresh(token.refresh_token)
    await auth.revoke(new.access_token)
    events = list(reversed(await auth.storage.query_audit(user_id="amy")))
    summary = [(e.action, e.outcome) for e in events]
    assert summary == [
        ("user.register", True),
        ("login", False),
        ("login", True),
        ("token.issue", True),
        ("token.refresh", True),
        ("token.revoke", True),
    ]
    assert events[1].ip_address == "10.0.0.1" and events[1].user_agent == "ua"
    for event in events:
        text = event.to_json()
        assert "password" not in text and token.access_token not in text
        assert token.refresh_token.split(".")[2] not in text


async def test_audit_can_be_disabled(storage: AuthStorage) -> None:
    """With audit_log=False nothing is written to the audit log."""
    auth = make_auth(storage, audit_log=False)
    await auth.register_user("ben", "password")
    await auth.authenticate("ben", "password")
    assert await storage.query_audit() == []


async def test_forged_tokens_are_refused_while_storage_is_down() -> None:
    """Junk and forged tokens get InvalidToken (401 at the edge), not StorageUnavailable, even
    when the storage could never be opened: the keyed tag is checked first."""
    from authmw.storage.redis import RedisConfig, RedisStorage

    down = RedisStorage(RedisConfig(url="redis://127.0.0.1:1/0", timeout=0.5, retry_attempts=1))
    auth = AuthFramework(down, AuthConfig(secret_key=TEST_SECRET))
    other = AuthFramework(InMemoryStorage(), AuthConfig(secret_key="another-key-" + "x" * 32))
    await other.register_user("eve", "password")
    foreign = (await other.authenticate("eve", "password")).access_token
    for bad, reason in (("junk", "malformed"), (foreign, "forged")):
        with pytest.raises(InvalidToken) as info:
            await auth.verify(bad)
        assert info.value.reason == reason
    with pytest.raises(InvalidToken):
        await auth.get_session("st1.junk")
    await other.close()


async def test_open_prepares_the_dummy_hash() -> None:
    """After open(), the hash that unknown-user logins burn exists already, so the first such
    login costs what later ones do (no timing signal on a fresh process)."""
    auth = make_auth(InMemoryStorage())
    await auth.open()
    assert auth._passwords._dummy_hash is not None
    await auth.close()


async def test_tokens_minted_before_the_blake2b_tags_keep_working(auth: AuthFramework) -> None:
    """An access token and a session id with a version 1 (HMAC-SHA256) tag, as minted before
    version 2, still verify on every backend; only the tag differs, the stored digest is one."""
    import hashlib
    import hmac

    def as_v1(token: str) -> str:
        kind, selector, verifier, _ = token.split(".")
        body = f"{kind[:2]}1.{selector}.{verifier}"
        key = hmac.digest(TEST_SECRET.encode(), b"authmw/token-tag/v1", "sha256")
        return f"{body}.{hmac.digest(key, body.encode(), hashlib.sha256)[:16].hex()}"

    await auth.register_user("v1-user", "password-123")
    pair = await auth.authenticate("v1-user", "password-123")
    assert pair.access_token.startswith("at2.")
    assert (await auth.verify(as_v1(pair.access_token))).user_id == "v1-user"
    session_id, _ = await auth.create_session("v1-user", {})
    assert (await auth.get_session(as_v1(session_id))).user_id == "v1-user"


async def test_memory_storage_answers_verify_without_a_coroutine() -> None:
    """In-memory storage serves the synchronous fast path (verify_nowait, get_session_nowait)
    with the same answers as the async reads: the WSGI front needs no loop thread for it."""
    auth = AuthFramework(InMemoryStorage(), AuthConfig(secret_key=TEST_SECRET))
    async with auth:
        await auth.register_user("fast", "password-123")
        pair = await auth.authenticate("fast", "password-123")
        session_id, _ = await auth.create_session("fast", {"n": 1})
        assert auth.can_answer_nowait
        assert auth.verify_nowait(pair.access_token) == await auth.verify(pair.access_token)
        nowait = auth.get_session_nowait(session_id)
        assert nowait is not None and nowait.data == {"n": 1}
        await auth.revoke(pair.access_token)
        with pytest.raises(InvalidToken):
            auth.verify_nowait(pair.access_token)


@pytest.fixture(params=["redis_storage", "postgres_storage"])
def uncached_storage(request: pytest.FixtureRequest) -> AuthStorage:
    """Redis and PostgreSQL without a cache: storages without a memory path."""
    backend: AuthStorage = request.getfixturevalue(request.param)
    return backend


async def test_uncached_verify_reads_credential_and_owner_in_one_call(
    uncached_storage: AuthStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a cache, verify and get_session read the credential with its owner in one
    storage call (one round trip), and still follow the account: new roles, then disable."""
    storage = uncached_storage
    auth = AuthFramework(
        storage, AuthConfig(secret_key=TEST_SECRET, password_hasher=fast_password_hasher())
    )
    await auth.open()
    await auth.register_user("alice", "password", roles=("user",))
    token = await auth.issue_tokens("alice")
    session_id, _ = await auth.create_session("alice")
    calls: list[str] = []
    for name in ("get_token", "get_session", "get_user"):
        original = getattr(storage, name)

        async def spy(*args: object, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return await _original(*args)

        monkeypatch.setattr(storage, name, spy)
    assert (await auth.verify(token.access_token)).roles == ("user",)
    assert (await auth.get_session(session_id)).user_id == "alice"
    assert calls == []
    await auth.set_roles("alice", ["admin"])
    assert (await auth.verify(token.access_token)).roles == ("admin",)
    assert (await auth.get_session(session_id)).roles == ("admin",)
    await auth.disable_user("alice")
    with pytest.raises(InvalidToken):
        await auth.verify(token.access_token)
    with pytest.raises(InvalidToken):
        await auth.get_session(session_id)
    await auth.close()
