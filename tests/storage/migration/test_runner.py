"""StorageMigration across real backends: volume, idempotency, resumption, conflicts."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from authmw.errors import ConfigurationError
from authmw.models import AuthToken, SessionData, UserRecord
from authmw.storage import InMemoryStorage, MigrationOptions, StorageMigration
from authmw.storage.base import AuthStorage, BulkImport, BulkLookup
from authmw.storage.migration import MigrationProgress
from authmw.storage.postgres import PostgresStorage
from authmw.storage.redis import RedisStorage
from tests.support.factories import make_token, make_user
from tests.support.migration_data import Dataset, add_audit, fill, make_auth


@pytest.fixture
async def memory() -> AsyncIterator[InMemoryStorage]:
    """An opened in-memory storage."""
    storage = InMemoryStorage()
    await storage.open()
    yield storage
    await storage.close()


async def snapshot(storage: AuthStorage) -> dict[str, dict[str, Any]]:
    """Every user, token and session of a storage, by key."""
    out: dict[str, dict[str, Any]] = {"users": {}, "tokens": {}, "sessions": {}}
    async for users in storage.iter_users(1000):
        out["users"].update((u.user_id, u) for u in users)
    async for tokens in storage.iter_tokens(1000):
        out["tokens"].update((t.token_id, t) for t in tokens)
    async for sessions in storage.iter_sessions(1000):
        out["sessions"].update((s.session_id, s) for s in sessions)
    return out


async def check_expired_left_behind(storage: AuthStorage, data: Dataset) -> None:
    """The expired records of the source exist nowhere in ``storage``, not even unread."""
    if isinstance(storage, RedisStorage):
        x = storage._x
        for token_id in data.expired_token_ids:
            assert not await x.read("t", "EXISTS", storage.keys.token(token_id))
        for key in data.expired_kv:
            assert not await x.read("t", "EXISTS", storage.keys.kv(key))
    elif isinstance(storage, PostgresStorage):
        prefix = storage.config.table_prefix
        async with storage.pool.acquire() as con:
            assert (
                await con.fetchval(
                    f"SELECT count(*) FROM {prefix}tokens WHERE token_id = ANY($1)",
                    data.expired_token_ids,
                )
                == 0
            )
            assert (
                await con.fetchval(
                    f"SELECT count(*) FROM {prefix}kv_store WHERE key = ANY($1)", data.expired_kv
                )
                == 0
            )
    else:
        assert isinstance(storage, InMemoryStorage)
        assert not set(data.expired_token_ids) & set(storage._t.tokens)
        assert not set(data.expired_kv) & set(storage._t.kv)


async def test_round_trip_memory_redis_postgres_memory(
    memory: InMemoryStorage, redis_storage: RedisStorage, postgres_storage: PostgresStorage
) -> None:
    """10,000 of each kind survive memory -> Redis -> PostgreSQL -> memory intact and usable."""
    data = await fill(memory, 10_000, real=200, expired=50)
    original = await snapshot(memory)
    final = InMemoryStorage()
    seen: list[MigrationProgress] = []
    hops = [(memory, redis_storage), (redis_storage, postgres_storage), (postgres_storage, final)]
    for source, target in hops:
        options = MigrationOptions(batch_size=1000, verify_data=True, progress=seen.append)
        report = await StorageMigration(source, target, options).migrate_all()
        assert report.ok, report.to_dict()
        assert report.kinds["users"].copied == data.users
        assert report.kinds["tokens"].copied == data.tokens
        assert report.kinds["sessions"].copied == data.sessions
        assert report.kinds["kv"].copied == len(data.kv)
        assert report.kinds["audit"].copied == data.audit
        assert report.total("verified") == report.total("copied")
        await check_expired_left_behind(target, data)
    assert seen and seen[0].total == data.users and seen[-1].kind == "audit"

    assert await snapshot(final) == original
    auth = make_auth(final)
    for access_token in data.access_tokens:
        assert (await auth.verify(access_token)).user_id.startswith("real")
    for session_id in data.session_ids:
        assert (await auth.get_session(session_id)).data["n"] >= 0
    keys = sorted(data.kv)
    held = await final.lookup_kv(keys)
    for key, entry in zip(keys, held, strict=True):
        assert entry is not None and entry.expires_at is not None
        assert abs(entry.expires_at.timestamp() - data.kv[key]) <= 1.0, key
    stats = await final.get_statistics()
    assert (stats.total_users, stats.total_tokens, stats.active_sessions, stats.kv_entries) == (
        data.users,
        data.tokens,
        data.sessions,
        len(data.kv),
    )


async def test_second_run_copies_nothing(
    memory: InMemoryStorage, redis_storage: RedisStorage
) -> None:
    """Running a migration twice copies nothing new and reports everything already present."""
    data = await fill(memory, 300)
    await add_audit(memory, 50)
    first = await StorageMigration(memory, redis_storage).migrate_all()
    second = await StorageMigration(
        memory, redis_storage, MigrationOptions(verify_data=True)
    ).migrate_all()
    assert first.total("copied") == second.total("already_present") > 0
    assert second.total("copied") == 0 and second.ok
    assert (await redis_storage.get_statistics()).audit_events == data.audit + 50


async def test_interrupted_migration_finishes_on_rerun(
    memory: InMemoryStorage, redis_storage: RedisStorage
) -> None:
    """A migration stopped after two batches (the callback raises) is finished by a rerun."""
    await fill(memory, 1000)

    class Stop(Exception):
        pass

    def stop_after_two(progress: MigrationProgress) -> None:
        if progress.kind == "tokens" and progress.batches == 2:
            raise Stop

    options = MigrationOptions(batch_size=100, progress=stop_after_two)
    with pytest.raises(Stop):
        await StorageMigration(memory, redis_storage, options).migrate_all()
    assert (await redis_storage.get_statistics()).total_tokens == 200
    report = await StorageMigration(
        memory, redis_storage, MigrationOptions(batch_size=100)
    ).migrate_all()
    tokens = report.kinds["tokens"]
    assert (tokens.copied, tokens.already_present) == (800, 200)
    assert report.kinds["users"].already_present == 1000
    assert await snapshot(redis_storage) == await snapshot(memory)


async def test_conflicts_are_reported_not_overwritten(memory: InMemoryStorage) -> None:
    """A differing record in the target is a conflict, kept unless overwrite is asked for."""
    target = InMemoryStorage()
    await memory.create_user(make_user("alice", roles=("admin",)))
    await memory.create_user(make_user("bob"))
    await target.create_user(make_user("alice", roles=("guest",)))
    report = await StorageMigration(memory, target).migrate_users()
    assert (report.copied, report.mismatched, report.conflicts) == (1, 1, ["alice"])
    assert not report.ok
    assert (await target.get_user("alice")).roles == ("guest",)  # type: ignore[union-attr]
    fixed = await StorageMigration(
        memory, target, MigrationOptions(overwrite=True, verify_data=True)
    ).migrate_users()
    assert (fixed.mismatched, fixed.overwritten, fixed.verified) == (1, 1, 1) and fixed.ok
    assert (await target.get_user("alice")).roles == ("admin",)  # type: ignore[union-attr]


async def test_dry_run_writes_nothing(memory: InMemoryStorage) -> None:
    """A dry run counts what it would copy and leaves the target empty."""
    await fill(memory, 50)
    target = InMemoryStorage()
    report = await StorageMigration(memory, target).with_dry_run().migrate_all()
    assert report.dry_run and report.total("copied") == 200
    stats = await target.get_statistics()
    assert (stats.total_users, stats.total_tokens, stats.kv_entries) == (0, 0, 0)
    assert "dry run" in report.summary()


async def test_without_preserve_ttl_kv_gets_default(memory: InMemoryStorage) -> None:
    """preserve_ttl=False gives kv entries the target's default TTL instead of their own."""
    await memory.kv_set("short", b"v", 30)
    target = InMemoryStorage.with_config(default_ttl=5000)
    report = await StorageMigration(memory, target).with_preserve_ttl(False).migrate_kv_data()
    assert report.copied == 1
    (entry,) = await target.lookup_kv(["short"])
    assert entry is not None and entry.expires_at is not None
    (kept,) = await memory.lookup_kv(["short"])
    assert kept is not None and kept.expires_at is not None
    assert (entry.expires_at - kept.expires_at).total_seconds() > 4000


