"""CachedStorage against its baselines, in one run on the local Redis and PostgreSQL (issue 6).

Run: ``.venv/bin/python benchmarks/cache.py [--quick] [--redis URL] [--postgres URL]``

Prints each figure beside its baseline and the issue's target:

1. cache hit: ``verify`` through cached Redis and cached PostgreSQL vs in-memory ``verify``
   (target: at least 90 %);
2. a Starlette app behind ``AuthMiddleware`` serving a valid bearer token, cached Redis vs
   in-memory (in-process ASGI calls, no network; target: at least 90 %);
3. cache miss, 64 concurrent callers: ``verify`` of tokens never seen before on cached Redis
   vs a bare redis-py ``GET`` loop (target: 50,000/s and 2x), on cached PostgreSQL vs a bare
   asyncpg ``SELECT`` loop on a pool of the same size (target: 10,000/s and 1.5x);
4. revocation propagation across two processes over 1,000 revocations: from ``revoke()``
   returning here to the other process refusing the token (target: p99 under 50 ms);
5. session-cookie requests on cached Redis vs starsessions with its Redis store (target: 3x).

Rates are measured in alternating rounds (ours, baseline, ours, ...) and the median round of
each is kept, so background load on the machine hits both sides alike. Redis keys live under a
prefix of their own and PostgreSQL tables in a database ``authmw_bench_<random>``; both are
removed at the end. Needs ``starsessions`` (``pip install starsessions``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starsessions import JsonSerializer, SessionAutoloadMiddleware
from starsessions import SessionMiddleware as StarSessionMiddleware
from starsessions.stores.redis import RedisStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from authmw import AuthConfig, AuthFramework, AuthMiddleware, InMemoryStorage
from authmw.errors import InvalidToken
from authmw.middleware._cookies import SessionCookieCodec
from authmw.storage import AuthStorage, CacheConfig, CachedStorage
from authmw.storage.postgres import PostgresConfig, PostgresStorage
from authmw.storage.redis import RedisConfig, RedisStorage
from authmw.testing import fast_password_hasher

KEY = "benchmark-secret-key-0123456789abcdef"
REDIS_URL = os.environ.get("AUTHMW_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("AUTHMW_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
CONCURRENCY = 64


def framework(storage: AuthStorage) -> AuthFramework:
    return AuthFramework(storage, AuthConfig(secret_key=KEY,
                                             password_hasher=fast_password_hasher()))


def inner(kind: str, url: str, namespace: str, pool_size: int = 10) -> AuthStorage:
    if kind == "redis":
        return RedisStorage(RedisConfig(url=url, key_prefix=namespace, pool_size=pool_size))
    return PostgresStorage.with_config(PostgresConfig(url=url, table_prefix=namespace,
                                                      pool_size=pool_size,
                                                      min_pool_size=pool_size))


async def alternate(rounds: int, *runs: Callable[[], Awaitable[float]]) -> list[float]:
    """Run each measurement ``rounds`` times, interleaved; the median rate of each."""
    results: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run in enumerate(runs):
            results[i].append(await run())
    return [statistics.median(r) for r in results]


async def loop_rate(fn: Callable[[Any], Awaitable[Any]], arg: Any, seconds: float) -> float:
    """Calls per second of ``await fn(arg)`` in a loop for about ``seconds``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(500):
            await fn(arg)
        count += 500
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


async def concurrent_rate(op: Callable[[int], Awaitable[Any]], total: int) -> float:
    """Operations per second of ``op(i)`` for i < total, over CONCURRENCY tasks."""
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return total / (time.perf_counter() - start)


# -- 1 and 2: cache hits ---------------------------------------------------------------------

async def login(auth: AuthFramework) -> str:
    await auth.register_user("alice", "password")
    token = (await auth.authenticate("alice", "password")).access_token
    await auth.verify(token)
    return token


def scope_for(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "https", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 1234),
            "server": ("bench", 443)}


async def asgi_rate(app: Any, scope: dict[str, Any], seconds: float, expect: bytes) -> float:
    """Requests per second of an ASGI app called in-process with a prebuilt scope."""
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(dict(scope), receive, send)
    assert body[-1] == expect, (body[-1], expect)
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            await app(dict(scope), receive, send)
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


async def whoami(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.user.display_name)


async def session_view(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.session.get("n", 0)))


