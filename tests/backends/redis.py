"""Redis backends for the behaviour suite, and the throwaway servers Redis tests use.

The run's server is ``AUTHMW_REDIS_URL`` when set, else 127.0.0.1:6379 when it answers, else a
throwaway ``redis-server`` started here on a free loopback port (``AUTHMW_REDIS_THROWAWAY=1``
forces the throwaway server). Each behaviour test gets its
own key prefix (``authmw-test:<random>:``) whose keys are removed afterwards with SCAN+UNLINK.
The cluster variant runs the same suite on three masters started for the session; the failover
tests build one with a replica per master (:class:`RedisCluster`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from authmw.storage.redis import RedisConfig, RedisStorage
from authmw.storage.redis._keys import glob_escape

BACKENDS = {"redis": "redis_storage", "redis-cluster": "redis_cluster_storage"}

LOCAL_URL = "redis://127.0.0.1:6379/0"


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(cluster_bus: bool = False) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now. A cluster node also needs
    port + 10000 (its bus) free, so its port must stay at or below 55535."""
    if not cluster_bus:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port
    for _ in range(200):
        port = 20000 + secrets.randbelow(30000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check`` (exceptions count as False) until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def redis_binary(name: str = "redis-server") -> str:
    """The path of ``redis-server``/``redis-cli``; fails clearly if missing."""
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} is not installed and the tests need throwaway Redis servers; install it "
            "(e.g. apt-get install redis-server) or set AUTHMW_REDIS_URL for the basic suite"
        )
    return found


def prefix() -> str:
    """A key prefix no other test uses (no braces: cluster mode refuses them)."""
    return f"authmw-test:{secrets.token_hex(6)}:"


class RedisServer:
    """A throwaway ``redis-server`` (or sentinel) on a free loopback port, in a temp dir.

    ``conf`` lines are added to its config file. Always call :meth:`destroy` (fixtures do, in
    ``finally``); :meth:`kill` is a crash (SIGKILL), :meth:`start` may be called again after.
    """

    def __init__(
        self,
        conf: Sequence[str] = (),
        *,
        sentinel: bool = False,
        password: str | None = None,
        cluster: bool = False,
    ) -> None:
        self.port = free_port(cluster_bus=cluster)
        self.root = Path(tempfile.mkdtemp(prefix="authmw-redis-"))
        self.sentinel = sentinel
        self.password = password
        self.conf = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.root}",
            f"logfile {self.root / 'server.log'}",
            # Throwaway data: no persistence, and replicas sync at once (not after 5 s).
            *([] if sentinel else ['save ""', "appendonly no", "repl-diskless-sync-delay 0"]),
            *conf,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:port/0``."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous admin client (short timeouts)."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=2,
            socket_connect_timeout=2,
        )

    def start(self, timeout: float = 15) -> RedisServer:
        """Write the config, start the process and wait until it answers PING."""
        conf_file = self.root / "redis.conf"
        if not conf_file.exists():  # a sentinel rewrites its own file: keep what it wrote
            conf_file.write_text("\n".join(self.conf) + "\n")
        argv = [redis_binary(), str(conf_file), *(["--sentinel"] if self.sentinel else [])]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:  # exited: stop waiting
                raise RuntimeError
            return bool(client.ping())

        with self.client() as client:
            try:
                started = wait_until(up, timeout)
            except RuntimeError:
                started = False
            if not started:
                log = self.root / "server.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                self.destroy()
                raise RuntimeError(f"redis-server on port {self.port} did not start\n{tail}")
        return self

    def kill(self) -> None:
        """Crash the server (SIGKILL) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def destroy(self) -> None:
        """Kill the server and remove its files."""
        try:
            self.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of the run's Redis server (found or started)."""
    configured = os.environ.get("AUTHMW_REDIS_URL")
    if configured:
        yield configured
        return
    if not os.environ.get("AUTHMW_REDIS_THROWAWAY") and _answers(LOCAL_URL):
        yield LOCAL_URL
        return
    server = RedisServer()
    try:
        yield server.start().url
    finally:
        server.destroy()


