"""Turns :class:`RedisConfig` settings into a redis-py client: one server, sentinels or a cluster.

:func:`connect` builds the client the settings describe, with redis-py's own retries switched
off (the executor decides what is safe to repeat), and says how errors may describe it: a
redacted name of the server and every secret the settings hold, to be masked in messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection as RedisConnection
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ..._time import seconds
from ...errors import ConfigurationError
from .._urls import Endpoint, parse_url, redact_url, scrub, secrets_of
from ._config import RedisConfig

__all__ = ["AnyClient", "Connection", "connect"]

_MARGIN = 1.0  # seconds the driver's socket timeouts add to the configured timeout

AnyClient = aioredis.Redis | RedisCluster


@dataclass(slots=True)
class Connection:
    """A client, the sentinel manager behind it (or None), and what errors may say of it."""

    client: AnyClient
    sentinel: Sentinel | None
    describe: str
    """The server, cluster or sentinel master, without credentials."""
    secrets: tuple[str, ...] = field(repr=False)
    """Every secret of the settings, longest first, masked in every message."""
    password_given: bool
    """Whether the settings give any password (to tell "refused" from "none given")."""
    read_timeout: float
    """The socket timeout of connections made outside the executor's deadline (the
    invalidation subscription's): the pooled connections have none (see :func:`connect`)."""

    async def close(self) -> None:
        """Close the client's connections and the sentinel manager's."""
        await self.client.aclose()
        if self.sentinel is not None:
            for client in self.sentinel.sentinels:
                await client.aclose()


def connect(cfg: RedisConfig) -> Connection:
    """The client ``cfg`` describes (no connection is made until its first command).

    Raises ``ConfigurationError`` for settings redis-py refuses (shown without secrets).
    """
    timeout = read_timeout = seconds(cfg.timeout, "timeout")
    if cfg.wait_replicas:
        # A write's reply comes after WAIT, so its read may take up to wait_timeout longer.
        read_timeout += seconds(cfg.wait_timeout, "wait_timeout")
    # Pooled connections get no socket timeout: every command on them runs inside the
    # executor's deadline (asyncio.timeout over the whole call), which cancels a hung read,
    # and redis-py then drops the connection. A socket timeout there would cost a task per
    # command (redis-py sends through asyncio.wait_for when one is set: about a third of the
    # client's time per uncached verify) and could swallow the deadline's cancellation when
    # both expire together. Connections made outside the executor (the invalidation
    # subscription) keep one, a margin above the deadline. Connecting is bounded either way.
    timeout += _MARGIN
    read_timeout += _MARGIN
    failover = cfg.failover
    urls = [cfg.url, *cfg.cluster_urls, *(failover.urls() if failover is not None else ())]
    secrets = secrets_of(urls)
    parsed = parse_url(cfg.url, 6379)
    passwords = [parsed.password, *(v for k, v in parsed.query if k.lower() == "password")]
    client: AnyClient
    sentinel: Sentinel | None = None
    if cfg.is_cluster:
        seeds = [parse_url(u, 6379) for u in cfg.cluster_urls] or [parsed]
        nodes = [e for p in seeds for e in p.hosts]
        creds = next((p for p in [parsed, *seeds] if p.password or p.username), parsed)
        passwords += [p.password for p in seeds]
        if not nodes:
            raise ConfigurationError("cluster_mode: give cluster_urls or hosts in url")
        client = cluster_client(
            nodes,
            username=creds.username,
            password=creds.password,
            ssl=any(p.scheme == "rediss" for p in seeds),
            pool_size=cfg.pool_size,
            timeout=timeout,
        )
        describe = f"cluster {','.join(f'{e.host}:{e.port}' for e in nodes)}"
    elif failover is not None:
        # A password written into a sentinel URL counts as the sentinel password.
        in_urls = [
            p.password
            for u in failover.sentinels
            if "://" in u
            for p in [parse_url(u, 26379)]
            if p.password
        ]
        sentinel_password = failover.sentinel_password or next(iter(in_urls), None)
        passwords += [sentinel_password, *in_urls]
        if sentinel_password and sentinel_password not in secrets:
            # Given as a setting rather than in a URL: masked all the same.
            secrets = sorted([*secrets, sentinel_password], key=len, reverse=True)
        db_part = parsed.path[-1] if parsed.path else "0"
        db = int(db_part) if db_part.isdigit() else 0
        client, sentinel = sentinel_client(
            failover.endpoints(),
            failover.master_name,
            sentinel_password=sentinel_password,
            username=parsed.username,
            password=parsed.password,
            db=db,
            ssl=parsed.scheme == "rediss",
            pool_size=cfg.pool_size,
            timeout=timeout,
        )
        describe = f"sentinel master {failover.master_name!r}"
    else:
        client = standalone_client(cfg.url, cfg.pool_size, timeout, secrets)
        describe = redact_url(cfg.url)
    return Connection(client, sentinel, describe, tuple(secrets), any(passwords), read_timeout)


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def standalone_client(
    url: str,
    pool_size: int,
    timeout: float,
    secrets: Sequence[str],
) -> aioredis.Redis:
    """A client for one server, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""
    try:
        pool = aioredis.ConnectionPool.from_url(
            url,
            max_connections=pool_size,
            socket_timeout=None,
            socket_connect_timeout=timeout,
            retry=_no_retry(),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"redis URL {redact_url(url)}: {scrub(str(exc), secrets)}"
        ) from None
    return aioredis.Redis(connection_pool=pool)


def sentinel_client(
    sentinels: Sequence[Endpoint],
    master_name: str,
    *,
    sentinel_password: str | None,
    username: str | None,
    password: str | None,
    db: int,
    ssl: bool,
    pool_size: int,
    timeout: float,
) -> tuple[aioredis.Redis, Sentinel]:
    """A client for the current master of ``master_name``, found through ``sentinels``."""
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": _no_retry(),
    }
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    manager = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        [(e.host, e.port) for e in sentinels],
        sentinel_kwargs=sentinel_kwargs,
        socket_timeout=None,
        socket_connect_timeout=timeout,
    )
    client = manager.master_for(
        master_name,
        max_connections=pool_size,
        retry=_no_retry(),
        username=username,
        password=password,
        db=db,
        ssl=ssl,
    )
    return client, manager


def cluster_client(
    nodes: Sequence[Endpoint],
    *,
    username: str | None,
    password: str | None,
    ssl: bool,
    pool_size: int,
    timeout: float,
) -> RedisCluster:
    """A cluster client that discovers the topology from any of ``nodes``; its connections
    are checked when taken from a node's pool (see :class:`CheckedConnection`)."""
    client = RedisCluster(
        startup_nodes=[ClusterNode(e.host, e.port) for e in nodes],
        username=username,
        password=password,
        ssl=ssl,
        max_connections=pool_size,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=_no_retry(),
    )
    # RedisCluster takes no connection class (it picks plain or SSL itself). Every node it
    # discovers is built from these shared settings; the seed nodes exist already.
    checked = CheckedSSLConnection if ssl else CheckedConnection
    client.get_connection_kwargs()["connection_class"] = checked
    for node in client.startup_nodes:
        node.connection_class = checked
    return client


