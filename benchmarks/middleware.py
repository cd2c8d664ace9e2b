"""Starlette apps in-process: authmw's middleware beside Starlette's own and starsessions.

Every app serves the same routes and is called with a prebuilt scope (see
:mod:`benchmarks._asgi`). Two groups, each measured in interleaved rounds:

* CPU-bound (one caller): the bare app; Starlette ``AuthenticationMiddleware`` over a dict;
  Starlette's client-side ``SessionMiddleware``; authmw bearer and session on memory, cached
  Redis and cached PostgreSQL.
* Waiting on a server (``io_callers`` concurrent callers, equal pools): Starlette
  ``AuthenticationMiddleware`` over a redis-py ``GET`` and over an asyncpg ``SELECT``;
  starsessions on Redis; authmw bearer and session on Redis and PostgreSQL without the cache,
  and session on cached Redis.

Run alone: ``python -m benchmarks.middleware [--quick]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import authmw
from authmw import AuthFramework, AuthMiddleware, InMemoryStorage
from authmw.storage import AuthStorage
from benchmarks._asgi import asgi_op, check, cookie_from, scope_for
from benchmarks.context import PASSWORD, USER, Context
from benchmarks.report import Row, compare, reference
from benchmarks.timing import interleave, rate

__all__ = ["ROUTES", "Ours", "run"]

CPU = "Starlette in-process, 1 caller"


async def whoami(request: Request) -> PlainTextResponse:
    """The user's name, or nothing for anonymous requests (and apps without authentication)."""
    user = request.scope.get("user")
    return PlainTextResponse(
        user.display_name if user is not None and user.is_authenticated else ""
    )


async def read_session(request: Request) -> PlainTextResponse:
    """Reads the session, changes nothing: nothing should be written back."""
    return PlainTextResponse(str(request.session.get("n", 0)))


async def write_session(request: Request) -> PlainTextResponse:
    """Starts a session for the peers (their cookie comes from this response)."""
    request.session["n"] = 1
    return PlainTextResponse("ok")


async def log_in(request: Request) -> PlainTextResponse:
    """authmw's login on a route: the response carries the session cookie the cases replay.
    Password-less: a GET cannot carry the login form's CSRF token, and the login is set-up."""
    await authmw.login_user(request, USER)
    request.session["n"] = 1
    return PlainTextResponse("ok")


ROUTES = [
    Route("/", whoami),
    Route("/s", read_session),
    Route("/set", write_session),
    Route("/login", log_in),
]


class LookupBackend(AuthenticationBackend):
    """Starlette's documented pattern: find the bearer token's user with one lookup."""

    def __init__(self, lookup: Callable[[str], Awaitable[str | None]]) -> None:
        self.lookup = lookup

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        header = conn.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        user = await self.lookup(token)
        if user is None:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(user)


def starlette_auth(lookup: Callable[[str], Awaitable[str | None]]) -> Starlette:
    """A Starlette app behind ``AuthenticationMiddleware`` with ``lookup`` as its backend."""
    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(AuthenticationMiddleware, backend=LookupBackend(lookup))],
    )


class Ours:
    """An authmw app on one storage, with a bearer token and a session cookie for it."""

    def __init__(self, auth: AuthFramework, app: Starlette, token: str, cookie: bytes) -> None:
        self.auth, self.app, self.token, self.cookie = auth, app, token, cookie

    @classmethod
    async def build(cls, ctx: Context, storage: AuthStorage) -> Ours:
        """Register the user, issue a token, log in once through the app for the cookie."""
        auth = ctx.framework(storage)
        await auth.open()
        await auth.register_user(USER, PASSWORD)
        token = (await auth.authenticate(USER, PASSWORD)).access_token
        app = Starlette(routes=ROUTES, middleware=[Middleware(AuthMiddleware, auth=auth)])
        cookie = await cookie_from(app, scope_for("/login"), auth.config.cookie.name)
        ours = cls(auth, app, token, cookie)
        await check(app, ours.bearer(), USER.encode())
        await check(app, ours.session(), b"1")
        return ours

    def bearer(self) -> dict[str, Any]:
        """A request to ``/`` with the bearer token."""
        return scope_for("/", [(b"authorization", f"Bearer {self.token}".encode())])

    def session(self) -> dict[str, Any]:
        """A request to ``/s`` (reads the session, changes nothing) with the session cookie."""
        return scope_for("/s", [(b"cookie", self.cookie)])