class ProtocolOnly:
    """A storage that offers only the AuthStorage Protocol (no batch capabilities)."""

    def __init__(self, inner: AuthStorage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("import_", "lookup_")) or name == "audit_ids_unique":
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_fallback_without_batch_capabilities(memory: InMemoryStorage) -> None:
    """A target without BulkImport/BulkLookup is migrated record by record, idempotently."""
    data = await fill(memory, 120, real=3)
    inner = InMemoryStorage()
    target: Any = ProtocolOnly(inner)
    assert not isinstance(target, BulkImport) and not isinstance(target, BulkLookup)
    first = await StorageMigration(
        memory, target, MigrationOptions(batch_size=50, verify_data=True)
    ).migrate_all()
    assert first.ok and first.kinds["tokens"].copied == data.tokens
    again = await StorageMigration(memory, target).migrate_all()
    assert again.total("copied") == 0 and again.ok
    assert await snapshot(inner) == await snapshot(memory)
    for access_token in data.access_tokens:
        await make_auth(inner).verify(access_token)


async def test_verify_reports_a_bad_read_back(memory: InMemoryStorage) -> None:
    """verify_data counts records that read back differently from what was copied."""

    class Lossy(InMemoryStorage):
        async def lookup_users(self, user_ids: Any) -> list[UserRecord | None]:
            found = await super().lookup_users(user_ids)
            return [None if u is None else dataclasses.replace(u, roles=("lost",)) for u in found]

    await memory.create_user(make_user("carol"))
    report = await StorageMigration(memory, Lossy()).with_verify_data().migrate_users()
    assert (report.copied, report.verify_failed, report.failed) == (1, 1, ["carol"])
    assert not report.ok


