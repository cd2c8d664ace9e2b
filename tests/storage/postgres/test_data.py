"""PostgreSQL data behaviour beyond the shared suite: expiry, clean-up, statistics, audit, races."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from authmw.errors import InvalidInput, UserExists
from authmw.models import AuditEvent, utcnow
from authmw.storage.postgres import PostgresConfig, PostgresOptimization, PostgresStorage
from tests.backends.postgres import fresh_prefix
from tests.support.factories import make_session, make_token, make_user


def _config(url: str, prefix: str, **kw: object) -> PostgresConfig:
    return PostgresConfig(url=url, table_prefix=prefix, timeout=10, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[PostgresStorage]:
    """A storage on a fresh prefix of its own."""
    storage = PostgresStorage.with_config(_config(postgres_url, fresh_prefix()))
    await storage.open()
    yield storage
    await storage.close()


async def _raw_count(storage: PostgresStorage, table: str) -> int:
    async with storage.pool.acquire() as con:
        count: int = await con.fetchval(
            f"SELECT count(*) FROM {storage.config.table_prefix}{table}"
        )
        return count


async def test_rows_expiring_while_stored_are_never_read(pg: PostgresStorage) -> None:
    """Rows still present in the tables after their expiry are invisible to every read."""
    token = make_token("exp", ttl=0.3, refresh_ttl=0.3)
    session = make_session("exp", ttl=0.3)
    await pg.store_token(token)
    await pg.store_session(session)
    await pg.kv_set("exp", b"1", ttl=0.3)
    assert await pg.get_token(token.token_id) is not None
    await asyncio.sleep(0.45)
    assert await _raw_count(pg, "tokens") == 1 and await _raw_count(pg, "sessions") == 1
    assert await pg.get_token(token.token_id) is None
    assert token.refresh_id is not None
    assert await pg.get_token_by_refresh(token.refresh_id) is None
    assert await pg.list_user_tokens("exp") == []
    assert await pg.get_session(session.session_id) is None
    assert await pg.list_user_sessions("exp") == []
    assert await pg.kv_get("exp") is None
    assert [t async for b in pg.iter_tokens() for t in b] == []
    assert [s async for b in pg.iter_sessions() for s in b] == []
    assert [e async for b in pg.iter_kv() for e in b] == []
    stats = await pg.get_statistics()
    assert (stats.total_tokens, stats.active_sessions, stats.kv_entries) == (0, 0, 0)
    revoked = dataclasses.replace(token, revoked_at=utcnow())
    assert await pg.rotate_token(revoked, make_token("exp")) is False
    assert await pg.delete_token(token.token_id) is False  # deleted, but it was not live
    assert await pg.delete_user_sessions("exp") == 0


async def test_cleanup_methods_remove_expired_rows(pg: PostgresStorage) -> None:
    """cleanup_expired_tokens/_sessions/_kv delete exactly the expired rows and count them."""
    for _ in range(3):
        await pg.store_token(make_token("c", ttl=-5, refresh_ttl=-1))
        await pg.store_session(make_session("c", ttl=-1))
    await pg.kv_set("dead", b"1", ttl=0.01)
    live_token, live_session = make_token("c"), make_session("c")
    await pg.store_token(live_token)
    await pg.store_session(live_session)
    await pg.kv_set("live", b"1", ttl=60)
    await asyncio.sleep(0.05)
    assert await pg.cleanup_expired_tokens() == 3
    assert await pg.cleanup_expired_sessions() == 3
    assert await pg.cleanup_expired_kv() == 1
    assert await pg.cleanup_expired() == {"tokens": 0, "sessions": 0, "kv": 0, "audit": 0}
    assert await _raw_count(pg, "tokens") == 1 and await _raw_count(pg, "sessions") == 1
    assert await pg.get_token(live_token.token_id) == live_token
    assert await pg.get_session(live_session.session_id) == live_session


async def test_cleanup_works_in_batches(postgres_url: str) -> None:
    """A backlog larger than batch_size is removed completely, batch by batch."""
    storage = PostgresStorage.with_config(
        _config(postgres_url, fresh_prefix(), optimization=PostgresOptimization(batch_size=7))
    )
    await storage.open()
    try:
        await asyncio.gather(
            *(storage.store_token(make_token("b", ttl=-5, refresh_ttl=-1)) for _ in range(30))
        )
        assert await storage.cleanup_expired_tokens() == 30
        assert await _raw_count(storage, "tokens") == 0
    finally:
        await storage.close()


async def test_background_cleanup_runs_every_interval(postgres_url: str) -> None:
    """open() starts a task that deletes expired rows every cleanup_interval; close() stops it."""
    storage = PostgresStorage.with_config(
        _config(postgres_url, fresh_prefix(), cleanup_interval=0.1)
    )
    await storage.open()
    try:
        await storage.store_token(make_token("bg", ttl=-5, refresh_ttl=-1))
        await storage.store_session(make_session("bg", ttl=-1))
        for _ in range(50):
            if (await _raw_count(storage, "tokens"), await _raw_count(storage, "sessions")) == (
                0,
                0,
            ):
                break
            await asyncio.sleep(0.05)
        assert await _raw_count(storage, "tokens") == 0
        assert await _raw_count(storage, "sessions") == 0
    finally:
        await storage.close()
    assert storage._db.cleanup_task is None


async def test_audit_log_trimmed_to_max_events(postgres_url: str) -> None:
    """With max_audit_events set, clean-up keeps only that many newest events."""
    storage = PostgresStorage.with_config(_config(postgres_url, fresh_prefix(), max_audit_events=5))
    await storage.open()
    try:
        base = utcnow()
        for i in range(12):
            await storage.append_audit(
                AuditEvent(
                    action="login",
                    outcome=True,
                    user_id="a",
                    timestamp=base + timedelta(seconds=i),
                    metadata={"i": i},
                )
            )
        assert (await storage.cleanup_expired())["audit"] == 7
        kept = await storage.query_audit(limit=100)
        assert [e.metadata["i"] for e in kept] == [11, 10, 9, 8, 7]
    finally:
        await storage.close()


async def test_audit_disabled_drops_events(postgres_url: str) -> None:
    """enable_audit_log=False: appends are dropped, queries return nothing, table stays empty."""
    storage = PostgresStorage.with_config(
        _config(postgres_url, fresh_prefix(), enable_audit_log=False)
    )
    await storage.open()
    try:
        await storage.append_audit(AuditEvent(action="login", outcome=True, user_id="a"))
        assert await storage.query_audit() == []
        assert await _raw_count(storage, "audit_log") == 0
    finally:
        await storage.close()


async def test_audit_event_round_trip_and_idempotent_append(pg: PostgresStorage) -> None:
    """Every audit field reads back; appending the same event id twice stores it once."""
    event = AuditEvent(
        action="token.revoke",
        outcome=False,
        user_id="u",
        resource="token:x",
        ip_address="testclient",
        user_agent="curl/8",
        metadata={"why": ["a"]},
    )
    await pg.append_audit(event)
    await pg.append_audit(event)
    assert await pg.query_audit() == [event]


async def test_statistics_report_sizes(pg: PostgresStorage) -> None:
    """get_statistics fills database_size_mb, table sizes and pool figures."""
    await pg.create_user(make_user("s"))
    await pg.store_token(make_token("s"))
    await pg.store_session(make_session("s"))
    stats = await pg.get_statistics()
    assert stats.backend == "postgres"
    assert (stats.total_users, stats.total_tokens, stats.active_sessions) == (1, 1, 1)
    assert stats.database_size_mb is not None and stats.database_size_mb > 1
    assert stats.extra["tables_size_mb"] > 0
    assert stats.extra["pool_max"] == 10 and stats.extra["pool_size"] >= 1


async def test_races_across_instances(postgres_url: str) -> None:
    """Two instances (two pools) racing: one user creation and one rotation win."""
    prefix = fresh_prefix()
    a = PostgresStorage.with_config(_config(postgres_url, prefix))
    b = PostgresStorage.with_config(_config(postgres_url, prefix))
    await a.open()
    await b.open()
    try:
        results = await asyncio.gather(
            *(s.create_user(make_user("twin")) for s in (a, b) * 10), return_exceptions=True
        )
        assert sum(r is None for r in results) == 1
        assert all(isinstance(r, UserExists) for r in results if r is not None)
        old = make_token("twin")
        await a.store_token(old)
        retired = dataclasses.replace(old, revoked_at=utcnow(), revoke_reason="rotated")
        successors = [make_token("twin", family_id=old.family_id) for _ in range(20)]
        wins = await asyncio.gather(
            *((a if i % 2 else b).rotate_token(retired, s) for i, s in enumerate(successors))
        )
        assert sum(wins) == 1
        assert len(await a.list_user_tokens("twin")) == 2
        counts = await asyncio.gather(*((a, b)[i % 2].kv_incr("n", 60) for i in range(40)))
        assert sorted(counts) == list(range(1, 41))
    finally:
        await a.close()
        await b.close()


async def test_values_postgres_refuses_raise_invalid_input(pg: PostgresStorage) -> None:
    """NUL bytes in text, NaN in session data and a non-integer counter are caller errors."""
    with pytest.raises(InvalidInput):
        await pg.create_user(make_user("nul\x00byte"))
    with pytest.raises(ValueError):
        await pg.store_session(make_session(data={"x": float("nan")}))
    await pg.kv_set("text", b"abc", ttl=60)
    with pytest.raises(InvalidInput):
        await pg.kv_incr("text", 60)


async def test_bulk_iterators_page_through_many_rows(pg: PostgresStorage) -> None:
    """Keyset pagination returns each row once across many pages, audit oldest first."""
    async with pg.pool.acquire() as con:
        await con.executemany(
            f"INSERT INTO {pg.config.table_prefix}kv_store (key, value, expires_at) "
            "VALUES ($1, $2, $3)",
            [(f"k{i:04d}", b"v", utcnow() + timedelta(minutes=5)) for i in range(250)],
        )
    keys = [e.key async for batch in pg.iter_kv(batch_size=40) for e in batch]
    assert keys == sorted(keys) and len(set(keys)) == 250
    same_time = utcnow()
    for i in range(9):
        await pg.append_audit(
            AuditEvent(action="a", outcome=True, timestamp=same_time, metadata={"i": i})
        )
    order = [e.metadata["i"] async for batch in pg.iter_audit(batch_size=4) for e in batch]
    assert order == list(range(9))
    with pytest.raises(ValueError):
        [b async for b in pg.iter_users(batch_size=0)]


async def test_kv_counter_stored_as_decimal_text(pg: PostgresStorage) -> None:
    """Counters are stored as ASCII digits and keep their window's expiry."""
    await pg.kv_incr("c", 60)
    async with pg.pool.acquire() as con:
        first = await con.fetchrow(
            f"SELECT value, expires_at FROM {pg.config.table_prefix}kv_store WHERE key = 'c'"
        )
    await pg.kv_incr("c", 600)
    async with pg.pool.acquire() as con:
        second = await con.fetchrow(
            f"SELECT value, expires_at FROM {pg.config.table_prefix}kv_store WHERE key = 'c'"
        )
    assert (first["value"], second["value"]) == (b"1", b"2")
    assert first["expires_at"] == second["expires_at"]
    assert isinstance(second, asyncpg.Record)