@contextlib.asynccontextmanager
async def opened(ctx: Context, storages: dict[str, AuthStorage]) -> AsyncIterator[dict[str, Ours]]:
    """authmw apps over each storage, closed on exit."""
    built: dict[str, Ours] = {}
    try:
        for name, storage in storages.items():
            built[name] = await Ours.build(ctx, storage)
        yield built
    finally:
        for ours in built.values():
            await ours.auth.close()


async def cpu_group(ctx: Context) -> list[Row]:
    """One caller: what each middleware costs when nothing waits on a server."""
    s = ctx.settings
    tokens: dict[str, str] = {}

    async def from_dict(token: str) -> str | None:
        return tokens.get(token)

    bare = Starlette(routes=ROUTES)
    by_dict = starlette_auth(from_dict)
    cookie_sessions = Starlette(
        routes=ROUTES, middleware=[Middleware(SessionMiddleware, secret_key=ctx.secret_key)]
    )
    starlette_cookie = await cookie_from(cookie_sessions, scope_for("/set"), "session")
    storages = {
        "memory": InMemoryStorage(),
        "cached Redis": ctx.redis("mw-c", cached=True),
        "cached PostgreSQL": ctx.postgres("mw_c", cached=True),
    }
    async with opened(ctx, storages) as ours:
        tokens[ours["memory"].token] = USER
        cases = {
            "bare": (bare, scope_for("/"), b""),
            "dict": (by_dict, ours["memory"].bearer(), USER.encode()),
            "cookie": (cookie_sessions, scope_for("/s", [(b"cookie", starlette_cookie)]), b"1"),
        }
        for name, built in ours.items():
            cases[f"bearer {name}"] = (built.app, built.bearer(), USER.encode())
            cases[f"session {name}"] = (built.app, built.session(), b"1")
        for app, scope, expect in cases.values():
            await check(app, scope, expect)
        r = await interleave(
            s.rounds,
            {
                name: (lambda a=app, sc=scope: rate(asgi_op(a, sc), s.seconds))
                for name, (app, scope, _) in cases.items()
            },
        )
    ctx.notes.append(
        "Starlette's SessionMiddleware keeps the session data in the signed cookie itself: it "
        "looks nothing up, so it is the floor any server-side session is compared with."
    )
    dict_peer = "Starlette AuthenticationMiddleware + dict"
    cookie_peer = "Starlette SessionMiddleware"
    return [
        reference(CPU, "bare Starlette app (no middleware)", r["bare"]),
        compare(
            CPU,
            "Starlette AuthenticationMiddleware + dict (peer) / bare app",
            r["dict"],
            r["bare"],
            "bare app",
        ),
        compare(
            CPU, "authmw bearer, memory", r["bearer memory"], r["dict"], dict_peer, at_least=1.1
        ),
        compare(
            CPU,
            "authmw bearer, cached Redis",
            r["bearer cached Redis"],
            r["dict"],
            dict_peer,
            at_least=1.1,
        ),
        compare(
            CPU,
            "authmw bearer, cached PostgreSQL",
            r["bearer cached PostgreSQL"],
            r["dict"],
            dict_peer,
            at_least=1.1,
        ),
        compare(
            CPU,
            "authmw bearer, cached PostgreSQL / on memory",
            r["bearer cached PostgreSQL"],
            r["bearer memory"],
            "authmw on memory",
            at_least=0.95,
        ),
        compare(
            CPU,
            "authmw session cookie, memory",
            r["session memory"],
            r["cookie"],
            cookie_peer,
            at_least=1.0,
        ),
        compare(
            CPU,
            "authmw session cookie, cached Redis",
            r["session cached Redis"],
            r["cookie"],
            cookie_peer,
            at_least=1.0,
        ),
        compare(
            CPU,
            "authmw session cookie, cached PostgreSQL",
            r["session cached PostgreSQL"],
            r["cookie"],
            cookie_peer,
            lead=True,
        ),
    ]