ROUTES = [Route("/", whoami), Route("/s", session_view)]


async def cache_hits(args: argparse.Namespace, out: list[tuple[str, ...]]) -> None:
    memory = framework(InMemoryStorage())
    cached = {kind: framework(CachedStorage(inner(kind, url, ns)))
              for kind, url, ns in (("redis", args.redis, args.redis_prefix),
                                    ("postgres", args.pg_url, args.pg_prefix))}
    tokens = {"memory": await login(memory)}
    for kind, auth in cached.items():
        await auth.open()
        tokens[kind] = await login(auth)
    secs = args.seconds
    m, r, p = await alternate(
        args.rounds,
        lambda: loop_rate(memory.verify, tokens["memory"], secs),
        lambda: loop_rate(cached["redis"].verify, tokens["redis"], secs),
        lambda: loop_rate(cached["postgres"].verify, tokens["postgres"], secs))
    out.append(("verify, cache hit: cached Redis", f"{r:,.0f}/s", f"in-memory {m:,.0f}/s",
                f"{r / m:.0%}", ">= 90%", ok(r / m >= 0.9)))
    out.append(("verify, cache hit: cached PostgreSQL", f"{p:,.0f}/s", f"in-memory {m:,.0f}/s",
                f"{p / m:.0%}", ">= 90%", ok(p / m >= 0.9)))

    ours = Starlette(routes=ROUTES, middleware=[Middleware(AuthMiddleware, auth=cached["redis"])])
    base = Starlette(routes=ROUTES, middleware=[Middleware(AuthMiddleware, auth=memory)])

    def bearer(token: str) -> dict[str, Any]:
        return scope_for("/", [(b"authorization", f"Bearer {token}".encode())])

    app_r, app_m = await alternate(
        args.rounds,
        lambda: asgi_rate(ours, bearer(tokens["redis"]), secs, b"alice"),
        lambda: asgi_rate(base, bearer(tokens["memory"]), secs, b"alice"))
    out.append(("Starlette + AuthMiddleware, bearer: cached Redis", f"{app_r:,.0f} req/s",
                f"in-memory {app_m:,.0f} req/s", f"{app_r / app_m:.0%}", ">= 90%",
                ok(app_r / app_m >= 0.9)))
    for auth in cached.values():
        await auth.close()


# -- 3: cache misses under concurrency -------------------------------------------------------

async def cache_misses(args: argparse.Namespace, out: list[tuple[str, ...]]) -> None:
    count = args.tokens
    for kind, url, ns in (("redis", args.redis, args.redis_prefix + "miss:"),
                          ("postgres", args.pg_url, args.pg_prefix + "miss_")):
        # A cache far smaller than the token set: every verify below is a miss.
        storage = CachedStorage(inner(kind, url, ns), CacheConfig(max_entries=256))
        auth = AuthFramework(storage, AuthConfig(secret_key=KEY, verified_token_cache=256,
                                                 password_hasher=fast_password_hasher()))
        await auth.open()
        await auth.register_user("alice", "password")
        user = await storage.get_user("alice")
        assert user is not None
        tokens: list[str] = []
        records = []
        for _ in range(count):
            token = auth._mint(user, None)
            records.append(token.stored())
            tokens.append(token.access_token)
        await bulk_store(storage.inner, records)
        client = aioredis.Redis.from_url(url) if kind == "redis" else None
        pool = None if kind == "redis" else await asyncpg.create_pool(url, min_size=10,
                                                                       max_size=10)
        bare = bare_reader(kind, client, pool, ns, storage.inner, records)
        ours = verifier(auth, tokens)
        before = storage.cache_statistics()
        mine, base = await alternate(args.rounds, partial(concurrent_rate, ours, count),
                                     partial(concurrent_rate, bare, count))
        stats = storage.cache_statistics()
        assert stats.hits == before.hits, "the miss benchmark hit the cache"
        batch = (stats.batched_keys - before.batched_keys) / max(1, stats.batches - before.batches)
        if client is not None:
            await client.aclose()
            out.append((f"verify, cache miss, {CONCURRENCY} callers: Redis", f"{mine:,.0f}/s",
                        f"redis-py GET {base:,.0f}/s", f"{mine / base:.1f}x",
                        ">= 50,000/s and 2x", ok(mine >= 50_000 and mine / base >= 2)))
        elif pool is not None:
            await pool.close()
            out.append((f"verify, cache miss, {CONCURRENCY} callers: PostgreSQL",
                        f"{mine:,.0f}/s", f"asyncpg SELECT {base:,.0f}/s", f"{mine / base:.1f}x",
                        ">= 10,000/s and 1.5x", ok(mine >= 10_000 and mine / base >= 1.5)))
        out.append((f"  (keys per bulk read, {kind})", f"{batch:.1f}", "", "", "", ""))
        await auth.close()