def _closed_by_server(conn: RedisConnection) -> bool:
    """Whether the server closed (or reset) ``conn`` while it sat in the pool."""
    reader = conn._reader
    return reader is not None and (reader.at_eof() or reader.exception() is not None)


class CheckedConnection(RedisConnection):
    """A cluster node's connection that is replaced when taken from the pool if the server
    closed it meanwhile - as redis-py's pool checks a single server's connections when it
    hands one out (the cluster's node pools do not).

    A master killed and replaced by its replica leaves pooled connections to it whose socket
    the kernel closed. A command sent on one fails only when its reply is read ("Connection
    closed by server"), which cannot tell whether the server ran it, so a write that is not
    safe to repeat would fail. Replaced first, connecting to the dead master is refused - proof
    that the command never ran - so the executor retries, and the cluster client, told of the
    error, finds the new master.
    """

    def should_reconnect(self) -> bool:
        """redis-py's reconnect mark, or a socket the server closed (the node pool asks this
        when it hands the connection out, and disconnects it: the send connects again)."""
        marked = bool(super().should_reconnect())  # type: ignore[no-untyped-call,unused-ignore]
        return marked or _closed_by_server(self)


class CheckedSSLConnection(SSLConnection):
    """:class:`CheckedConnection` over TLS."""

    def should_reconnect(self) -> bool:
        """redis-py's reconnect mark, or a socket the server closed."""
        marked = bool(super().should_reconnect())  # type: ignore[no-untyped-call,unused-ignore]
        return marked or _closed_by_server(self)
