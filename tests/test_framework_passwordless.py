"""AuthFramework's password-less login (check_user, issue_tokens) on every backend."""

from __future__ import annotations

import dataclasses

import pytest

from authmw import (
    AccountDisabled,
    AuthFramework,
    InvalidCredentials,
    InvalidInput,
    UnknownUser,
)


async def test_issue_tokens_gives_the_password_login_pair(auth: AuthFramework) -> None:
    """issue_tokens returns a working access/refresh pair with the user's roles, no password."""
    await auth.register_user("sso", "password", roles=["staff"], permissions=["read"])
    token = await auth.issue_tokens("sso", ip_address="10.0.0.1", user_agent="idp")
    assert token.access_token and token.refresh_token
    record = await auth.verify(token.access_token)
    assert record.user_id == "sso" and record.roles == ("staff",)
    assert record.permissions == ("read",)
    rotated = await auth.refresh(token.refresh_token)
    assert (await auth.verify(rotated.access_token)).user_id == "sso"


async def test_passwordless_login_is_audited_like_a_password_login(auth: AuthFramework) -> None:
    """A password-less login writes a successful "login" event with method=passwordless."""
    await auth.register_user("ann", "password")
    await auth.issue_tokens("ann", ip_address="10.0.0.2", user_agent="magic-link")
    logins = await auth.storage.query_audit(user_id="ann", action="login")
    assert len(logins) == 1
    event = logins[0]
    assert event.outcome is True and event.metadata == {"method": "passwordless"}
    assert (event.ip_address, event.user_agent) == ("10.0.0.2", "magic-link")
    issued = await auth.storage.query_audit(user_id="ann", action="token.issue")
    assert len(issued) == 1


async def test_unknown_and_disabled_users_are_refused(auth: AuthFramework) -> None:
    """Unknown users raise UnknownUser, disabled ones AccountDisabled; both are
    InvalidCredentials, both are audited as failed logins, and no token is stored."""
    with pytest.raises(UnknownUser) as unknown:
        await auth.issue_tokens("ghost")
    assert isinstance(unknown.value, InvalidCredentials) and unknown.value.user_id == "ghost"
    user = await auth.register_user("gus", "password")
    await auth.storage.update_user(dataclasses.replace(user, is_active=False))
    with pytest.raises(AccountDisabled) as disabled:
        await auth.check_user("gus")
    assert isinstance(disabled.value, InvalidCredentials)
    assert await auth.storage.list_user_tokens("gus") == []
    for user_id, reason in (("ghost", "unknown"), ("gus", "disabled")):
        (event,) = await auth.storage.query_audit(user_id=user_id, action="login")
        assert event.outcome is False
        assert event.metadata == {"method": "passwordless", "reason": reason}


async def test_password_logins_still_hide_unknown_users(auth: AuthFramework) -> None:
    """A password login of an unknown user stays a plain InvalidCredentials (no enumeration)."""
    with pytest.raises(InvalidCredentials) as caught:
        await auth.authenticate("ghost", "password")
    assert type(caught.value) is InvalidCredentials


async def test_passwordless_checks_the_user_id(auth: AuthFramework) -> None:
    """A malformed user id is InvalidInput, as for every other flow."""
    with pytest.raises(InvalidInput):
        await auth.issue_tokens("bad\x00id")
