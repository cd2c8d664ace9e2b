"""The multi-key writes of the Redis backend, in two strategies.

:class:`AtomicWrites` (one server, plain or behind sentinels) runs each write as one Lua
script: all of it happens or none of it does.

:class:`SlotWrites` (cluster) cannot: a token, its refresh index and its user's index live in
different hash slots. Each step touches one slot and is atomic there; the steps run in an order
chosen so that stopping after any of them never grants access that was not granted before:

* an index entry is written (or raised, never lowered) *before* its record and removed *after*
  it, so ``delete_user_*`` (revoke everything of a user) always finds every live record;
* the refresh index is only a hint: a lookup checks the token it points to names the same
  refresh id, so a stale or early hint finds nothing;
* a rotation is decided by one compare-and-set on the retired token's own key; the successor is
  written only after winning it, so an interrupted rotation leaves the user logged out, never
  with two live tokens;
* a family revocation sets the family's mark first, then revokes what the user's index lists;
  a rotation stores its successor first, then checks the mark (revoking the successor when it
  is there), so one of the two always sees the other's write.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from ..._time import now_ts, utcnow
from ...models import AuthToken, SessionData
from ._executor import Executor
from ._keys import KeyLayout, ms

__all__ = ["AtomicWrites", "SlotWrites"]

# Members handled per script call when deleting everything of a user: keeps each call short
# so one user with many tokens never blocks the server for long.
_BATCH = 500
_MAX_ROUNDS = 10_000


def _live_token(raw: bytes | None) -> bool:
    return raw is not None and AuthToken.from_json(raw).storage_expires_ts > now_ts()


def _session_fields(session: SessionData) -> tuple[str, str, str, str]:
    # to_json raises TypeError for data that is not JSON before anything is written.
    return (
        session.to_json(),
        session.last_accessed.isoformat(),
        session.expires_at.isoformat(),
        # An anonymous session is indexed under the empty user id, which no user can have:
        # its index is the anonymous sessions' (counted by get_statistics).
        session.user_id or "",
    )


def _live_session(got: list[Any] | None) -> bool:
    if not got or got[1] is None:
        return False
    return datetime.fromisoformat(got[1].decode()).timestamp() > now_ts()


class AtomicWrites:
    """Each write is one Lua script on one server."""

    def __init__(self, x: Executor, keys: KeyLayout) -> None:
        self.x = x
        self.k = keys

    def _token_args(self, token: AuthToken) -> tuple[list[str], list[Any]]:
        rid = token.refresh_id or ""
        keys = [
            self.k.token(token.token_id),
            self.k.user_tokens(token.user_id),
            self.k.refresh(rid) if rid else self.k.token(token.token_id),
        ]
        args = [token.stored().to_json(), token.token_id, ms(token.storage_expires_ts), rid]
        return keys, args

    async def store_token(self, token: AuthToken, mode: str = "store") -> bool:
        """Insert or replace (``mode="update"``: replace only) a token and its indexes."""
        keys, (json_text, tid, exp, rid) = self._token_args(token)
        args = [json_text, tid, exp, ms(now_ts()), rid, self.k.refresh_open, mode]
        done = await self.x.script(f"{mode}_token", "store_token", keys, args)
        return bool(done)

    async def rotate_token(self, retired: AuthToken, new: AuthToken) -> bool:
        """Compare-and-set on the retired token, then store both, in one script."""
        old_keys, old_args = self._token_args(retired)
        new_keys, new_args = self._token_args(new)
        keys = [
            old_keys[0],
            self.k.token_next(retired.token_id),
            old_keys[1],
            old_keys[2],
            *new_keys,
            self.k.family(new.family_id),
        ]
        args = [*old_args, *new_args, ms(now_ts()), self.k.refresh_open]
        return bool(await self.x.script("rotate_token", "rotate_token", keys, args))

    async def delete_token(self, token_id: str) -> bool:
        """Delete a token, its refresh index entry and its user-index member."""
        raw = await self.x.script(
            "delete_token",
            "delete_token",
            [self.k.token(token_id), self.k.token_next(token_id)],
            [token_id, ms(now_ts()), self.k.refresh_open, self.k.user_open, self.k.tokens_suffix],
        )
        return _live_token(raw)

    async def _drain(self, operation: str, script: str, key: str, args: list[Any]) -> int:
        total = 0
        for _ in range(_MAX_ROUNDS):
            live, remaining = await self.x.script(
                operation, script, [key], [*args[:1], ms(now_ts()), *args[1:], _BATCH]
            )
            total += int(live)
            if not remaining:
                break
        return total

    async def delete_user_tokens(self, user_id: str) -> int:
        """Delete every token of a user, batch by batch."""
        return await self._drain(
            "delete_user_tokens",
            "delete_user_tokens",
            self.k.user_tokens(user_id),
            [user_id, self.k.token_open, self.k.refresh_open],
        )

    async def store_session(self, session: SessionData) -> None:
        """Insert or replace a session and its user-index member."""
        json_text, la, ex, uid = _session_fields(session)
        await self.x.script(
            "store_session",
            "store_session",
            [self.k.session(session.session_id), self.k.user_sessions(uid)],
            [json_text, la, ex, uid, session.session_id, ms(session.expires_ts), ms(now_ts())],
        )

    async def touch_session(self, session_id: str, la: str, ex: str, exp: float) -> bool:
        """Move a session's access time and expiry, and its index score with them."""
        done = await self.x.script(
            "touch_session",
            "touch_session",
            [self.k.session(session_id)],
            [la, ex, ms(exp), ms(now_ts()), session_id, self.k.user_open, self.k.sessions_suffix],
        )
        return bool(done)

    async def update_session(self, session: SessionData) -> bool:
        """Write a session that still exists (and its index score); never recreate one."""
        json_text, la, ex, uid = _session_fields(session)
        done = await self.x.script(
            "update_session",
            "update_session",
            [self.k.session(session.session_id), self.k.user_sessions(uid)],
            [json_text, la, ex, uid, session.session_id, ms(session.expires_ts), ms(now_ts())],
        )
        return bool(done)

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session and its user-index member."""
        got = await self.x.script(
            "delete_session",
            "delete_session",
            [self.k.session(session_id)],
            [session_id, ms(now_ts()), self.k.user_open, self.k.sessions_suffix],
        )
        return _live_session(got)

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete every session of a user, batch by batch."""
        return await self._drain(
            "delete_user_sessions",
            "delete_user_sessions",
            self.k.user_sessions(user_id),
            [user_id, self.k.session_open],
        )


