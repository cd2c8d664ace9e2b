"""Faults under load on throwaway loopback servers: Redis killed and PostgreSQL stopped while
64 clients hammer a protected app, a Redis Cluster master killed until its replica takes over,
the cache's notification link cut while tokens are revoked, a migration killed mid-way, backups
onto a full disk. Each prints a ``FAULT`` line of figures
(run with ``-s`` to see them; docs/reliability.md quotes them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from authmw import AuthFramework
from authmw.errors import InvalidToken, StorageUnavailable
from authmw.middleware._cookies import SessionCookieCodec
from authmw.storage import AuthStorage, CacheConfig, CachedStorage
from authmw.storage.postgres import PostgresStorage
from authmw.storage.redis import RedisStorage
from tests.backends.postgres import PgCluster, fresh_prefix, run_async
from tests.backends.redis import (
    RedisCluster,
    RedisServer,
    cluster_config,
    prefix,
    purge,
    wait_until,
)
from tests.storage.redis import test_sentinel
from tests.storage.redis.test_sentinel import SentinelSetup
from tests.support.apps import make_app
from tests.support.cache_helpers import (
    cache_of,
    eventually,
    framework,
    frameworks,
    inner_storage,
    namespace_for,
)
from tests.support.cli_helpers import ROOT, authmw, with_query
from tests.support.load import Load, served
from tests.support.migration_data import add_audit, fill

OUTAGE = 1.0  # seconds the server stays down under load
RECOVERY_LIMIT = 10.0  # generous bound on the recovery; the measured time is printed
MIGRATED = 2000  # users, and as many tokens, sessions and kv entries
QUIET = 0.5  # seconds of only 200s that count as recovered
CLOSE_LIMIT = 15.0  # close() must return well within this, whatever the server did
# The long form (every variant) runs with `pytest -m long` (scripts/reliability); the normal
# suite deselects it (pyproject's addopts) and runs one variant of each fault.
# The master, two replicas and three sentinels of the sentinel tests, started for this module.
sentinel_setup = test_sentinel.sentinel_setup

LONG = pytest.mark.long
FAILOVER_LIMIT = 60.0  # generous bound on a cluster failover and the client's catching up


def report(name: str, **figures: Any) -> None:
    """One line of figures for docs/reliability.md."""
    print(f"\nFAULT {name} {json.dumps(figures, sort_keys=True)}")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway Redis that keeps its data over a crash (append-only file, fsync always)."""
    server = RedisServer(["appendonly yes", "appendfsync always"])
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL whose commits survive an immediate (crash) shutdown."""
    server = PgCluster(conf=["synchronous_commit = on"])
    try:
        yield server.init().start()
    finally:
        server.destroy()


async def _opened(storage: AuthStorage) -> AsyncIterator[AuthFramework]:
    auth = framework(storage)
    await auth.open()
    try:
        yield auth
    finally:
        # Bounded: a close() that hangs fails the test instead of the run.
        await asyncio.wait_for(auth.close(), CLOSE_LIMIT)


async def _credentials(auth: AuthFramework) -> dict[str, dict[str, str]]:
    """Headers of a valid token and of a revoked one (both read once, so a cache holds them)."""
    await auth.register_user("loaded", "password")
    valid = (await auth.authenticate("loaded", "password")).access_token
    revoked = (await auth.authenticate("loaded", "password")).access_token
    await auth.verify(valid)
    await auth.revoke(revoked)
    return {
        "valid": {"Authorization": f"Bearer {valid}"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
    }


async def _outage_under_load(
    auth: AuthFramework,
    stop: Any,
    start: Any,
    *,
    stale: bool,
    cached: bool,
    outage: float = OUTAGE,
    http: bool = False,
) -> dict[str, Any]:
    """Run 64 clients (7 of 8 with a valid token, 1 of 8 with a revoked one), stop the server
    for OUTAGE seconds, start it, wait for recovery; check every answer; return the figures.
    With ``http``, the clients talk HTTP to the app served by uvicorn on loopback."""
    headers = await _credentials(auth)
    app = make_app(auth)
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(served(app)) if http else None
        load = await stack.enter_async_context(Load(app, headers, clients=64, url=url))
        await load.wait_for(lambda: len(load.samples) > 200, 10)
        before = len(load.samples)
        await asyncio.to_thread(stop)
        down = time.monotonic()
        await asyncio.sleep(outage)
        restart = time.monotonic()
        await asyncio.to_thread(start)
        up = time.monotonic()
        recovered = await load.wait_for(
            lambda: load.recovered_since(up, "valid", QUIET) is not None, RECOVERY_LIMIT + QUIET
        )
        await load.stop()
    samples = load.samples
    outage_window = outage > 0
    down_samples = load.between(down, restart, "valid")
    figures = {
        "requests": len(samples),
        "before": before,
        "statuses": load.statuses(),
        "outage_valid": load.statuses(down_samples),
        "outage_revoked": load.statuses(load.between(down, restart, "revoked")),
        "restart_s": round(up - restart, 2),
        "max_wait_s": round(max(s.ended - s.started for s in samples), 2),
        "recovery_s": None
        if not recovered
        else round(load.recovered_since(up, "valid", QUIET) or 0, 3),
        "recovery_from_start_cmd_s": round(load.recovered_since(restart, "valid", 0.0) or 0, 3),
    }
    assert not [s for s in samples if s.status not in (200, 401, 503)], figures  # no 500, no 0
    assert not [s for s in samples if s.kind == "revoked" and s.status == 200], figures
    assert all(s.retry_after for s in samples if s.status == 503), figures
    assert recovered, figures
    if not outage_window:
        return figures  # a failover: no window with the server down to look at
    if not cached:
        # Every look-up goes to the server: nothing can answer 200 while it is down.
        assert down_samples and {s.status for s in down_samples} == {503}, figures
    # With the cache, hits need no server: until the cache notices the lost link, a valid
    # token may still get 200 (never a revoked one, checked above).
    if stale:
        assert any(s.status == 200 for s in down_samples), figures  # answered from what it saw
    return figures


@pytest.mark.parametrize(
    "mode",
    [
        "plain",
        pytest.param("cached", marks=LONG),
        "serve_stale",
        "plain-uvicorn",
        pytest.param("serve_stale-uvicorn", marks=LONG),
    ],
)
async def test_redis_killed_and_restarted_under_load(redis_server: RedisServer, mode: str) -> None:
    """Redis SIGKILLed for 1 s under 64 clients (in-process, or over HTTP to uvicorn): 503
    with Retry-After (or a stale 200 under serve_stale), never a 500 or a 200 for a revoked
    token; all 200s again after the restart."""
    mode, _, front = mode.partition("-")
    options = {"retry_attempts": 1, "retry_delay": 0.05, "timeout": 2}
    storage = inner_storage("redis", redis_server.url, namespace_for("redis"), **options)
    if mode != "plain":
        policy = "serve_stale" if mode == "serve_stale" else "fail_closed"
        storage = CachedStorage(
            storage, CacheConfig(on_outage=policy, retry_after_outage=0.2, subscribe_timeout=5)
        )
    async for auth in _opened(storage):
        figures = await _outage_under_load(
            auth,
            redis_server.kill,
            redis_server.start,
            stale=mode == "serve_stale",
            cached=mode != "plain",
            http=front == "uvicorn",
        )
    report(f"redis-kill-{mode}" + (f"-{front}" if front else ""), **figures)


@pytest.mark.parametrize(
    ("shutdown", "mode"),
    [
        ("fast", "plain"),
        ("immediate", "cached"),
        pytest.param("fast", "cached", marks=LONG),
        pytest.param("immediate", "plain", marks=LONG),
        pytest.param("immediate", "serve_stale", marks=LONG),
        pytest.param("fast", "plain-uvicorn", marks=LONG),
    ],
)
async def test_postgres_stopped_and_started_under_load(
    pg_server: PgCluster, shutdown: str, mode: str
) -> None:
    """PostgreSQL stopped (pg_ctl -m fast, and -m immediate: a crash) for 1 s under 64
    clients (in-process, or over HTTP to uvicorn): 503 with Retry-After (or a stale 200 under
    serve_stale), never a 500 or an unearned 200; all 200s after the start."""
    mode, _, front = mode.partition("-")
    storage: AuthStorage = inner_storage(
        "postgres", pg_server.url(), namespace_for("postgres"), timeout=2
    )
    if mode == "cached":
        storage = CachedStorage(storage, CacheConfig(subscribe_timeout=5))
    elif mode == "serve_stale":
        storage = CachedStorage(
            storage,
            CacheConfig(on_outage="serve_stale", retry_after_outage=0.2, subscribe_timeout=5),
        )

    def stop() -> None:
        pg_server.stop(shutdown)

    async for auth in _opened(storage):
        figures = await _outage_under_load(
            auth,
            stop,
            pg_server.start,
            stale=mode == "serve_stale",
            cached=mode != "plain",
            http=front == "uvicorn",
        )
    report(f"postgres-{shutdown}-{mode}" + (f"-{front}" if front else ""), **figures)


async def test_redis_hung_under_load(redis_server: RedisServer) -> None:
    """Redis paused (SIGSTOP) for 4 s under 64 clients, storage timeout 0.5 s: requests get 503
    with Retry-After while it hangs (none waits for the whole pause), 200s once it resumes."""
    options = {"retry_attempts": 1, "retry_delay": 0.05, "timeout": 0.5}
    storage = inner_storage("redis", redis_server.url, namespace_for("redis"), **options)
    pause = 4.0
    async for auth in _opened(storage):
        headers = await _credentials(auth)
        async with Load(make_app(auth), headers, clients=64) as load:
            await load.wait_for(lambda: len(load.samples) > 200, 10)
            assert redis_server.proc is not None
            redis_server.proc.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                await asyncio.sleep(pause)
            finally:
                redis_server.proc.send_signal(signal.SIGCONT)
            resumed = time.monotonic()
            recovered = await load.wait_for(
                lambda: load.recovered_since(resumed, "valid", QUIET) is not None, RECOVERY_LIMIT
            )
            await load.stop()
    # A signal takes a moment to stop a process on a busy machine: count from 0.25 s after.
    during = [s for s in load.samples if stopped + 0.25 <= s.started and s.started + 2.5 < resumed]
    waits = sorted(s.ended - s.started for s in during)
    figures = {
        "statuses": load.statuses(),
        "during": load.statuses(during),
        "answered_during_pause": len([s for s in during if s.ended < resumed]),
        "max_wait_s": round(waits[-1], 2) if waits else None,
        "median_wait_s": round(waits[len(waits) // 2], 2) if waits else None,
    }
    report("redis-sigstop", **figures)
    assert not [s for s in load.samples if s.status not in (200, 401, 503)], figures
    assert all(s.retry_after for s in load.samples if s.status == 503), figures
    # Started at least 2.5 s before the resume, each was answered 503 before it: the 0.5 s
    # call deadline plus the driver's socket timeout (1 s above it) and one retry stay well
    # short of that on a busy machine, and of the 4 s pause.
    assert during and all(s.status == 503 and s.ended < resumed for s in during), figures
    assert recovered, figures


@LONG
async def test_sentinel_failover_under_load(sentinel_setup: SentinelSetup) -> None:
    """The Sentinel-managed master killed under 64 clients: never a 500 or a 200 for the
    revoked token, every 503 with Retry-After, and only 200s again once a replica is promoted
    (the tokens were acknowledged by a replica, so the new master has them)."""
    storage = RedisStorage(sentinel_setup.failover())
    promoted: list[float] = []

    def kill_and_wait() -> None:
        old = sentinel_setup.master.port
        sentinel_setup.master.kill()
        killed = time.monotonic()
        while sentinel_setup.current_master_port() == old and time.monotonic() - killed < 30:
            time.sleep(0.1)
        promoted.append(time.monotonic() - killed)

    async for auth in _opened(storage):
        figures = await _outage_under_load(
            auth, kill_and_wait, lambda: None, stale=False, cached=True, outage=0.0
        )
    report("sentinel-failover", promoted_after_s=round(promoted[0], 2), **figures)


async def _session_cookies(
    auth: AuthFramework, inner: RedisStorage, cluster: RedisCluster, node: RedisServer
) -> dict[str, dict[str, str]]:
    """Cookie headers of a live session stored on ``node`` and of one ended by the server."""
    codec = SessionCookieCodec(auth.config.signing_keys, auth.config.cookie, "authmw_csrf")
    for _ in range(100):  # a third of the slots are node's: one lands there within a few
        live, record = await auth.create_session("loaded")
        key = inner.keys.session(record.session_id)
        if await asyncio.to_thread(cluster.owner, key) is node:
            break
        await auth.destroy_session(live)
    else:
        pytest.fail("no session landed on the master to kill")
    ended, _ = await auth.create_session("loaded")
    await auth.get_session(live)
    assert await auth.destroy_session(ended)
    return {
        "session": {"Cookie": f"authmw_session={codec.sign(live)}"},
        "ended": {"Cookie": f"authmw_session={codec.sign(ended)}"},
    }


async def _logins_until_served(auth: AuthFramework, limit: float) -> dict[str, int]:
    """Log in, verify and revoke, again until one round goes through (the first writes after a
    failover may meet a pooled connection to the dead master); the outcomes counted. The
    token of the round that went through is refused afterwards."""
    counts = {"ok": 0, "unavailable": 0}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            token = (await auth.authenticate("loaded", "password")).access_token
            await auth.verify(token)
            await auth.revoke(token)
        except StorageUnavailable:
            counts["unavailable"] += 1
            await asyncio.sleep(0.1)
            continue
        counts["ok"] += 1
        with pytest.raises(InvalidToken, match="revoked"):
            await auth.verify(token)
        break
    return counts


# What each kind of client may be answered, whatever the cluster does.
_ALLOWED = {
    "valid": {200, 503},
    "session": {200, 503},
    "revoked": {401, 503},
    "ended": {403, 503},  # no session: anonymous, refused by the app's @requires
}
_SERVED = ("valid", "session")


@pytest.mark.parametrize("mode", ["plain", "cached"])
async def test_redis_cluster_master_killed_under_load(
    replicated_cluster: RedisCluster, mode: str
) -> None:
    """The cluster master holding a valid token and a session SIGKILLed under 64 clients:
    never a 500, nor a 200 for a revoked token or an ended session, every 503 with Retry-After;
    once its replica is promoted, only 200s again, and logins and revocations work."""
    cluster = replicated_cluster
    config = cluster_config(cluster, retry_attempts=1, retry_delay=0.05, timeout=2)
    inner = RedisStorage(config)
    storage: AuthStorage = inner
    if mode == "cached":
        storage = CachedStorage(inner, CacheConfig(subscribe_timeout=5))
    async for auth in _opened(storage):
        headers = await _credentials(auth)
        token = headers["valid"]["Authorization"].split()[1]
        key = inner.keys.token((await auth.verify(token)).token_id)
        victim = await asyncio.to_thread(cluster.owner, key)
        headers |= await _session_cookies(auth, inner, cluster, victim)
        # Replication is asynchronous: the kill must not take the revocation with it.
        assert await asyncio.to_thread(cluster.synced, victim)
        async with Load(make_app(auth), headers, clients=64) as load:
            await load.wait_for(lambda: len(load.samples) > 200, 10)
            before = len(load.samples)
            await asyncio.to_thread(victim.kill)
            killed = time.monotonic()
            promoted = await asyncio.to_thread(
                wait_until, lambda: cluster.owner(key) is not victim, FAILOVER_LIMIT, 0.1
            )
            promoted_at = time.monotonic()
            recovered = await load.wait_for(
                lambda: all(load.recovered_since(killed, k, QUIET) is not None for k in _SERVED),
                FAILOVER_LIMIT,
            )
            await load.stop()
        logins = await _logins_until_served(auth, FAILOVER_LIMIT)
    samples = load.samples
    after_kill = [s for s in samples if s.started >= killed]
    failures = [s.ended for s in after_kill if s.kind in _SERVED and s.status != 200]
    back = [
        s.ended
        for s in after_kill
        if failures and s.kind in _SERVED and s.status == 200 and s.started >= min(failures)
    ]
    recovery = {k: load.recovered_since(killed, k, QUIET) for k in _SERVED}
    figures = {
        "requests": len(samples),
        "before": before,
        "statuses": load.statuses(),
        "after_kill": {k: load.statuses([s for s in after_kill if s.kind == k]) for k in _ALLOWED},
        "promoted_after_s": round(promoted_at - killed, 2),
        "first_200_again_s": round(min(back) - killed, 2) if back else None,
        "recovery_s": {k: None if v is None else round(v, 2) for k, v in recovery.items()},
        "max_wait_s": round(max(s.ended - s.started for s in samples), 2),
        "logins_after": logins,
    }
    report(f"redis-cluster-failover-{mode}", **figures)
    assert not [s for s in samples if s.status not in _ALLOWED[s.kind]], figures
    assert all(s.retry_after for s in samples if s.status == 503), figures
    assert promoted and recovered and logins["ok"], figures
    if mode == "plain":
        # Every look-up went to the killed master: refused until the promotion, then answered
        # by the replica.
        assert failures and back, figures


async def _cut_notifications(kind: str, server: RedisServer | PgCluster, inner: Any) -> int:
    """Kill the cache's notification connections on ``server``; return how many."""
    if kind == "redis":
        assert isinstance(server, RedisServer)
        with server.client() as admin:
            return int(admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
    assert isinstance(server, PgCluster) and isinstance(inner, PostgresStorage)
    con = await asyncpg.connect(server.url(), timeout=5)
    try:
        killed: int = await con.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1",
            f'LISTEN "{inner.invalidation_channel().name}"',
        )
    finally:
        await con.close()
    return killed


