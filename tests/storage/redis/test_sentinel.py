"""Sentinel failover on real processes: a master, two replicas and three sentinels on loopback.

The storage finds the master through the sentinels; the failover test kills the master while
eight tasks write, waits for the sentinels to promote a replica, and checks that the storage
carried on and that every acknowledged write (``wait_replicas=1``) is on the new master.
Tests run in file order: the failover test is last because it changes the setup.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from authmw.errors import StorageUnavailable
from authmw.models import AuthToken
from authmw.storage import storage_from_url
from authmw.storage.redis import RedisConfig, RedisFailoverConfig, RedisStorage
from tests.backends.redis import RedisServer, opened, prefix, wait_until
from tests.support.factories import make_token

DATA_PASSWORD = "data-node-password"
SENTINEL_PASSWORD = "sentinel-password"
MASTER = "authmw-master"


@dataclass
class SentinelSetup:
    """The processes of one sentinel-managed group."""

    master: RedisServer
    replicas: list[RedisServer]
    sentinels: list[RedisServer]

    @property
    def servers(self) -> list[RedisServer]:
        """Master and replicas."""
        return [self.master, *self.replicas]

    def current_master_port(self) -> int:
        """The master port a sentinel announces now."""
        with self.sentinels[0].client() as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
            return int(port)

    def failover(self, **overrides: Any) -> RedisConfig:
        """A storage config that finds the master through these sentinels."""
        fields: dict[str, Any] = {
            "url": f"redis://:{DATA_PASSWORD}@localhost/0",
            "failover": RedisFailoverConfig(
                MASTER,
                [f"127.0.0.1:{s.port}" for s in self.sentinels],
                sentinel_password=SENTINEL_PASSWORD,
            ),
            "key_prefix": prefix(),
            "timeout": 0.5,
            "retry_attempts": 12,
            "retry_delay": 0.05,
            "wait_replicas": 1,
            "wait_timeout": 2,
        }
        fields.update(overrides)
        return RedisConfig(**fields)

    def destroy(self) -> None:
        """Kill every process and remove its files."""
        for server in [*self.sentinels, *self.servers]:
            server.destroy()


@pytest.fixture(scope="module")
def sentinel_setup() -> Iterator[SentinelSetup]:
    """A password-protected master with two replicas, watched by three sentinels."""
    auth = [f"requirepass {DATA_PASSWORD}", f"masterauth {DATA_PASSWORD}"]
    master = RedisServer(auth, password=DATA_PASSWORD)
    setup = SentinelSetup(master, [], [])
    try:
        master.start()
        for _ in range(2):
            replica = RedisServer(
                [*auth, f"replicaof 127.0.0.1 {master.port}"], password=DATA_PASSWORD
            )
            setup.replicas.append(replica)
            replica.start()
        for _ in range(3):
            sentinel = RedisServer(
                [
                    f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 2",
                    f"sentinel auth-pass {MASTER} {DATA_PASSWORD}",
                    f"sentinel down-after-milliseconds {MASTER} 1000",
                    f"sentinel failover-timeout {MASTER} 6000",
                    f"sentinel parallel-syncs {MASTER} 2",
                    f"requirepass {SENTINEL_PASSWORD}",
                    f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
                ],
                sentinel=True,
                password=SENTINEL_PASSWORD,
            )
            setup.sentinels.append(sentinel)
            sentinel.start()

        def ready() -> bool:
            for sentinel in setup.sentinels:
                with sentinel.client() as client:
                    replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER)
                    others = client.execute_command("SENTINEL", "SENTINELS", MASTER)
                    if len(replicas) != 2 or len(others) != 2:
                        return False
            with master.client() as client:
                info = client.info("replication")
                return [info.get(f"slave{i}", {}).get("state") for i in range(2)] == [
                    "online",
                    "online",
                ]

        if not wait_until(ready, 30, 0.2):
            raise RuntimeError("the sentinels did not discover the replicas and each other")
        yield setup
    finally:
        setup.destroy()


@pytest.fixture
async def sentinel_storage(sentinel_setup: SentinelSetup) -> AsyncIterator[RedisStorage]:
    """An opened storage that reaches the master through the sentinels."""
    async for storage in opened(sentinel_setup.failover()):
        yield storage


async def test_finds_master_through_sentinels(
    sentinel_setup: SentinelSetup,
    sentinel_storage: RedisStorage,
) -> None:
    """Writes go to the master the sentinels name and, acknowledged, are on a replica."""
    assert sentinel_storage.mode == "sentinel"
    token = make_token("sentinel-user")
    await sentinel_storage.store_token(token)
    assert await sentinel_storage.get_token(token.token_id) == token
    key = sentinel_storage.keys.token(token.token_id)
    with sentinel_setup.master.client() as client:
        assert client.exists(key) == 1
    on_replicas = 0
    for replica in sentinel_setup.replicas:
        with replica.client() as client:
            on_replicas += int(client.exists(key))
    assert on_replicas >= 1


async def test_sentinel_url_and_wrong_sentinel_password(sentinel_setup: SentinelSetup) -> None:
    """Sentinel URLs and passwords in them work; a wrong password fails without showing it."""
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinel_setup.sentinels)
    good = storage_from_url(
        f"redis+sentinel://:{DATA_PASSWORD}@{hosts}/{MASTER}/0"
        f"?sentinel_password={SENTINEL_PASSWORD}&key_prefix={prefix()}"
    )
    assert isinstance(good, RedisStorage)
    await good.open()
    assert await good.ping() >= 0
    await good.close()
    in_url = RedisStorage(
        sentinel_setup.failover(
            failover=RedisFailoverConfig(
                MASTER,
                [
                    f"redis://:{SENTINEL_PASSWORD}@127.0.0.1:{s.port}"
                    for s in sentinel_setup.sentinels
                ],
            )
        )
    )
    await in_url.open()
    assert SENTINEL_PASSWORD not in repr(in_url)
    await in_url.close()
    bad = RedisStorage(
        sentinel_setup.failover(
            failover=RedisFailoverConfig(
                MASTER,
                [f"127.0.0.1:{sentinel_setup.sentinels[0].port}"],
                sentinel_password="not-the-password",
            ),
            retry_attempts=0,
        )
    )
    with pytest.raises(StorageUnavailable) as info:
        await bad.open()
    await bad.close()
    assert "not-the-password" not in str(info.value) and MASTER in str(info.value)


async def test_failover_under_load_keeps_acknowledged_writes(
    sentinel_setup: SentinelSetup,
) -> None:
    """Kill the master under load: the storage carries on and no acknowledged write is lost."""
    old_port = sentinel_setup.master.port
    async for storage in opened(sentinel_setup.failover()):
        acked: list[AuthToken] = []
        refused: list[StorageUnavailable] = []
        stop = asyncio.Event()

        async def writer(n: int) -> None:
            while not stop.is_set():
                token = make_token(f"load-{n}")
                try:
                    await storage.store_token(token)
                except StorageUnavailable as exc:
                    refused.append(exc)
                else:
                    acked.append(token)

        tasks = [asyncio.create_task(writer(n)) for n in range(8)]
        try:
            await asyncio.sleep(0.5)
            assert len(acked) > 20, "load is running"
            sentinel_setup.master.kill()
            killed_at = time.monotonic()
            while await asyncio.to_thread(sentinel_setup.current_master_port) == old_port:
                assert time.monotonic() - killed_at < 20, "no promotion within 20 s"
                await asyncio.sleep(0.2)
            promoted_at, mark = time.monotonic(), len(acked)
            while len(acked) < mark + 50:
                assert time.monotonic() - promoted_at < 15, "writes did not resume"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*tasks)

        new_port = sentinel_setup.current_master_port()
        promoted = next(s for s in sentinel_setup.replicas if s.port == new_port)
        with promoted.client() as client:
            assert client.info("replication")["role"] == "master"
            stored = client.mget([storage.keys.token(t.token_id) for t in acked])
        missing = [
            t.token_id
            for t, raw in zip(acked, stored, strict=True)
            if raw is None or AuthToken.from_json(raw) != t
        ]
        assert missing == [], f"{len(missing)} acknowledged writes lost"
        # The storage itself carries on: reads and new writes through the new master.
        assert await storage.get_token(acked[0].token_id) == acked[0]
        fresh = make_token("after-failover")
        await storage.store_token(fresh)
        assert await storage.get_token(fresh.token_id) == fresh
