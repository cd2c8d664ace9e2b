"""Cluster mode on a private three-master cluster: hash tags, redirects, fail-closed writes;
and on a cluster with replicas, a master's failover.

The behaviour suite itself runs on the shared cluster as ``[redis-cluster]``; these tests move
slots around, so they get a cluster of their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.crc import key_slot
from redis.exceptions import ClusterError

from authmw._time import now_ts
from authmw.errors import StorageUnavailable
from authmw.models import utcnow
from authmw.storage.redis import RedisStorage
from authmw.storage.redis._keys import ms
from tests.backends.redis import RedisCluster, RedisServer, cluster_config, opened, wait_until
from tests.support.factories import make_session, make_token


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[RedisCluster]:
    """Three masters these tests may reconfigure."""
    cluster = RedisCluster()
    try:
        yield cluster.start()
    finally:
        cluster.destroy()


@pytest.fixture
async def cs(private_cluster: RedisCluster) -> AsyncIterator[RedisStorage]:
    """An opened cluster-mode storage with a prefix of its own."""
    async for storage in opened(
        cluster_config(private_cluster, retry_attempts=1, retry_delay=0.01)
    ):
        yield storage


def slot(key: str) -> int:
    """The hash slot of a key."""
    return int(key_slot(key.encode()))


def node_id(node: RedisServer) -> str:
    """A node's cluster id."""
    with node.client() as client:
        return str(client.execute_command("CLUSTER", "MYID").decode())


def test_keys_written_together_share_a_slot(cs: RedisStorage) -> None:
    """A token shares its slot with its rotation marker; a user with the user's indexes."""
    k = cs.keys
    assert slot(k.token("abc")) == slot(k.token_next("abc"))
    assert (
        slot(k.user("ü:x{y}")) == slot(k.user_tokens("ü:x{y}")) == slot(k.user_sessions("ü:x{y}"))
    )
    assert slot(k.token("abc")) != slot(k.token("abd"))  # ids spread over the cluster


async def test_records_spread_over_the_masters(
    cs: RedisStorage,
    private_cluster: RedisCluster,
) -> None:
    """Tokens of one storage land on every master, not on one pinned slot."""
    for _ in range(60):
        await cs.store_token(make_token("spread"))
    per_node = []
    for node in private_cluster.nodes:
        with node.client() as client:
            per_node.append(sum(1 for _ in client.scan_iter(cs.config.key_prefix + "token:*")))
    assert sum(per_node) == 60 and all(n > 0 for n in per_node)


async def test_follows_moved_after_a_slot_migrates(
    cs: RedisStorage,
    private_cluster: RedisCluster,
) -> None:
    """After a token's slot moves to another master the storage follows MOVED transparently."""
    token = make_token("mover")
    await cs.store_token(token)
    key = cs.keys.token(token.token_id)
    source = private_cluster.owner(key)
    target = next(n for n in private_cluster.nodes if n is not source)
    moving, source_id, target_id = slot(key), node_id(source), node_id(target)
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER", "SETSLOT", moving, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", moving, "MIGRATING", target_id)
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", moving, 100)
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in (
            target,
            source,
            *(n for n in private_cluster.nodes if n not in (source, target)),
        ):
            with node.client() as client:
                client.execute_command("CLUSTER", "SETSLOT", moving, "NODE", target_id)
    assert private_cluster.owner(key) is target
    assert await cs.get_token(token.token_id) == token
    retired = dataclasses.replace(token, revoked_at=utcnow(), revoke_reason="rotated")
    assert await cs.rotate_token(retired, make_token("mover"))


