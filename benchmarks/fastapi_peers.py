"""FastAPI apps in-process: authmw's middleware and dependency beside fastapi-users.

Both sides serve ``GET /me`` returning the user's identity behind the library's own "current
user" dependency, with a bearer token, called with a prebuilt scope by ``io_callers``
concurrent callers:

* fastapi-users with ``BearerTransport`` and its Redis strategy (``RedisStrategy``), and with
  its database strategy (``DatabaseStrategy`` over ``fastapi-users-db-sqlalchemy`` on
  PostgreSQL through asyncpg, the driver its documentation names for PostgreSQL); its users
  live in the same PostgreSQL database, as its documentation sets it up;
* authmw ``AuthMiddleware`` + ``authmw.integrations.fastapi.current_user`` on Redis and
  PostgreSQL, without and with the local cache.

Pools are the same size on both sides. Run alone: ``python -m benchmarks.fastapi_peers``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse

from authmw import AuthMiddleware, AuthUser
from authmw.integrations.fastapi import current_user
from authmw.storage import AuthStorage
from benchmarks._asgi import asgi_op, check, scope_for
from benchmarks.context import PASSWORD, USER, Context
from benchmarks.report import Row, compare
from benchmarks.timing import interleave, rate

__all__ = ["run"]

EMAIL = "alice@example.com"


def ours_app(auth: Any) -> FastAPI:
    """FastAPI behind authmw, ``/me`` behind authmw's ``current_user`` dependency."""
    app = FastAPI()
    app.add_middleware(AuthMiddleware, auth=auth)

    @app.get("/me")
    async def me(user: AuthUser = Depends(current_user)) -> PlainTextResponse:
        return PlainTextResponse(user.identity)

    return app


class FastAPIUsersSide:
    """fastapi-users set up as its documentation does, on this run's servers."""

    def __init__(self, ctx: Context) -> None:
        import redis.asyncio as aioredis
        from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin
        from fastapi_users.authentication import (
            AuthenticationBackend,
            BearerTransport,
            RedisStrategy,
        )
        from fastapi_users.authentication.strategy.db import DatabaseStrategy
        from fastapi_users.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
        from fastapi_users_db_sqlalchemy.access_token import (
            SQLAlchemyAccessTokenDatabase,
            SQLAlchemyBaseAccessTokenTableUUID,
        )
        from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
        from sqlalchemy.orm import DeclarativeBase

        class Base(DeclarativeBase):
            pass

        class User(SQLAlchemyBaseUserTableUUID, Base):
            pass

        class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
            pass

        class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
            reset_password_token_secret = ctx.secret_key
            verification_token_secret = ctx.secret_key

        size = ctx.settings.pool_size
        url = ctx.postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        self.engine = create_async_engine(url, pool_size=size, max_overflow=0)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.redis = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                ctx.redis_url, max_connections=size, decode_responses=True
            )
        )
        self.base, self.user_table, self.token_table = Base, User, AccessToken
        self.user_db_type = SQLAlchemyUserDatabase
        self.token_db_type = SQLAlchemyAccessTokenDatabase
        self.redis_strategy = RedisStrategy(
            self.redis, lifetime_seconds=3600, key_prefix=ctx.redis_prefix("fastapi-users")
        )
        self.database_strategy_type = DatabaseStrategy

        async def get_session() -> AsyncIterator[AsyncSession]:
            async with self.sessions() as session:
                yield session

        async def get_user_db(session: AsyncSession = Depends(get_session)) -> AsyncIterator[Any]:
            yield SQLAlchemyUserDatabase(session, User)

        async def get_token_db(session: AsyncSession = Depends(get_session)) -> AsyncIterator[Any]:
            yield SQLAlchemyAccessTokenDatabase(session, AccessToken)

        async def get_user_manager(user_db: Any = Depends(get_user_db)) -> AsyncIterator[Any]:
            yield UserManager(user_db)

        def get_redis_strategy() -> Any:
            return self.redis_strategy

        def get_database_strategy(token_db: Any = Depends(get_token_db)) -> Any:
            return DatabaseStrategy(token_db, lifetime_seconds=3600)

        transport = BearerTransport(tokenUrl="auth/login")
        self.backends = {
            "redis": AuthenticationBackend(
                name="redis", transport=transport, get_strategy=get_redis_strategy
            ),
            "database": AuthenticationBackend(
                name="database", transport=transport, get_strategy=get_database_strategy
            ),
        }
        self.fastapi_users = {
            name: FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])
            for name, backend in self.backends.items()
        }

    async def setup(self) -> dict[str, str]:
        """Create the tables and the user; one token per strategy."""
        async with self.engine.begin() as conn:
            await conn.run_sync(self.base.metadata.create_all)
        async with self.sessions() as session:
            # The password is never checked here: requests carry an issued token.
            user = await self.user_db_type(session, self.user_table).create(
                {
                    "email": EMAIL,
                    "hashed_password": "unused",
                    "is_active": True,
                    "is_verified": True,
                }
            )
        tokens = {"redis": await self.redis_strategy.write_token(user)}
        async with self.sessions() as session:
            strategy = self.database_strategy_type(
                self.token_db_type(session, self.token_table), lifetime_seconds=3600
            )
            tokens["database"] = await strategy.write_token(user)
        return tokens

    def app(self, name: str) -> FastAPI:
        """FastAPI with ``/me`` behind fastapi-users' ``current_user(active=True)``."""
        current = self.fastapi_users[name].current_user(active=True)
        app = FastAPI()

        @app.get("/me")
        async def me(user: Any = Depends(current)) -> PlainTextResponse:
            return PlainTextResponse(user.email)

        return app

    async def close(self) -> None:
        """Close the engine and the Redis pool."""
        await self.engine.dispose()
        await self.redis.aclose()


