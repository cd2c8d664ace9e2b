"""The account commands of ``authmw`` (authmw/cli/_users.py) through the real entry point."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from authmw import AuthFramework
from authmw.cli import main
from authmw.errors import InvalidCredentials, InvalidToken
from authmw.storage import CachedStorage
from authmw.storage.postgres import PostgresStorage
from authmw.storage.redis import RedisStorage
from tests.support.cache_helpers import framework, refused_eventually
from tests.support.cli_helpers import authmw, one_line_error, postgres_at_url, redis_at_url

__all__ = ["postgres_at_url", "redis_at_url"]  # fixtures used here

PASSWORD = "password-123"


@pytest.mark.parametrize(
    "command",
    [
        ["revoke-user"],
        ["show-user"],
        ["set-password", "--password-stdin"],
        ["set-roles"],
        ["set-permissions"],
        ["disable-user"],
        ["enable-user"],
        ["unlock-user"],
        ["delete-user", "--yes"],
    ],
)
def test_unknown_user_exits_1(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command about a user that does not exist exits 1 with one clear line (in
    process: the entry point itself is run by test_account_lifecycle)."""
    monkeypatch.setattr("sys.stdin", io.StringIO("long-pass-1\n"))
    assert main([command[0], "memory://", "nosuchuser", *command[1:]]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"authmw {command[0]}: no user 'nosuchuser'"


async def test_account_lifecycle(redis_at_url: tuple[str, RedisStorage]) -> None:
    """list, show, set-roles, set-permissions, disable, enable, set-password, unlock and
    delete-user on Redis, with --json, as an app sees them."""
    url, storage = redis_at_url
    auth = framework(storage)
    for name in ("carol", "bob", "alice"):
        await auth.register_user(name, PASSWORD, roles=["admin"] if name == "bob" else [])
    listed = json.loads(authmw("list-users", url, "--limit", "2", "--json").stdout)
    assert [u["user_id"] for u in listed["users"]] == ["alice", "bob"]
    assert listed["next_after"] == "bob"
    assert all("password_hash" not in u for u in listed["users"])
    rest = authmw("list-users", url, "--after", "bob")
    assert "carol" in rest.stdout and "alice" not in rest.stdout
    admins = json.loads(authmw("list-users", url, "--role", "admin", "--json").stdout)
    assert [u["user_id"] for u in admins["users"]] == ["bob"]

    shown = authmw("show-user", url, " Bob ")
    assert shown.returncode == 0 and "admin" in shown.stdout
    roles = json.loads(authmw("set-roles", url, "bob", "staff", "ops", "--json").stdout)
    assert roles["user"]["roles"] == ["staff", "ops"]
    perms = authmw("set-permissions", url, "bob", "read")
    assert perms.returncode == 0 and "set the permissions of user 'bob'" in perms.stdout
    assert (await storage.get_user("bob")).permissions == ("read",)  # type: ignore[union-attr]

    token = await auth.authenticate("alice", PASSWORD)
    assert authmw("disable-user", url, "alice").returncode == 0
    with pytest.raises(InvalidToken):
        await auth.verify(token.access_token)
    listed = json.loads(authmw("list-users", url, "--disabled", "--json").stdout)
    assert [u["user_id"] for u in listed["users"]] == ["alice"]
    assert authmw("enable-user", url, "alice").returncode == 0

    changed = authmw("set-password", url, "alice", "--password-stdin", stdin="brand-new-pass\n")
    assert changed.returncode == 0, changed.stderr
    assert "brand-new-pass" not in changed.stdout + changed.stderr
    with pytest.raises(InvalidCredentials):
        await auth.authenticate("alice", PASSWORD)
    short = authmw("set-password", url, "alice", "--password-stdin", stdin="x\n")
    assert "password: shorter than" in one_line_error(short)

    for _ in range(auth.config.max_failed_logins):
        with pytest.raises(Exception):  # noqa: B017 - InvalidCredentials, then AccountLocked
            await auth.authenticate("alice", "wrong guess")
    unlocked = json.loads(authmw("unlock-user", url, "alice", "--json").stdout)
    assert unlocked == {"user_id": "alice", "unlocked": True}
    assert (await auth.authenticate("alice", "brand-new-pass")).user_id == "alice"

    refused = authmw("delete-user", url, "alice")
    assert "pass --yes" in one_line_error(refused)
    deleted = json.loads(authmw("delete-user", url, "alice", "--yes", "--json").stdout)
    assert deleted == {"user_id": "alice", "deleted": True, "revoked": 1}
    assert await storage.get_user("alice") is None
    events = await storage.query_audit(user_id="alice", limit=100)
    assert "user.delete" in {e.action for e in events}
    revoked = json.loads(authmw("revoke-user", url, "bob", "--json").stdout)
    assert revoked == {"user_id": "bob", "revoked": 0}


async def test_changes_reach_a_running_app(
    postgres_at_url: tuple[str, PostgresStorage],
) -> None:
    """A user disabled from the command line is refused at once by an app whose cache holds
    the user's token: the command announces the change on the invalidation channel."""
    url, storage = postgres_at_url
    app: AuthFramework = framework(CachedStorage(PostgresStorage(url)))
    await app.open()
    try:
        await app.register_user("alice", PASSWORD, roles=["admin"])
        token = await app.authenticate("alice", PASSWORD)
        for _ in range(3):
            assert (await app.verify(token.access_token)).roles == ("admin",)
        assert authmw("set-roles", url, "alice").returncode == 0
        for _ in range(2000):  # the announcement arrives within milliseconds; 10 s at most
            if (await app.verify(token.access_token)).roles == ():
                break
            await asyncio.sleep(0.005)
        assert (await app.verify(token.access_token)).roles == ()
        assert authmw("disable-user", url, "alice").returncode == 0
        await refused_eventually(app, token.access_token)
    finally:
        await app.close()