class SlotWrites:
    """Each write is a sequence of single-slot steps, ordered to fail closed (cluster)."""

    def __init__(self, x: Executor, keys: KeyLayout) -> None:
        self.x = x
        self.k = keys

    async def _index_before(self, op: str, key: str, member: str, exp: int) -> int:
        # 0: at score, 1: a higher score was kept (set exactly afterwards), 2: newly added.
        return int(await self.x.script(op, "idx_raise", [key], [member, exp, ms(now_ts())]))

    async def _index_after(self, op: str, key: str, member: str, exp: int, state: int) -> None:
        if state == 1:
            await self.x.script(op, "idx_set", [key], [member, exp, ms(now_ts())])

    async def _refresh_after(self, op: str, token: AuthToken, replaced: bytes) -> None:
        rid, exp = token.refresh_id or "", ms(token.storage_expires_ts)
        if rid:
            await self.x.script(
                op, "ref_set", [self.k.refresh(rid)], [token.token_id, exp, ms(now_ts())]
            )
        old = replaced.decode()
        if old and old != rid:
            await self.x.script(op, "ref_del", [self.k.refresh(old)], [token.token_id])

    async def store_token(self, token: AuthToken, mode: str = "store") -> bool:
        """Index, record, refresh index, then the exact index score."""
        op = f"{mode}_token"
        index, exp = self.k.user_tokens(token.user_id), ms(token.storage_expires_ts)
        state = await self._index_before(op, index, token.token_id, exp)
        done, replaced = await self.x.script(
            op,
            "tok_put",
            [self.k.token(token.token_id)],
            [token.stored().to_json(), exp, ms(now_ts()), mode],
        )
        if not done:
            if state == 2:  # an update of a missing token must not leave an entry behind
                await self.x.script(op, "idx_rem", [index], [ms(now_ts()), token.token_id])
            return False
        await self._refresh_after(op, token, replaced)
        await self._index_after(op, index, token.token_id, exp, state)
        return True

    async def rotate_token(self, retired: AuthToken, new: AuthToken) -> bool:
        """Compare-and-set on the retired token decides; only the winner stores the new one,
        then looks for the family's revocation mark (store, then check: the mark lives in
        another slot) and revokes what it stored if the mark is there."""
        exp = ms(retired.storage_expires_ts)
        won, replaced = await self.x.script(
            "rotate_token",
            "tok_cas",
            [self.k.token(retired.token_id), self.k.token_next(retired.token_id)],
            [retired.stored().to_json(), exp, ms(now_ts()), new.token_id],
        )
        if not won:
            return False
        # The retired record is revoked now, so its index and refresh hint are housekeeping.
        await self.x.script(
            "rotate_token",
            "idx_set",
            [self.k.user_tokens(retired.user_id)],
            [retired.token_id, exp, ms(now_ts())],
        )
        await self._refresh_after("rotate_token", retired, replaced)
        await self.store_token(new, "store")
        # revoke_token_family sets the mark before it lists the family: if the mark is not
        # there yet, the listing comes later and finds (and revokes) the token just stored.
        if await self.x.read("rotate_token", "EXISTS", self.k.family(new.family_id)):
            await self.store_token(
                replace(new, revoked_at=utcnow(), revoke_reason="family_revoked"), "update"
            )
            return False
        return True

    async def _take_token(self, op: str, token_id: str, user_id: str) -> bytes | None:
        raw: bytes | None = await self.x.script(
            op, "tok_take", [self.k.token(token_id), self.k.token_next(token_id)], [user_id]
        )
        if raw is not None:
            rid = AuthToken.from_json(raw).refresh_id
            if rid:
                await self.x.script(op, "ref_del", [self.k.refresh(rid)], [token_id])
        return raw

    async def delete_token(self, token_id: str) -> bool:
        """Record first, then its refresh hint and index member."""
        raw = await self._take_token("delete_token", token_id, "")
        if raw is not None:
            user_id = AuthToken.from_json(raw).user_id
            await self.x.script(
                "delete_token", "idx_rem", [self.k.user_tokens(user_id)], [ms(now_ts()), token_id]
            )
        return _live_token(raw)

    async def _members(self, op: str, key: str) -> list[bytes]:
        found: list[bytes] = await self.x.read(op, "ZRANGE", key, 0, _BATCH - 1)
        return found

    async def delete_user_tokens(self, user_id: str) -> int:
        """Each token record first, then its index member."""
        op, index, live = "delete_user_tokens", self.k.user_tokens(user_id), 0
        for _ in range(_MAX_ROUNDS):
            members = await self._members(op, index)
            if not members:
                break
            for member in members:
                live += _live_token(await self._take_token(op, member.decode(), user_id))
            await self.x.script(op, "idx_rem", [index], [ms(now_ts()), *members])
        return live

    async def store_session(self, session: SessionData) -> None:
        """Index, record, then the exact index score."""
        json_text, la, ex, uid = _session_fields(session)
        op, index, exp = "store_session", self.k.user_sessions(uid), ms(session.expires_ts)
        state = await self._index_before(op, index, session.session_id, exp)
        await self.x.script(
            op,
            "ses_put",
            [self.k.session(session.session_id)],
            [json_text, la, ex, uid, exp, ms(now_ts())],
        )
        await self._index_after(op, index, session.session_id, exp, state)

    async def touch_session(self, session_id: str, la: str, ex: str, exp: float) -> bool:
        """Index first when extending, so the record never outlives its index entry."""
        op, key = "touch_session", self.k.session(session_id)
        uid = await self.x.read(op, "HGET", key, "u")
        if uid is None:
            return False
        index, exp_ms = self.k.user_sessions(uid.decode()), ms(exp)
        state = await self._index_before(op, index, session_id, exp_ms)
        done = await self.x.script(op, "ses_touch", [key], [la, ex, exp_ms, ms(now_ts())])
        if done:
            await self._index_after(op, index, session_id, exp_ms, state)
        elif state == 2:  # deleted meanwhile: leave no index entry behind
            await self.x.script(op, "idx_rem", [index], [ms(now_ts()), session_id])
        return bool(done)

    async def update_session(self, session: SessionData) -> bool:
        """Index, then the record only if it still exists (one script on its key), then the
        exact index score; an index entry added for a session found gone is removed again."""
        json_text, la, ex, uid = _session_fields(session)
        op, index, exp = "update_session", self.k.user_sessions(uid), ms(session.expires_ts)
        state = await self._index_before(op, index, session.session_id, exp)
        done = await self.x.script(
            op,
            "ses_update",
            [self.k.session(session.session_id)],
            [json_text, la, ex, uid, exp, ms(now_ts())],
        )
        if not done:
            if state == 2:
                await self.x.script(op, "idx_rem", [index], [ms(now_ts()), session.session_id])
            return False
        await self._index_after(op, index, session.session_id, exp, state)
        return True

    async def _take_session(self, op: str, session_id: str, user_id: str) -> list[Any] | None:
        got: list[Any] | None = await self.x.script(
            op, "ses_take", [self.k.session(session_id)], [user_id]
        )
        return got

    async def delete_session(self, session_id: str) -> bool:
        """Record first, then its index member."""
        got = await self._take_session("delete_session", session_id, "")
        if got:
            await self.x.script(
                "delete_session",
                "idx_rem",
                [self.k.user_sessions(got[0].decode())],
                [ms(now_ts()), session_id],
            )
        return _live_session(got)

    async def delete_user_sessions(self, user_id: str) -> int:
        """Each session first, then its index member."""
        op, index, live = "delete_user_sessions", self.k.user_sessions(user_id), 0
        for _ in range(_MAX_ROUNDS):
            members = await self._members(op, index)
            if not members:
                break
            for member in members:
                live += _live_session(await self._take_session(op, member.decode(), user_id))
            await self.x.script(op, "idx_rem", [index], [ms(now_ts()), *members])
        return live