class RedisCluster:
    """Throwaway masters (and ``replicas`` replicas of each) joined into a cluster with
    ``redis-cli --cluster create``. ``node_timeout`` (ms) is how long a master may stay silent
    before the others count it failed and its replica takes over."""

    def __init__(self, masters: int = 3, *, replicas: int = 0, node_timeout: int = 2000) -> None:
        self.replicas = replicas
        self.nodes = [
            RedisServer(
                [
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {node_timeout}",
                ],
                cluster=True,
            )
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def urls(self) -> list[str]:
        """One ``redis://`` URL per node."""
        return [n.url for n in self.nodes]

    def start(self) -> RedisCluster:
        """Start the nodes, assign every slot, wait for ``cluster_state:ok`` everywhere (and
        for every replica to be in sync with its master)."""
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                redis_binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        known = f"cluster_known_nodes:{len(self.nodes)}"

        def ready() -> bool:
            for node in self.nodes:
                with node.client() as client:
                    info = client.execute_command("CLUSTER", "INFO").decode()
                    if "cluster_state:ok" not in info or known not in info:
                        return False
                    replication = client.info("replication")
                    if replication["role"] == "slave" and replication["master_link_status"] != "up":
                        return False
            return True

        if not wait_until(ready, 30, 0.1):
            raise RuntimeError("the test cluster did not reach cluster_state:ok")
        return self

    def live(self) -> list[RedisServer]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def owner(self, key: str) -> RedisServer:
        """The master serving ``key``'s slot, as a live node sees the cluster now."""
        with self.live()[0].client() as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no master serves slot {slot}")

    def synced(self, master: RedisServer, timeout: float = 15) -> bool:
        """Wait until every replica of ``master`` has acknowledged all it has written."""

        def caught_up() -> bool:
            with master.client() as client:
                info = client.info("replication")
            offset = int(info["master_repl_offset"])
            links = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            return bool(links) and all(int(link["offset"]) >= offset for link in links)

        return wait_until(caught_up, timeout, 0.05)

    def destroy(self) -> None:
        """Kill every node and remove its files."""
        for node in self.nodes:
            node.destroy()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A three-master Redis Cluster on loopback ports, for the whole run."""
    cluster = RedisCluster()
    try:
        yield cluster.start()
    finally:
        cluster.destroy()


@pytest.fixture
def replicated_cluster() -> Iterator[RedisCluster]:
    """Three masters with a replica each, node timeout 1 s (a killed master's replica takes
    over within seconds); a fresh one per test, for tests that kill a master."""
    cluster = RedisCluster(replicas=1, node_timeout=1000)
    try:
        yield cluster.start()
    finally:
        cluster.destroy()


async def purge(storage: RedisStorage) -> None:
    """Remove every key under the storage's prefix (SCAN + UNLINK, on every node)."""
    pattern = glob_escape(storage.config.key_prefix) + "*"
    bulk = storage._reads
    async for keys in bulk.scan("purge", pattern):
        await bulk.pipeline("purge", [("UNLINK", k) for k in keys])


async def opened(config: RedisConfig) -> AsyncIterator[RedisStorage]:
    """An opened storage that is purged and closed afterwards."""
    storage = RedisStorage.with_config(config)
    await storage.open()
    try:
        yield storage
    finally:
        try:
            await purge(storage)
        finally:
            await storage.close()


@pytest.fixture
async def redis_storage(redis_url: str) -> AsyncIterator[RedisStorage]:
    """An opened RedisStorage on the run's server with a prefix of its own."""
    async for storage in opened(RedisConfig(url=redis_url, key_prefix=prefix())):
        yield storage


def cluster_config(cluster: RedisCluster, **overrides: Any) -> RedisConfig:
    """A cluster-mode config on the test cluster with a fresh prefix."""
    fields: dict[str, Any] = {
        "cluster_mode": True,
        "cluster_urls": cluster.urls,
        "key_prefix": prefix(),
    }
    fields.update(overrides)
    return RedisConfig(**fields)


@pytest.fixture
async def redis_cluster_storage(redis_cluster: RedisCluster) -> AsyncIterator[RedisStorage]:
    """An opened cluster-mode RedisStorage with a prefix of its own."""
    async for storage in opened(cluster_config(redis_cluster)):
        yield storage