async def test_redirect_loop_becomes_storage_unavailable(
    cs: RedisStorage,
    private_cluster: RedisCluster,
) -> None:
    """Two masters each redirecting to the other: retries run out, StorageUnavailable."""
    token_id = "redirect-loop-probe"
    key = cs.keys.token(token_id)
    first = private_cluster.owner(key)
    second = next(n for n in private_cluster.nodes if n is not first)
    looping, first_id, second_id = slot(key), node_id(first), node_id(second)
    with first.client() as a, second.client() as b:
        assert a.execute_command("CLUSTER", "COUNTKEYSINSLOT", looping) == 0
        a.execute_command("CLUSTER", "SETSLOT", looping, "NODE", second_id)
        b.execute_command("CLUSTER", "SETSLOT", looping, "NODE", first_id)
        try:
            with pytest.raises(StorageUnavailable) as info:
                await cs.get_token(token_id)
            assert isinstance(info.value.__cause__, ClusterError)
            assert "TTL exhausted" in str(info.value)
        finally:
            a.execute_command("CLUSTER", "SETSLOT", looping, "NODE", first_id)
            b.execute_command("CLUSTER", "SETSLOT", looping, "NODE", first_id)
    assert await cs.get_token(token_id) is None  # the slot serves again


async def test_interrupted_rotation_fails_closed(cs: RedisStorage) -> None:
    """A rotation stopped right after its compare-and-set leaves no usable successor."""
    old = make_token("halfway")
    await cs.store_token(old)
    retired = dataclasses.replace(old, revoked_at=utcnow(), revoke_reason="rotated")
    new = make_token("halfway", family_id=old.family_id)
    won, _ = await cs._x.script(
        "rotate_token",
        "tok_cas",
        [cs.keys.token(old.token_id), cs.keys.token_next(old.token_id)],
        [retired.stored().to_json(), ms(retired.storage_expires_ts), ms(now_ts()), new.token_id],
    )
    assert won == 1  # ... and then the process died
    assert await cs.get_token(new.token_id) is None
    stored_old = await cs.get_token(old.token_id)
    assert stored_old is not None and stored_old.is_revoked
    assert not await cs.rotate_token(retired, make_token("halfway"))


async def test_interrupted_session_write_stays_revocable(cs: RedisStorage) -> None:
    """The index entry is written before the session, so revoke-all always finds it."""
    session = make_session("revocable")
    writes = cs._writes
    index = cs.keys.user_sessions("revocable")
    await writes._index_before(
        "store_session",
        index,
        session.session_id,  # type: ignore[union-attr]
        ms(session.expires_ts),
    )
    json_text = session.to_json()
    await cs._x.script(
        "store_session",
        "ses_put",
        [cs.keys.session(session.session_id)],
        [
            json_text,
            session.last_accessed.isoformat(),
            session.expires_at.isoformat(),
            "revocable",
            ms(session.expires_ts),
            ms(now_ts()),
        ],
    )
    # ... stopped before the exact index score was set: still found and deleted.
    assert await cs.delete_user_sessions("revocable") == 1
    assert await cs.get_session(session.session_id) is None


async def test_scans_before_any_other_command_see_every_node(cs: RedisStorage) -> None:
    """A storage whose first command is a SCAN (count, iterate) still finds every record: the
    cluster topology is learnt before the nodes are listed."""
    await cs.store_session(make_session("early"))
    fresh = RedisStorage(cs.config)  # not opened: no command has taught it the topology yet
    try:
        assert await fresh.count_active_sessions() == 1
    finally:
        await fresh.close()


async def test_unsafe_write_after_a_failover_lands_once(replicated_cluster: RedisCluster) -> None:
    """A master killed and its replica promoted: an increment (not safe to repeat) of a key the
    client last reached over a pooled connection to the dead master is counted once, not
    refused on the dead socket - and no command is lost or run twice."""
    cluster = replicated_cluster
    async for storage in opened(cluster_config(cluster, retry_attempts=2, retry_delay=0.05)):
        victim = cluster.owner(storage.keys.kv("k0"))
        name = "k0"
        for _ in range(4):  # pooled connections to the victim, idle now
            await storage.kv_incr(name, 600)
        assert cluster.synced(victim)
        victim.kill()

        def promoted() -> bool:
            return cluster.owner(storage.keys.kv(name)) is not victim

        # In a thread: the loop runs meanwhile, as a server's would, and sees the sockets close.
        assert await asyncio.to_thread(wait_until, promoted, 60, 0.1)
        assert await storage.kv_incr(name, 600) == 5
        assert await storage.kv_get(name) == b"5"
