"""Account management on AuthFramework (authmw/_accounts.py), on every backend."""

from __future__ import annotations

import dataclasses

import pytest

from authmw import AuthConfig, AuthFramework
from authmw._accounts import normalize_user_id
from authmw.errors import (
    AccountDisabled,
    AccountLocked,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    UnknownUser,
    UserExists,
)
from authmw.storage import AuthStorage
from authmw.testing import fast_password_hasher
from tests.conftest import TEST_SECRET

PASSWORD = "correct horse"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Alice", "alice"),
        ("alice ", "alice"),
        ("\uff41lice", "alice"),  # full-width a
        (" ALICE\t", "alice"),
        ("Stra\u00dfe", "strasse"),
        ("caf\u0065\u0301", "caf\u00e9"),  # combining accent composes
    ],
)
def test_user_id_rule(given: str, stored: str) -> None:
    """NFKC, casefold and strip turn look-alike spellings into one id."""
    assert normalize_user_id(given) == stored
    assert normalize_user_id(stored) == stored


async def test_spellings_are_one_account(auth: AuthFramework) -> None:
    """'Alice', 'alice ' and full-width 'ａlice' register, log in and lock out as one user."""
    await auth.register_user("Alice", PASSWORD)
    with pytest.raises(UserExists):
        await auth.register_user("\uff41lice", PASSWORD)
    token = await auth.authenticate("alice ", PASSWORD)
    assert token.user_id == "alice"
    spellings = ["Alice", "alice ", "\uff41lice", "ALICE", "alice"]
    with pytest.raises(AccountLocked):
        for spelling in spellings:
            with pytest.raises(InvalidCredentials):
                await auth.authenticate(spelling, "wrong password")
    with pytest.raises(AccountLocked):
        await auth.authenticate("alice", PASSWORD)
    await auth.unlock_user("ALICE")
    assert (await auth.authenticate("alice", PASSWORD)).user_id == "alice"


async def test_get_and_list_users(auth: AuthFramework) -> None:
    """get_user finds by any spelling; list_users pages and filters; bad arguments are typed."""
    for name in ("carol", "bob", "dave", "erin"):
        await auth.register_user(name, PASSWORD, roles=["admin"] if name < "c" else [])
    assert (await auth.get_user("Bob ")).roles == ("admin",)
    with pytest.raises(UnknownUser):
        await auth.get_user("nobody")
    first = await auth.list_users(limit=2)
    rest = await auth.list_users(after=first[-1].user_id, limit=2)
    assert [u.user_id for u in first + rest] == ["bob", "carol", "dave", "erin"]
    assert [u.user_id for u in await auth.list_users(role="admin")] == ["bob"]
    await auth.disable_user("dave")
    assert [u.user_id for u in await auth.list_users(active=False)] == ["dave"]
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": True}, {"active": "yes"}):
        with pytest.raises(InvalidInput):
            await auth.list_users(**bad)  # type: ignore[arg-type]


async def test_removed_role_is_refused_on_next_request(auth: AuthFramework) -> None:
    """A role removed with set_roles is gone from an existing token and session at once."""
    await auth.register_user("alice", PASSWORD, roles=["admin", "staff"], permissions=["x"])
    token = await auth.authenticate("alice", PASSWORD)
    session_id, _ = await auth.create_session("alice")
    assert (await auth.verify(token.access_token)).roles == ("admin", "staff")
    assert (await auth.get_session(session_id)).roles == ("admin", "staff")
    await auth.set_roles("alice", ["staff"])
    await auth.set_permissions("alice", [])
    verified = await auth.verify(token.access_token)
    assert verified.roles == ("staff",) and verified.permissions == ()
    session = await auth.get_session(session_id)
    assert session.roles == ("staff",) and session.permissions == ()
    refreshed = await auth.refresh(token.refresh_token)
    assert refreshed.roles == ("staff",)
    with pytest.raises(InvalidInput):
        await auth.set_roles("alice", "admin")  # one string, not a list
    with pytest.raises(UnknownUser):
        await auth.set_roles("nobody", ["admin"])


async def test_disabled_user_is_refused_everywhere(auth: AuthFramework) -> None:
    """After disable_user the user's token, refresh token and session are refused; enabling
    lets the user log in again but does not bring the old credentials back."""
    await auth.register_user("alice", PASSWORD)
    token = await auth.authenticate("alice", PASSWORD)
    session_id, _ = await auth.create_session("alice")
    await auth.verify(token.access_token)
    await auth.get_session(session_id)
    assert not (await auth.disable_user("alice")).is_active
    with pytest.raises(InvalidToken):
        await auth.verify(token.access_token)
    with pytest.raises(InvalidToken):
        await auth.get_session(session_id)
    with pytest.raises(InvalidToken):
        await auth.refresh(token.refresh_token)
    with pytest.raises(InvalidCredentials):
        await auth.authenticate("alice", PASSWORD)
    with pytest.raises(AccountDisabled):
        await auth.issue_tokens("alice")
    await auth.enable_user("alice")
    with pytest.raises(InvalidToken):
        await auth.verify(token.access_token)
    assert (await auth.authenticate("alice", PASSWORD)).user_id == "alice"