def bare_reader(kind: str, client: Any, pool: Any, namespace: str, storage: Any,
                records: list[Any]) -> Callable[[int], Awaitable[Any]]:
    """The baseline: one plain ``GET`` (redis-py) or ``SELECT`` (asyncpg) per record."""
    if kind == "redis":
        keys = [storage.keys.token(r.token_id) for r in records]

        async def get(i: int) -> Any:
            return await client.get(keys[i % len(keys)])

        return get
    sql = f"SELECT * FROM {namespace}tokens WHERE token_id = $1"
    ids = [r.token_id for r in records]

    async def select(i: int) -> Any:
        return await pool.fetchrow(sql, ids[i % len(ids)])

    return select


def verifier(auth: AuthFramework, tokens: list[str]) -> Callable[[int], Awaitable[Any]]:
    async def verify(i: int) -> Any:
        return await auth.verify(tokens[i % len(tokens)])

    return verify


async def bulk_store(storage: AuthStorage, records: list[Any]) -> None:
    for start in range(0, len(records), 200):
        await asyncio.gather(*(storage.store_token(r) for r in records[start:start + 200]))


async def lone_miss(args: argparse.Namespace, out: list[tuple[str, ...]]) -> None:
    """One caller, every verify a miss: batching on (the default) vs off (batch_size=1)."""
    runs = []
    for size in (64, 1):
        storage = CachedStorage(inner("redis", args.redis, args.redis_prefix + f"lone{size}:"),
                                CacheConfig(max_entries=16, batch_size=size))
        auth = AuthFramework(storage, AuthConfig(secret_key=KEY, verified_token_cache=16,
                                                 password_hasher=fast_password_hasher()))
        await auth.open()
        await auth.register_user("alice", "password")
        user = await storage.get_user("alice")
        assert user is not None
        minted = [auth._mint(user, None) for _ in range(4000)]
        await bulk_store(storage.inner, [m.stored() for m in minted])
        tokens = [m.access_token for m in minted]
        state = {"next": 0}

        async def latency(auth: AuthFramework = auth, tokens: list[str] = tokens,
                          state: dict[str, int] = state) -> float:
            start = time.perf_counter()
            for _ in range(200):
                await auth.verify(tokens[state["next"] % len(tokens)])
                state["next"] += 1
            return (time.perf_counter() - start) / 200 * 1e6

        runs.append((auth, latency))
    on, off = await alternate(args.rounds * 3, runs[0][1], runs[1][1])
    for auth, _ in runs:
        await auth.close()
    out.append(("lone caller, cache miss latency: batching on", f"{on:.0f} us",
                f"batching off {off:.0f} us", f"{on / off:.2f}x", "not slowed measurably",
                ok(on / off < 1.1)))


# -- 4: revocation across processes ----------------------------------------------------------

async def peer(kind: str, url: str, namespace: str) -> None:
    """The other process: verify what it is told to watch until it is refused."""
    auth = framework(CachedStorage(inner(kind, url, namespace)))
    await auth.open()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        token = line[1]
        await auth.verify(token)  # cached from now on
        print("watching", flush=True)
        deadline = time.monotonic() + 5
        refused = "timeout"
        while time.monotonic() < deadline:
            try:
                await auth.verify(token)
            except InvalidToken:
                refused = repr(time.time())
                break
            await asyncio.sleep(0.0001)
        print(refused, flush=True)
    await auth.close()