async def io_group(ctx: Context) -> list[Row]:
    """Many callers: cases whose every request waits on Redis or PostgreSQL."""
    import asyncpg
    import redis.asyncio as aioredis
    from starsessions import SessionAutoloadMiddleware
    from starsessions import SessionMiddleware as StarSessions
    from starsessions.stores.redis import RedisStore

    s = ctx.settings
    section = f"Starlette in-process, {s.io_callers} callers, pools of {s.pool_size}"
    # Blocking pools of the same size as authmw's: callers beyond it wait, as they do there.
    client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            ctx.redis_url, max_connections=s.pool_size
        )
    )
    pool = await asyncpg.create_pool(ctx.postgres_url, min_size=1, max_size=s.pool_size)
    redis_keys = ctx.redis_prefix("starlette-tokens")
    try:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS peer_tokens (token text PRIMARY KEY, user_id text NOT NULL)"
        )

        async def from_redis(token: str) -> str | None:
            user = await client.get(redis_keys + token)
            return None if user is None else user.decode()

        async def from_postgres(token: str) -> str | None:
            user: str | None = await pool.fetchval(
                "SELECT user_id FROM peer_tokens WHERE token = $1", token
            )
            return user

        store = RedisStore(connection=client, prefix=ctx.redis_prefix("starsessions"))
        star = Starlette(
            routes=ROUTES,
            middleware=[
                Middleware(StarSessions, store=store, lifetime=3600, cookie_https_only=True),
                Middleware(SessionAutoloadMiddleware),
            ],
        )
        star_cookie = await cookie_from(star, scope_for("/set"), "session")
        storages = {
            "Redis": ctx.redis("mw-r"),
            "PostgreSQL": ctx.postgres("mw_r"),
            "cached Redis": ctx.redis("mw-rc", cached=True),
        }
        async with opened(ctx, storages) as ours:
            redis_token, pg_token = ours["Redis"].token, ours["PostgreSQL"].token
            await client.set(redis_keys + redis_token, USER, ex=3600)
            await pool.execute("INSERT INTO peer_tokens VALUES ($1, $2)", pg_token, USER)
            cases = {
                "redis GET": (starlette_auth(from_redis), ours["Redis"].bearer(), USER),
                "asyncpg SELECT": (
                    starlette_auth(from_postgres),
                    ours["PostgreSQL"].bearer(),
                    USER,
                ),
                "starsessions": (star, scope_for("/s", [(b"cookie", star_cookie)]), "1"),
                "bearer Redis": (ours["Redis"].app, ours["Redis"].bearer(), USER),
                "bearer PostgreSQL": (ours["PostgreSQL"].app, ours["PostgreSQL"].bearer(), USER),
                "session Redis": (ours["Redis"].app, ours["Redis"].session(), "1"),
                "session PostgreSQL": (ours["PostgreSQL"].app, ours["PostgreSQL"].session(), "1"),
                "session cached Redis": (
                    ours["cached Redis"].app,
                    ours["cached Redis"].session(),
                    "1",
                ),
            }
            for app, scope, expect in cases.values():
                await check(app, scope, expect.encode())
            r = await interleave(
                s.rounds,
                {
                    name: (
                        lambda a=app, sc=scope: rate(
                            asgi_op(a, sc), s.seconds, s.io_callers, batch=20
                        )
                    )
                    for name, (app, scope, _) in cases.items()
                },
            )
    finally:
        await client.aclose()
        await pool.close()
    ctx.notes.append(
        "starsessions (SessionMiddleware + SessionAutoloadMiddleware, RedisStore, lifetime "
        "3600 s, not rolling) saves the session to Redis and sets its cookie again on every "
        "request that loaded it, even when nothing changed."
    )
    star_peer = "starsessions + Redis"
    return [
        compare(
            section,
            "authmw bearer, Redis",
            r["bearer Redis"],
            r["redis GET"],
            "Starlette AuthenticationMiddleware + redis-py GET",
            lead=True,
        ),
        compare(
            section,
            "authmw bearer, PostgreSQL",
            r["bearer PostgreSQL"],
            r["asyncpg SELECT"],
            "Starlette AuthenticationMiddleware + asyncpg SELECT",
            lead=True,
        ),
        compare(
            section,
            "authmw session, Redis",
            r["session Redis"],
            r["starsessions"],
            star_peer,
            lead=True,
        ),
        compare(
            section,
            "authmw session, cached Redis",
            r["session cached Redis"],
            r["starsessions"],
            star_peer,
            at_least=3.0,
        ),
        compare(
            section,
            "authmw session, PostgreSQL (peer on Redis: no PostgreSQL store)",
            r["session PostgreSQL"],
            r["starsessions"],
            star_peer,
        ),
    ]


async def run(ctx: Context) -> list[Row]:
    """Both groups' rows."""
    return [*await cpu_group(ctx), *await io_group(ctx)]


if __name__ == "__main__":
    from benchmarks.harness import standalone

    standalone("middleware")
