"""Tokens and records for the storage benchmarks, made through authmw's public API only.

Real tokens come from ``AuthFramework.authenticate``. Where a case needs many stored records
but no usable token string (storage operations, migration), :func:`fresh_records` copies one
real record with new random identifiers and digests, so every copy has the size and shape of
a real one and shares no object with another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import replace

from authmw import AuthFramework, AuthToken, UserExists
from authmw.storage import AuthStorage
from benchmarks.context import PASSWORD, USER
from benchmarks.timing import Op

__all__ = ["cycling", "fresh_records", "issue_tokens", "record_payload", "store_all"]


async def issue_tokens(
    auth: AuthFramework, count: int, *, callers: int = 1, user: str = USER
) -> list[AuthToken]:
    """``count`` distinct tokens of one user: one from ``authenticate``, the rest from
    ``issue_tokens`` (the same pair, without a password check).

    The user is registered first if needed; ``callers`` issues run at once, for storages whose
    every call waits on a server. Concurrent password logins would trip the lockout, which
    reserves a failure per attempt before checking its hash.
    """
    with contextlib.suppress(UserExists):
        await auth.register_user(user, PASSWORD)
    tokens: list[AuthToken] = [await auth.authenticate(user, PASSWORD)]

    async def worker(share: int) -> None:
        for _ in range(share):
            tokens.append(await auth.issue_tokens(user))

    count -= 1
    shares = [count // callers + (1 if i < count % callers else 0) for i in range(callers)]
    await asyncio.gather(*(worker(n) for n in shares if n))
    return tokens


def cycling(auth: AuthFramework, tokens: Sequence[str]) -> Op:
    """``verify`` of access token ``i mod len(tokens)``."""
    verify, n = auth.verify, len(tokens)

    async def op(i: int) -> object:
        return await verify(tokens[i % n])

    return op


def _selector(like: str) -> str:
    # The same length as a real selector, so keys and index entries have a real size.
    return secrets.token_urlsafe(len(like))[: len(like)]


def fresh_records(template: AuthToken, count: int, *, user: str | None = None) -> list[AuthToken]:
    """``count`` stored-form copies of ``template``, each with its own ids and digests."""
    records = []
    for _ in range(count):
        token_id = _selector(template.token_id)
        records.append(
            replace(
                template.stored(),
                token_id=token_id,
                family_id=token_id,
                user_id=user or template.user_id,
                access_digest=secrets.token_bytes(len(template.access_digest)),
                refresh_id=_selector(template.refresh_id or template.token_id),
                refresh_digest=secrets.token_bytes(len(template.refresh_digest or b"x" * 32)),
            )
        )
    return records


async def store_all(storage: AuthStorage, records: Sequence[AuthToken], callers: int = 64) -> None:
    """``store_token`` every record, ``callers`` at a time (set-up, not measured)."""
    for start in range(0, len(records), callers):
        await asyncio.gather(*(storage.store_token(r) for r in records[start : start + callers]))


def record_payload(record: AuthToken) -> bytes:
    """A token record as JSON: the size of value the bare-driver baselines read and write."""
    return json.dumps(record.to_dict(), default=str).encode()