async def test_disabled_user_is_refused_even_if_credentials_survive(
    auth: AuthFramework,
) -> None:
    """A token that outlived a disable (a login racing with it, a write made straight to the
    storage) is still refused: verify checks the account itself, even after remembering it."""
    await auth.register_user("alice", PASSWORD)
    await auth.disable_user("alice")
    await auth.enable_user("alice")
    token = await auth.authenticate("alice", PASSWORD)
    for _ in range(2):  # the account check is remembered now: the change must still show
        assert await auth.verify(token.access_token)
        assert auth.verify_nowait(token.access_token) is not None or not auth.can_answer_nowait
    user = await auth.get_user("alice")
    await auth.storage.update_user(dataclasses.replace(user, is_active=False))
    with pytest.raises(InvalidToken):
        await auth.verify(token.access_token)


async def test_delete_user_removes_credentials_keeps_audit(auth: AuthFramework) -> None:
    """delete_user removes the record, tokens, sessions and lockout; the audit history stays."""
    await auth.register_user("alice", PASSWORD)
    token = await auth.authenticate("alice", PASSWORD)
    session_id, _ = await auth.create_session("alice")
    with pytest.raises(InvalidCredentials):
        await auth.authenticate("alice", "wrong password")
    assert await auth.delete_user("Alice") == 2
    with pytest.raises(InvalidToken):
        await auth.verify(token.access_token)
    with pytest.raises(InvalidToken):
        await auth.get_session(session_id)
    with pytest.raises(UnknownUser):
        await auth.get_user("alice")
    with pytest.raises(UnknownUser):
        await auth.delete_user("alice")
    assert await auth.storage.kv_get("authmw:login-failures:alice") is None
    actions = {e.action for e in await auth.storage.query_audit(user_id="alice", limit=100)}
    assert {"user.register", "login", "user.delete"} <= actions
    # The same id registered again starts clean: nothing of the old account carries over.
    await auth.register_user("alice", PASSWORD)
    assert await auth.storage.list_user_tokens("alice") == []


async def test_password_change_logs_out_other_sessions(auth: AuthFramework) -> None:
    """change_password checks the old password, logs out every other session and token, and
    keeps the one named by ``keep``."""
    await auth.register_user("alice", PASSWORD)
    current, _ = await auth.create_session("alice")
    other, _ = await auth.create_session("alice")
    token = await auth.authenticate("alice", PASSWORD)
    with pytest.raises(InvalidCredentials):
        await auth.change_password("alice", "not the password", "new password 1")
    with pytest.raises(InvalidInput):
        await auth.change_password("alice", PASSWORD, "short")
    await auth.change_password("alice", PASSWORD, "new password 1", keep=current)
    assert (await auth.get_session(current)).user_id == "alice"
    with pytest.raises(InvalidToken):
        await auth.get_session(other)
    with pytest.raises(InvalidToken):
        await auth.verify(token.access_token)
    with pytest.raises(InvalidCredentials):
        await auth.authenticate("alice", PASSWORD)
    kept = await auth.authenticate("alice", "new password 1")
    await auth.set_password("alice", "admin reset 2", keep=kept.access_token)
    assert (await auth.verify(kept.access_token)).user_id == "alice"
    with pytest.raises(InvalidToken):
        await auth.get_session(current)
    assert (await auth.authenticate("alice", "admin reset 2")).user_id == "alice"


async def test_every_change_is_audited(auth: AuthFramework) -> None:
    """Each management call writes its audit event (secrets never in the metadata)."""
    await auth.register_user("alice", PASSWORD)
    await auth.set_roles("alice", ["a"])
    await auth.set_permissions("alice", ["p"])
    await auth.disable_user("alice")
    await auth.enable_user("alice")
    await auth.set_password("alice", "another password")
    await auth.unlock_user("alice")
    await auth.delete_user("alice")
    events = await auth.storage.query_audit(user_id="alice", limit=100)
    actions = [e.action for e in events]
    for action in (
        "user.roles",
        "user.permissions",
        "user.disable",
        "user.enable",
        "user.password",
        "user.unlock",
        "user.delete",
    ):
        assert action in actions
    assert all("password_hash" not in e.metadata for e in events)
    roles = next(e for e in events if e.action == "user.roles")
    assert roles.metadata["roles"] == ["a"]


async def test_session_without_account_keeps_working(auth: AuthFramework) -> None:
    """A session of an unregistered id (create_session allows it) carries no roles and stays
    valid; live account checks do not break it."""
    session_id, _ = await auth.create_session("guest-42")
    assert (await auth.get_session(session_id)).roles == ()


async def test_unknown_user_management_calls(auth: AuthFramework) -> None:
    """Every management call about an unknown user raises UnknownUser."""
    calls = (
        auth.get_user("x"),
        auth.set_roles("x", []),
        auth.set_permissions("x", []),
        auth.disable_user("x"),
        auth.enable_user("x"),
        auth.set_password("x", "long enough"),
        auth.delete_user("x"),
        auth.unlock_user("x"),
    )
    for call in calls:
        with pytest.raises(UnknownUser):
            await call


async def test_password_byte_limit(storage: AuthStorage) -> None:
    """max_password_length counts UTF-8 bytes: 3-byte characters reach it three times sooner."""
    config = AuthConfig(
        secret_key=TEST_SECRET, password_hasher=fast_password_hasher(), max_password_length=30
    )
    async with AuthFramework(storage, config) as auth:
        await auth.register_user("alice", "\u20ac" * 10)  # 30 bytes
        with pytest.raises(InvalidInput):
            await auth.set_password("alice", "\u20ac" * 11)