async def propagation(args: argparse.Namespace, out: list[tuple[str, ...]]) -> None:
    for kind, url, ns in (("redis", args.redis, args.redis_prefix + "prop:"),
                          ("postgres", args.pg_url, args.pg_prefix + "prop_")):
        auth = framework(CachedStorage(inner(kind, url, ns)))
        await auth.open()
        await auth.register_user("alice", "password")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--peer", kind, url, ns,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None

        async def line(proc: Any = proc) -> str:
            return (await proc.stdout.readline()).decode().strip()  # type: ignore[no-any-return]

        assert await line() == "ready"
        delays = []
        for _ in range(args.revocations):
            token = (await auth.authenticate("alice", "password")).access_token
            proc.stdin.write(f"watch {token}\n".encode())
            assert await line() == "watching"
            await auth.revoke(token)
            revoked_at = time.time()
            answer = await line()
            assert answer != "timeout", "the other process never refused the token"
            delays.append(max(0.0, float(answer) - revoked_at) * 1000)
        proc.stdin.write(b"quit\n")
        await asyncio.wait_for(proc.wait(), 30)
        await auth.close()
        delays.sort()
        p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99) - 1]
        out.append((f"revocation propagation, 2 processes, {len(delays)}x: {kind}",
                    f"p99 {p99:.2f} ms", f"p50 {p50:.2f} ms, max {delays[-1]:.2f} ms", "",
                    "p99 < 50 ms", ok(p99 < 50)))


# -- 5: sessions against starsessions --------------------------------------------------------

async def sessions(args: argparse.Namespace, out: list[tuple[str, ...]]) -> None:
    auth = framework(CachedStorage(inner("redis", args.redis, args.redis_prefix + "sess:")))
    await auth.open()
    await auth.register_user("alice", "password")
    session_id, _ = await auth.create_session("alice", {"n": 1})
    cookie = SessionCookieCodec(auth.config.signing_keys, auth.config.cookie, "x").sign(session_id)
    ours = Starlette(routes=ROUTES, middleware=[Middleware(AuthMiddleware, auth=auth)])

    client = aioredis.Redis.from_url(args.redis)
    store = RedisStore(connection=client, prefix=args.redis_prefix + "starsessions:")
    star_id = secrets.token_hex(16)
    await store.write(star_id, JsonSerializer().serialize({"n": 1}), lifetime=3600, ttl=3600)
    theirs = Starlette(routes=ROUTES, middleware=[
        Middleware(StarSessionMiddleware, store=store, lifetime=3600),
        Middleware(SessionAutoloadMiddleware)])

    secs = args.seconds
    mine, base = await alternate(
        args.rounds,
        lambda: asgi_rate(ours, scope_for("/s", [(b"cookie", f"authmw_session={cookie}"
                                                  .encode())]), secs, b"1"),
        lambda: asgi_rate(theirs, scope_for("/s", [(b"cookie", f"session={star_id}".encode())]),
                          secs, b"1"))
    out.append(("session-cookie requests: cached Redis", f"{mine:,.0f} req/s",
                f"starsessions+Redis {base:,.0f} req/s", f"{mine / base:.1f}x", ">= 3x",
                ok(mine / base >= 3)))
    await client.aclose()
    await auth.close()


# -- set-up and report -----------------------------------------------------------------------

def ok(met: bool) -> str:
    return "met" if met else "NOT MET"


async def purge_redis(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    async for key in client.scan_iter(match=prefix + "*", count=1000):
        await client.unlink(key)
    await client.aclose()


async def run(args: argparse.Namespace) -> None:
    database = f"authmw_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f"CREATE DATABASE {database}")
    parts = urlsplit(args.postgres)
    args.pg_url = urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))
    args.redis_prefix = f"authmw-bench:{secrets.token_hex(4)}:"
    args.pg_prefix = "bench_"
    out: list[tuple[str, ...]] = []
    try:
        for step in (cache_hits, cache_misses, lone_miss, propagation, sessions):
            started = time.perf_counter()
            await step(args, out)
            print(f"[{step.__name__} done in {time.perf_counter() - started:.0f} s]",
                  file=sys.stderr, flush=True)
    finally:
        await purge_redis(args.redis, args.redis_prefix)
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin.close()
    widths = [max(len(row[i]) for row in out) for i in range(6)]
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for row in out:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if args.json:
        print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=REDIS_URL)
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--quick", action="store_true", help="shorter rounds, fewer tokens")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--peer", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        asyncio.run(peer(*args.peer))
        return
    args.seconds = 0.3 if args.quick else 0.6
    args.rounds = 3 if args.quick else 7
    args.tokens = 5_000 if args.quick else 20_000
    args.revocations = 200 if args.quick else 1_000
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