def bearer(path: str, token: str) -> dict[str, Any]:
    """A GET with the bearer token."""
    return scope_for(path, [(b"authorization", f"Bearer {token}".encode())])


async def run(ctx: Context) -> list[Row]:
    """authmw beside fastapi-users, Redis and database strategies."""
    s = ctx.settings
    section = f"FastAPI in-process, {s.io_callers} callers, pools of {s.pool_size}"
    peer = FastAPIUsersSide(ctx)
    storages: dict[str, AuthStorage] = {
        "Redis": ctx.redis("fa-r"),
        "cached Redis": ctx.redis("fa-c", cached=True),
        "PostgreSQL": ctx.postgres("fa_r"),
        "cached PostgreSQL": ctx.postgres("fa_c", cached=True),
    }
    auths = {name: ctx.framework(storage) for name, storage in storages.items()}
    try:
        tokens = await peer.setup()
        cases: dict[str, tuple[Any, dict[str, Any], bytes]] = {
            "fastapi-users Redis": (
                peer.app("redis"),
                bearer("/me", tokens["redis"]),
                EMAIL.encode(),
            ),
            "fastapi-users database": (
                peer.app("database"),
                bearer("/me", tokens["database"]),
                EMAIL.encode(),
            ),
        }
        for name, auth in auths.items():
            await auth.open()
            await auth.register_user(USER, PASSWORD)
            token = (await auth.authenticate(USER, PASSWORD)).access_token
            cases[name] = (ours_app(auth), bearer("/me", token), USER.encode())
        for app, scope, expect in cases.values():
            await check(app, scope, expect)
        r = await interleave(
            s.rounds,
            {
                # Small batches: some of these apps serve only hundreds of requests a second.
                name: (
                    lambda a=app, sc=scope: rate(asgi_op(a, sc), s.seconds, s.io_callers, batch=4)
                )
                for name, (app, scope, _) in cases.items()
            },
        )
    finally:
        for auth in auths.values():
            await auth.close()
        await peer.close()
    ctx.notes.append(
        "fastapi-users: after finding the token (Redis GET or an SQL SELECT) its "
        "`current_user` loads the user row from PostgreSQL on every request, as its design "
        "does; authmw's token record carries what a request needs. authmw's FastAPI "
        "dependencies (current_user, optional_user) are plain functions, which FastAPI runs "
        "in its thread pool on every request."
    )
    redis_peer, db_peer = "fastapi-users RedisStrategy", "fastapi-users DatabaseStrategy"
    return [
        compare(
            section,
            "authmw bearer, Redis",
            r["Redis"],
            r["fastapi-users Redis"],
            redis_peer,
            lead=True,
        ),
        compare(
            section,
            "authmw bearer, cached Redis",
            r["cached Redis"],
            r["fastapi-users Redis"],
            redis_peer,
            lead=True,
        ),
        compare(
            section,
            "authmw bearer, PostgreSQL",
            r["PostgreSQL"],
            r["fastapi-users database"],
            db_peer,
            lead=True,
        ),
        compare(
            section,
            "authmw bearer, cached PostgreSQL",
            r["cached PostgreSQL"],
            r["fastapi-users database"],
            db_peer,
            lead=True,
        ),
    ]


if __name__ == "__main__":
    from benchmarks.harness import standalone

    standalone("fastapi_peers")
