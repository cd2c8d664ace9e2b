"""Bulk records for migration tests: many built directly (fast), a few minted for real."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from authmw import AuthConfig, AuthFramework
from authmw.models import AuditEvent, utcnow
from authmw.storage import AuthStorage
from authmw.testing import fast_password_hasher
from tests.support.factories import make_session, make_token, make_user

SECRET = "migration-test-secret-key-0123456789abcdef"


def make_auth(storage: AuthStorage) -> AuthFramework:
    """A framework with the tests' fixed key and cheap hashing (tokens move between them)."""
    return AuthFramework(
        storage, AuthConfig(secret_key=SECRET, password_hasher=fast_password_hasher())
    )


@dataclass
class Dataset:
    """What was put into the source, to check the target against."""

    users: int = 0
    tokens: int = 0
    sessions: int = 0
    kv: dict[str, float] = field(default_factory=dict)  # key -> expiry timestamp
    access_tokens: list[str] = field(default_factory=list)  # raw tokens minted for real
    session_ids: list[str] = field(default_factory=list)  # raw session ids minted for real
    expired_token_ids: list[str] = field(default_factory=list)
    expired_kv: list[str] = field(default_factory=list)
    audit: int = 0


async def fill(
    storage: AuthStorage, n: int, *, real: int = 0, expired: int = 0, chunk: int = 500
) -> Dataset:
    """``n`` users, tokens, sessions and kv entries built directly, ``real`` logins and
    sessions minted through the framework, and ``expired`` expired tokens and kv entries."""
    data = Dataset()
    now = utcnow()

    async def put(i: int) -> None:
        user_id = f"user{i:06d}"
        await storage.create_user(make_user(user_id))
        await storage.store_token(make_token(user_id, now=now))
        await storage.store_session(make_session(user_id, data={"i": i}))
        ttl = 600 + i % 300
        await storage.kv_set(f"key{i:06d}", f"value{i}".encode(), ttl)

    for start in range(0, n, chunk):
        await asyncio.gather(*(put(i) for i in range(start, min(n, start + chunk))))
    data.users = data.tokens = data.sessions = n
    async for page in storage.iter_kv(1000):
        data.kv.update((e.key, e.expires_at.timestamp()) for e in page if e.expires_at)
    if real:
        auth = make_auth(storage)
        for i in range(real):
            await auth.register_user(f"real{i:04d}", "correct horse battery", roles=["r"])
        for i in range(real):
            token = await auth.authenticate(f"real{i:04d}", "correct horse battery")
            data.access_tokens.append(token.access_token)
            session_id, _ = await auth.create_session(f"real{i:04d}", {"n": i})
            data.session_ids.append(session_id)
        data.users += real
        data.tokens += real
        data.sessions += real
        async for page in storage.iter_kv(1000):  # login failure counters, if any
            data.kv.update((e.key, e.expires_at.timestamp()) for e in page if e.expires_at)
    for i in range(expired):
        old = now - timedelta(hours=3)
        token = make_token(f"user{i:06d}", ttl=60, refresh_ttl=120, now=old)
        await storage.store_token(token)
        data.expired_token_ids.append(token.token_id)
        await storage.kv_set(f"gone{i}", b"x", 0.05)
        data.expired_kv.append(f"gone{i}")
    async for page in storage.iter_audit(1000):
        data.audit += len(page)
    if expired:
        await asyncio.sleep(0.1)  # let the short-lived kv entries expire
    return data


async def add_audit(storage: AuthStorage, n: int) -> None:
    """``n`` audit events."""
    for i in range(n):
        await storage.append_audit(
            AuditEvent("test.event", True, f"user{i:06d}", metadata={"i": i})
        )