async def test_expired_in_flight_is_skipped(memory: InMemoryStorage) -> None:
    """A record that expires between reading and writing is counted, not written."""

    class Stale(InMemoryStorage):
        async def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list[AuthToken]]:
            yield [make_token("dave", ttl=-10, refresh_ttl=None)]

    target = InMemoryStorage()
    report = await StorageMigration(Stale(), target).migrate_tokens()
    assert (report.read, report.skipped_expired, report.copied) == (1, 1, 0)
    assert (await target.get_statistics()).total_tokens == 0


async def test_same_storage_and_bad_options_refused(memory: InMemoryStorage) -> None:
    """Migrating a storage onto itself, or a batch size below one, is a configuration error."""
    with pytest.raises(ConfigurationError):
        StorageMigration(memory, memory)
    with pytest.raises(ConfigurationError):
        MigrationOptions(batch_size=0)
    migration = StorageMigration(memory, InMemoryStorage()).with_batch_size(7)
    assert migration.options.batch_size == 7 and "memory" in repr(migration)


async def test_redis_cluster_import(
    memory: InMemoryStorage, redis_cluster_storage: RedisStorage
) -> None:
    """On a cluster the import goes slot by slot and is still idempotent and complete."""
    data = await fill(memory, 150, real=5)
    report = await StorageMigration(
        memory, redis_cluster_storage, MigrationOptions(verify_data=True)
    ).migrate_all()
    assert report.ok and report.kinds["sessions"].copied == data.sessions
    again = await StorageMigration(memory, redis_cluster_storage).migrate_all()
    assert again.total("copied") == 0 and again.ok
    assert await snapshot(redis_cluster_storage) == await snapshot(memory)
    auth = make_auth(redis_cluster_storage)
    for access_token in data.access_tokens:
        await auth.verify(access_token)
    user_tokens = await redis_cluster_storage.list_user_tokens("user000001")
    assert len(user_tokens) == 1  # the user index came along
    sessions: list[SessionData] = await redis_cluster_storage.list_user_sessions("user000001")
    assert len(sessions) == 1
