"""The Redis key layout: names, TTLs from each record's expiry, bounded indexes, no KEYS."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import RedisCluster

from authmw._time import now_ts
from authmw.models import AuditEvent, utcnow
from authmw.storage.redis import RedisConfig, RedisStorage
from authmw.storage.redis._keys import ms
from tests.backends.redis import opened, prefix
from tests.support.factories import make_session, make_token, make_user


@pytest.fixture(params=["redis", "redis-cluster"])
def rs(request: pytest.FixtureRequest) -> RedisStorage:
    """A fresh storage on the single server, then on the cluster."""
    name = {"redis": "redis_storage", "redis-cluster": "redis_cluster_storage"}[request.param]
    storage: RedisStorage = request.getfixturevalue(name)
    return storage


async def cmd(storage: RedisStorage, *args: Any) -> Any:
    """One raw command on the storage's own client (routed by key on a cluster)."""
    return await storage._x.client.execute_command(*args)


async def keys_of(storage: RedisStorage) -> set[str]:
    """Every key under the storage's prefix, without the prefix."""
    found: set[str] = set()
    async for batch in storage._reads.scan("test", storage.config.key_prefix + "*"):
        found.update(k.decode()[len(storage.config.key_prefix) :] for k in batch)
    return found


async def pttl_s(storage: RedisStorage, key: str) -> float:
    """The key's remaining life in seconds (-1: no expiry, -2: no key)."""
    value = int(await cmd(storage, "PTTL", key))
    return value / 1000 if value >= 0 else float(value)


async def test_key_names(rs: RedisStorage) -> None:
    """Each record lands under the documented key, ids inside {hash tags}."""
    token, session = make_token("ann"), make_session("ann")
    await rs.create_user(make_user("ann"))
    await rs.store_token(token)
    await rs.store_session(session)
    await rs.kv_set("k", b"v", ttl=60)
    await rs.append_audit(AuditEvent(action="login", outcome=True, user_id="ann"))
    assert await keys_of(rs) == {
        "user:{ann}",
        f"token:{{{token.token_id}}}",
        f"refresh:{{{token.refresh_id}}}",
        "user:{ann}:tokens",
        f"session:{{{session.session_id}}}",
        "user:{ann}:sessions",
        "kv:{k}",
        "audit",
    }


async def test_ttls_follow_each_record(rs: RedisStorage) -> None:
    """Every key expires with its record; users and the audit stream do not expire."""
    token = make_token("bea", ttl=100, refresh_ttl=500)
    session = make_session("bea", ttl=300)
    await rs.create_user(make_user("bea"))
    await rs.store_token(token)
    await rs.store_session(session)
    await rs.kv_set("k", b"v", ttl=40)
    await rs.append_audit(AuditEvent(action="login", outcome=True))
    k = rs.keys
    expected = {
        k.token(token.token_id): 500,
        k.refresh(str(token.refresh_id)): 500,
        k.user_tokens("bea"): 500,
        k.session(session.session_id): 300,
        k.user_sessions("bea"): 300,
        k.kv("k"): 40,
    }
    for key, seconds in expected.items():
        assert seconds - 2 < await pttl_s(rs, key) <= seconds, key
    assert await pttl_s(rs, k.user("bea")) == -1
    assert await pttl_s(rs, k.audit) == -1


async def test_secrets_are_not_stored(rs: RedisStorage) -> None:
    """The stored token JSON has digests only, never the raw token strings."""
    token = dataclasses.replace(make_token(), access_token="RAW-ACCESS", refresh_token="RAW-R")
    await rs.store_token(token)
    raw = await cmd(rs, "GET", rs.keys.token(token.token_id))
    assert b"RAW-" not in raw
    assert json.loads(raw)["access_digest"] == token.access_digest.hex()


