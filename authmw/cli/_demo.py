"""The ``authmw demo`` walk-through: every core flow on the in-memory default, narrated."""

from __future__ import annotations

import asyncio
import os
import secrets

from ..config import AuthConfig
from ..errors import InvalidCredentials, InvalidToken, RefreshTokenReused
from ..framework import AuthFramework
from ..storage import storage_from_url


def _short(token: str) -> str:
    # Enough to tell tokens apart on screen; the secret part is never printed whole.
    return f"{token[:12]}…"


async def run(storage_url: str = "memory://", out: object = print) -> None:
    """Register, log in, verify, refresh, detect reuse and revoke; print each step."""
    say = out if callable(out) else print
    key = os.environ.get("AUTHMW_SECRET_KEY")
    config = AuthConfig(secret_key=key or secrets.token_urlsafe(32))
    say(
        f"storage: {storage_url}; secret key: "
        + ("from AUTHMW_SECRET_KEY" if key else "random for this run (set AUTHMW_SECRET_KEY)")
    )
    async with AuthFramework(storage_from_url(storage_url), config) as auth:
        await auth.register_user("user123", "password", roles=["admin"], permissions=["read"])
        say("registered user123 (argon2id hash stored, never the password)")

        try:
            await auth.authenticate("user123", "wrong password")
        except InvalidCredentials as exc:
            say(f"login with a wrong password -> {type(exc).__name__}: {exc}")

        token = await auth.authenticate("user123", "password")
        say(
            f"logged in: access token {_short(token.access_token)} "
            f"(id {token.token_id}), expires {token.expires_at:%H:%M:%S} UTC"
        )

        verified = await auth.verify(token.access_token)
        say(
            f"verify -> user {verified.user_id}, roles {list(verified.roles)}, "
            f"permissions {list(verified.permissions)}"
        )

        renewed = await auth.refresh(token.refresh_token)
        say(f"refresh -> new access token {_short(renewed.access_token)}; the old pair is retired")
        try:
            await auth.verify(token.access_token)
        except InvalidToken as exc:
            say(f"verify the old access token -> refused ({exc.reason})")

        try:
            await auth.refresh(token.refresh_token)
        except RefreshTokenReused:
            say("refresh with the old refresh token again -> reuse detected, family revoked")
        try:
            await auth.verify(renewed.access_token)
        except InvalidToken as exc:
            say(f"verify the token issued by that family -> refused ({exc.reason})")

        fresh = await auth.authenticate("user123", "password")
        await auth.revoke(fresh.access_token)
        try:
            await auth.verify(fresh.access_token)
        except InvalidToken as exc:
            say(f"log in again, revoke, verify -> refused ({exc.reason})")

        try:
            await auth.verify("not-a-token")
        except InvalidToken as exc:
            say(f"verify junk -> refused ({exc.reason}) without touching storage")

        events = await auth.storage.query_audit(user_id="user123", limit=100)
        say(
            f"audit log: {len(events)} events, the last six: "
            + ", ".join(
                f"{e.action}:{'ok' if e.outcome else 'failed'}" for e in reversed(events[:6])
            )
        )


def main(storage_url: str = "memory://") -> int:
    """Run the walk-through; return a process exit code."""
    asyncio.run(run(storage_url))
    return 0