@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_notification_link_cut_while_revoking(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """The cache's pub/sub (Redis) or LISTEN (PostgreSQL) connection killed, then 20 cached
    tokens revoked by another instance: none is served past the cache ttl, the link comes
    back by itself, and a revocation after that reaches the other instance by message."""
    server = request.getfixturevalue("redis_server" if kind == "redis" else "pg_server")
    url = server.url if kind == "redis" else server.url()
    ttl = 2.0
    async with frameworks(kind, url, ttl=ttl, health_check_interval=0.5) as (a, b):
        await a.register_user("watched", "password")
        tokens = [(await a.authenticate("watched", "password")).access_token for _ in range(21)]
        for token in tokens:
            await b.verify(token)  # cached on b
        before = cache_of(b).cache_statistics()
        killed = await _cut_notifications(kind, server, cache_of(b).inner)
        assert killed >= 2  # both instances' links
        revoked_at: dict[str, float] = {}
        for token in tokens[:20]:
            await a.revoke(token)
            revoked_at[token] = time.monotonic()
        served_after: dict[str, float] = {}
        deadline = max(revoked_at.values()) + ttl + 0.2
        while time.monotonic() < deadline and len(served_after) < len(revoked_at):
            for token, at in revoked_at.items():
                if token not in served_after and b.verify_nowait(token) is None:
                    try:
                        await b.verify(token)
                    except Exception:
                        served_after[token] = time.monotonic() - at
            await asyncio.sleep(0.01)
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        for token in revoked_at:  # past the ttl: refused whatever the link did
            with pytest.raises(Exception, match="revoked"):
                await b.verify(token)
        await eventually(
            lambda: (
                cache_of(b).subscribed
                and cache_of(b).cache_statistics().subscriptions > before.subscriptions
            ),
            15,
        )
        relinked = time.monotonic()
        received = cache_of(b).cache_statistics().messages_received
        await a.revoke(tokens[20])
        await eventually(lambda: cache_of(b).cache_statistics().messages_received > received, 10)
        with pytest.raises(Exception, match="revoked"):
            await b.verify(tokens[20])
        after = cache_of(b).cache_statistics()
    report(
        f"link-cut-{kind}",
        killed=killed,
        revoked=len(revoked_at),
        refused_within_s=round(max(served_after.values(), default=0.0), 3)
        if len(served_after) == len(revoked_at)
        else "ttl",
        losses=after.subscription_losses - before.subscription_losses,
        distrusts=after.distrusts - before.distrusts,
        relinked_after_s=round(relinked - min(revoked_at.values()), 2),
    )


async def test_migrate_killed_then_rerun(redis_url: str, postgres_url: str) -> None:
    """``authmw migrate`` SIGKILLed mid-copy, then run again: every record is on the target
    exactly once (counts equal the source's), and the rerun reports the rest as present."""

    src_url = with_query(redis_url, key_prefix=prefix())
    dst_url = with_query(postgres_url, table_prefix=fresh_prefix())
    src, dst = RedisStorage(src_url), PostgresStorage(dst_url)
    await src.open()
    await dst.open()
    try:
        data = await fill(src, MIGRATED)
        await add_audit(src, 500)
        audit = data.audit + 500
        proc = subprocess.Popen(  # noqa: ASYNC220 (started once; the test waits on it below)
            [
                sys.executable,
                "-m",
                "authmw.cli",
                "migrate",
                src_url,
                dst_url,
                "--batch-size",
                "100",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        try:
            # Killed once the users are over and the tokens are on their way.
            await eventually(lambda: proc.poll() is not None or _count_sync(dst_url, "tokens"), 60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        partial = await dst.get_statistics()
        assert partial.total_tokens < MIGRATED  # the kill came mid-way
        rerun = authmw("migrate", src_url, dst_url, "--json", "--verify")
        assert rerun.returncode == 0, rerun.stderr
        kinds = json.loads(rerun.stdout)["kinds"]
        stats = await dst.get_statistics()
        assert (stats.total_users, stats.total_tokens, stats.active_sessions) == (MIGRATED,) * 3
        assert stats.kv_entries == len(data.kv) and stats.audit_events == audit
        for name in ("users", "tokens", "sessions"):
            assert kinds[name]["copied"] + kinds[name]["already_present"] == MIGRATED, kinds
            assert kinds[name]["mismatched"] == 0 and kinds[name]["verify_failed"] == 0
        assert kinds["audit"]["copied"] + kinds["audit"]["already_present"] == audit
        again = json.loads(authmw("migrate", src_url, dst_url, "--json").stdout)["kinds"]
        assert sum(k["copied"] for k in again.values()) == 0
    finally:
        await purge(src)
        await src.close()
        await dst.close()
    report(
        "migrate-sigkill",
        killed_at={"users": partial.total_users, "tokens": partial.total_tokens},
        rerun_copied={k: v["copied"] for k, v in kinds.items()},
        rerun_present={k: v["already_present"] for k, v in kinds.items()},
    )


def _count_sync(url: str, what: str) -> bool:
    """True once the target's table of ``what`` has rows (asked on a private loop in a worker
    thread: the migration's target is another process's connection)."""

    prefix = url.split("table_prefix=", 1)[1]

    async def count() -> int:
        con = await asyncpg.connect(url.split("?", 1)[0], timeout=5)
        try:
            value: int = await con.fetchval(f"SELECT count(*) FROM {prefix}{what}")
        except asyncpg.UndefinedTableError:
            value = 0
        finally:
            await con.close()
        return value

    return run_async(count) > 0


def _in_small_tmpfs(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``sh -c script sh DIR ARGS`` with DIR a fresh 64 KiB tmpfs (private mount)."""
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is needed to mount a small tmpfs"
    return authmw(
        "sh",
        "-c",
        'mount -t tmpfs -o size=64k tmpfs "$1" || exit 99; ' + script,
        "sh",
        *args,
        argv0=[unshare, "--user", "--map-root-user", "--mount"],
    )


@pytest.mark.parametrize(
    "native",
    [
        "",
        "--native",
    ],
)
async def test_full_disk_keeps_the_previous_backup(
    postgres_url: str, tmp_path: Path, native: str
) -> None:
    """A backup that fills the disk (64 KiB tmpfs) fails in one line naming the full disk,
    leaves no partial file, and the previous backup under that name is still there, whole."""

    url = with_query(postgres_url, table_prefix=fresh_prefix(), timeout="5")
    storage = PostgresStorage(url)
    await storage.open()
    try:
        await fill(storage, 600)
        (tmp_path / "old").write_text("the previous backup, standing in\n")
        mount = tmp_path / "disk"
        mount.mkdir()
        script = (
            'cp "$3" "$1/backup"; sum1=$(sha256sum < "$1/backup"); '
            '"$2" -m authmw.cli backup "$4" "$1/backup" $5; rc=$?; '
            'ls -A "$1" >&2; [ "$(sha256sum < "$1/backup")" = "$sum1" ] || echo CHANGED >&2; '
            "exit $rc"
        )
        result = _in_small_tmpfs(
            script, str(mount), sys.executable, str(tmp_path / "old"), url, native
        )
    finally:
        await storage.close()
    report(f"backup-full-disk{native}", rc=result.returncode, stderr=result.stderr.strip())
    assert result.returncode not in (0, 99), result.stderr
    lines = result.stderr.strip().splitlines()
    # Only the old file is left (ls), unchanged (no CHANGED line).
    assert lines[1:] == ["backup"], result.stderr
    # The file is named as the problem, not the storage (which was fine).
    assert "cannot write backup file" in lines[0], result.stderr
    assert "no space left on device" in lines[0].lower(), result.stderr