async def test_index_is_pruned_on_write(rs: RedisStorage) -> None:
    """Expired members leave a user's index on the next write: it never grows unbounded."""
    await asyncio.gather(
        *(rs.store_token(make_token("cal", ttl=1, refresh_ttl=None)) for _ in range(20))
    )
    await asyncio.gather(*(rs.store_session(make_session("cal", ttl=1)) for _ in range(20)))
    assert await cmd(rs, "ZCARD", rs.keys.user_tokens("cal")) == 20
    await asyncio.sleep(1.1)
    await rs.store_token(make_token("cal"))
    await rs.store_session(make_session("cal"))
    assert await cmd(rs, "ZCARD", rs.keys.user_tokens("cal")) == 1
    assert await cmd(rs, "ZCARD", rs.keys.user_sessions("cal")) == 1


async def test_index_expires_with_its_last_member(rs: RedisStorage) -> None:
    """An index whose members all expired disappears by itself."""
    await rs.store_token(make_token("dee", ttl=0.2, refresh_ttl=None))
    await asyncio.sleep(0.3)
    assert await cmd(rs, "EXISTS", rs.keys.user_tokens("dee")) == 0


async def test_cleanup_prunes_indexes_of_idle_users(rs: RedisStorage) -> None:
    """cleanup_expired removes expired members that no later write pruned."""
    await rs.store_token(make_token("eve"))
    await rs.store_session(make_session("eve"))
    await asyncio.gather(
        *(rs.store_token(make_token("eve", ttl=0.5, refresh_ttl=None)) for _ in range(5))
    )
    await asyncio.gather(*(rs.store_session(make_session("eve", ttl=0.5)) for _ in range(5)))
    await asyncio.sleep(0.6)
    removed = await rs.cleanup_expired()
    assert removed["tokens"] == 5 and removed["sessions"] == 5 and removed["index_keys"] == 2
    assert await cmd(rs, "ZCARD", rs.keys.user_tokens("eve")) == 1
    assert len(await rs.list_user_tokens("eve")) == 1


async def test_touch_moves_key_ttl_and_index_score(rs: RedisStorage) -> None:
    """touch_session moves the session key's expiry and its index score together."""
    session = make_session("fay", ttl=60)
    await rs.store_session(session)
    expires = utcnow() + timedelta(hours=2)
    assert await rs.touch_session(session.session_id, utcnow(), expires)
    score = float(await cmd(rs, "ZSCORE", rs.keys.user_sessions("fay"), session.session_id))
    assert score == ms(expires.timestamp())
    assert await pttl_s(rs, rs.keys.session(session.session_id)) > 3600
    short = utcnow()
    assert await rs.touch_session(session.session_id, short, short)
    assert await cmd(rs, "EXISTS", rs.keys.session(session.session_id)) == 0
    assert await cmd(rs, "ZCARD", rs.keys.user_sessions("fay")) == 0


async def test_stale_refresh_hint_finds_nothing(rs: RedisStorage) -> None:
    """A refresh index entry pointing at a token with another refresh id finds nothing."""
    token = make_token("gus")
    await rs.store_token(token)
    await cmd(rs, "SET", rs.keys.refresh("forged-refresh"), token.token_id)
    assert await rs.get_token_by_refresh("forged-refresh") is None


async def test_dangling_index_member_is_harmless(rs: RedisStorage) -> None:
    """An index member without a record (an interrupted write) is never listed or counted."""
    later = ms(now_ts() + 600)
    await cmd(rs, "ZADD", rs.keys.user_tokens("hal"), later, "no-such-token")
    await cmd(rs, "ZADD", rs.keys.user_sessions("hal"), later, "no-such-session")
    assert await rs.list_user_tokens("hal") == []
    assert await rs.list_user_sessions("hal") == []
    assert await rs.delete_user_tokens("hal") == 0
    assert await rs.delete_user_sessions("hal") == 0
    assert await cmd(rs, "EXISTS", rs.keys.user_tokens("hal")) == 0


