"""What every benchmark module gets: settings, and the servers with a place of its own on them.

One run owns a random Redis key prefix and a throwaway PostgreSQL database
``authmw_bench_<random>``; :func:`services` creates both and removes them at the end, whatever
happened in between. Storages and frameworks are built here, through authmw's public names
only, so each module builds them the same way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authmw import AuthConfig, AuthFramework
from authmw.storage import AuthStorage, CacheConfig, CachedStorage
from authmw.testing import fast_password_hasher

__all__ = ["PASSWORD", "USER", "Context", "Settings", "services"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

USER = "alice"
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True, slots=True)
class Settings:
    """How long and how hard to measure. ``quick`` trades precision for a run under 2 minutes."""

    quick: bool
    rounds: int
    seconds: float
    io_callers: int = 32
    miss_callers: int = 64
    pool_size: int = 16
    tokens: int = 5_000
    write_budget: int = 10_000
    memory_records: int = 10_000
    migration_tokens: int = 20_000
    http_seconds: float = 3.0
    http_rounds: int = 5
    revocations: int = 40

    @classmethod
    def for_mode(
        cls, *, quick: bool, rounds: int | None = None, seconds: float | None = None
    ) -> Settings:
        """The defaults of a full or a quick run, with optional overrides."""
        if quick:
            return cls(
                quick=True,
                rounds=rounds or 3,
                seconds=seconds or 0.2,
                tokens=2_000,
                write_budget=4_000,
                memory_records=3_000,
                migration_tokens=5_000,
                http_seconds=1.0,
                http_rounds=rounds or 3,
                revocations=10,
            )
        return cls(quick=False, rounds=rounds or 5, seconds=seconds or 0.5, http_rounds=rounds or 5)


@dataclass
class Context:
    """Settings, server URLs and this run's namespaces; plus notes for the report."""

    settings: Settings
    redis_url: str
    postgres_url: str
    key_prefix: str
    secret_key: str
    servers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def redis_prefix(self, name: str) -> str:
        """A key prefix for one use inside this run's namespace."""
        return f"{self.key_prefix}{name}:"

    def config(self, **overrides: Any) -> AuthConfig:
        """The run's ``AuthConfig``: its key, a cheap password hash (logins are set-up, not
        measured) and no audit log (only set-up writes audit events)."""
        settings: dict[str, Any] = {
            "secret_key": self.secret_key,
            "password_hasher": fast_password_hasher(),
            "audit_log": False,
        }
        settings.update(overrides)
        return AuthConfig(**settings)

    def framework(self, storage: AuthStorage, **overrides: Any) -> AuthFramework:
        """An ``AuthFramework`` over ``storage`` with :meth:`config`."""
        return AuthFramework(storage, self.config(**overrides))

    def redis(
        self, name: str, *, cached: bool | CacheConfig = False, pool_size: int | None = None
    ) -> AuthStorage:
        """A ``RedisStorage`` under its own prefix, optionally behind ``CachedStorage``."""
        from authmw.storage import RedisConfig, RedisStorage

        storage: AuthStorage = RedisStorage(
            RedisConfig(
                url=self.redis_url,
                key_prefix=self.redis_prefix(name),
                pool_size=pool_size or self.settings.pool_size,
            )
        )
        return _cache(storage, cached)

    def postgres(
        self, name: str, *, cached: bool | CacheConfig = False, pool_size: int | None = None
    ) -> AuthStorage:
        """A ``PostgresStorage`` with its own table prefix, optionally cached."""
        from authmw.storage import PostgresConfig, PostgresStorage

        size = pool_size or self.settings.pool_size
        storage: AuthStorage = PostgresStorage(
            PostgresConfig(
                url=self.postgres_url,
                table_prefix=f"{name}_",
                pool_size=size,
                min_pool_size=1,
                enable_audit_log=False,
            )
        )
        return _cache(storage, cached)


def _cache(storage: AuthStorage, cached: bool | CacheConfig) -> AuthStorage:
    if cached is False:
        return storage
    return CachedStorage(storage, cached if isinstance(cached, CacheConfig) else None)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@contextlib.asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Context]:
    """A context whose Redis prefix and PostgreSQL database are removed on exit.

    URLs come from ``AUTHMW_REDIS_URL`` / ``AUTHMW_POSTGRES_URL`` or the local defaults. A
    server that does not answer is not fatal here: the cases that need it fail one by one and
    say so in the table.
    """
    import asyncpg
    import redis.asyncio as aioredis

    redis_url = os.environ.get("AUTHMW_REDIS_URL", DEFAULT_REDIS_URL)
    admin_url = os.environ.get("AUTHMW_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    tag = secrets.token_hex(4)
    database = f"authmw_bench_{tag}"
    ctx = Context(
        settings,
        redis_url,
        _with_database(admin_url, database),
        key_prefix=f"authmw-bench:{tag}:",
        secret_key=secrets.token_urlsafe(32),
    )
    client = aioredis.Redis.from_url(redis_url)
    admin = None
    try:
        try:
            info = await client.info("server")
            ctx.servers["Redis"] = str(info.get("redis_version"))
        except Exception as exc:  # reported, and the Redis cases fail on their own
            ctx.servers["Redis"] = f"unreachable ({type(exc).__name__})"
        try:
            admin = await asyncpg.connect(admin_url)
            ctx.servers["PostgreSQL"] = str(await admin.fetchval("SHOW server_version"))
            await admin.execute(f'CREATE DATABASE "{database}"')
        except Exception as exc:
            ctx.servers["PostgreSQL"] = f"unreachable ({type(exc).__name__})"
        yield ctx
    finally:
        with contextlib.suppress(Exception):
            async for key in client.scan_iter(match=ctx.key_prefix + "*", count=1000):
                await client.unlink(key)
        await client.aclose()
        if admin is not None:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()