async def test_rotation_replay_is_idempotent(rs: RedisStorage) -> None:
    """Re-sending a rotation whose reply was lost wins again; a different successor loses."""
    old = make_token("ida")
    await rs.store_token(old)
    retired = dataclasses.replace(old, revoked_at=utcnow(), revoke_reason="rotated")
    new = make_token("ida", family_id=old.family_id)
    assert await rs.rotate_token(retired, new)
    assert await rs.rotate_token(retired, new)  # the same request again
    assert not await rs.rotate_token(retired, make_token("ida"))
    assert [t.token_id for t in await rs.list_user_tokens("ida") if not t.is_revoked] == [
        new.token_id
    ]


async def test_delete_user_tokens_in_batches(rs: RedisStorage) -> None:
    """Deleting more tokens than one script batch handles still deletes all of them."""
    tokens = [make_token("jon") for _ in range(1100)]
    await asyncio.gather(*(rs.store_token(t) for t in tokens))
    assert await rs.delete_user_tokens("jon") == 1100
    assert await keys_of(rs) == set()


async def test_no_keys_command(rs: RedisStorage) -> None:
    """Listing, counting, statistics, iteration and clean-up never send KEYS."""

    async def keys_calls() -> int:
        client = rs._x.client
        if isinstance(client, RedisCluster):
            stats = await client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
            sections = list(stats.values())
        else:
            sections = [await client.info("commandstats")]
        return sum(int(s.get("cmdstat_keys", {}).get("calls", 0)) for s in sections)

    before = await keys_calls()
    await rs.store_token(make_token("kim"))
    await rs.store_session(make_session("kim"))
    await rs.count_active_sessions()
    await rs.get_statistics()
    await rs.cleanup_expired()
    await rs.list_user_tokens("kim")
    async for _ in rs.iter_tokens():
        pass
    assert await keys_calls() == before


async def test_statistics_measure_memory(rs: RedisStorage) -> None:
    """Statistics sample MEMORY USAGE: a token with its indexes costs about 1 KB or less."""
    await asyncio.gather(*(rs.store_token(make_token(f"u{i % 10}")) for i in range(200)))
    stats = await rs.get_statistics()
    assert stats.total_tokens == 200 and stats.memory_bytes is not None
    per_token = stats.memory_bytes / 200
    assert 300 < per_token < 2048, stats.extra
    assert stats.extra["server_used_memory"] > stats.memory_bytes
    assert stats.extra["mode"] == ("cluster" if rs.config.is_cluster else "standalone")


async def test_audit_stream_is_capped(redis_url: str) -> None:
    """The audit stream stays near max_audit_events; queries still see the newest first."""
    config = RedisConfig(url=redis_url, key_prefix=prefix(), max_audit_events=100)
    async for storage in opened(config):
        for i in range(1000):
            await storage.append_audit(AuditEvent(action="login", outcome=True, metadata={"i": i}))
        length = int(await cmd(storage, "XLEN", storage.keys.audit))
        assert 100 <= length <= 250  # MAXLEN ~ trims whole stream nodes
        newest = await storage.query_audit(limit=3)
        assert [e.metadata["i"] for e in newest] == [999, 998, 997]


async def test_glob_characters_in_prefix_stay_isolated(redis_url: str) -> None:
    """A prefix with glob characters never lets SCAN see another prefix's keys."""
    base = prefix()
    stars = RedisConfig(url=redis_url, key_prefix=base + "*[x]?:")
    plain = RedisConfig(url=redis_url, key_prefix=base + "ab:")
    async for starred in opened(stars):
        async for other in opened(plain):
            await other.store_session(make_session("zed"))
            await other.store_token(make_token("zed"))
            await starred.store_session(make_session("zed"))
            assert await starred.count_active_sessions() == 1
            assert (await starred.get_statistics()).total_tokens == 0
            assert await other.count_active_sessions() == 1
