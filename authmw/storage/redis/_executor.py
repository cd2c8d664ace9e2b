"""Connections, retries and error translation for the Redis backend.

:class:`Executor` is the one place where redis-py errors become authmw errors: every command
of :class:`authmw.storage.redis.RedisStorage` runs through it. It also

* bounds concurrency to ``pool_size`` (so the pool never overflows in any mode: redis-py's
  sentinel and cluster pools raise instead of waiting when they run out);
* retries with backoff. redis-py's own retries are switched off because it cannot tell which
  commands are safe to repeat; here a command is repeated after an error that proves the server
  never ran it (refused connection, ``READONLY`` from a demoted master, ``LOADING``,
  ``CLUSTERDOWN``), and after any connection error only when the write is idempotent;
* appends ``WAIT`` to writes when ``wait_replicas`` asks for replica acknowledgement.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SlaveNotFoundError
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import ConfigurationError, StorageUnavailable

__all__ = [
    "Endpoint",
    "Executor",
    "NotAcknowledged",
    "ParsedUrl",
    "parse_url",
    "redact_url",
]

log = logging.getLogger("authmw.storage.redis")

T = TypeVar("T")

AnyClient = aioredis.Redis | RedisCluster


_DETAIL_MAX = 400


class NotAcknowledged(RedisError):
    """A write reached fewer replicas than ``wait_replicas`` within ``wait_timeout``."""


# Errors that prove the command did not run, so repeating it is always safe.
_NOT_RUN = (
    ReadOnlyError,
    BusyLoadingError,
    ClusterDownError,
    TryAgainError,
    MasterNotFoundError,
    SlaveNotFoundError,
)
_NOT_RUN_MESSAGES = (
    " connecting to ",  # redis-py's "Error 111 connecting to host:port"
    "Timeout connecting to server",
    "The previous master is now a slave",  # sentinel pool's view of READONLY
    "No connection available",
    "TTL exhausted",  # cluster redirects that never settled
)


def _never_ran(exc: BaseException) -> bool:
    if isinstance(exc, _NOT_RUN):
        return True
    text = str(exc)
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, ClusterError)) and any(
        marker in text for marker in _NOT_RUN_MESSAGES
    )


def _retryable(exc: BaseException, idempotent: bool) -> bool:
    if isinstance(exc, (AuthenticationError, AuthorizationError, NotAcknowledged)):
        return False
    if _never_ran(exc):
        return True
    return idempotent and isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError))


# -- URLs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ``host:port``."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """The parts of a ``redis://``-family URL that authmw needs (several hosts allowed)."""

    scheme: str
    username: str | None
    password: str | None = field(repr=False)
    hosts: tuple[Endpoint, ...]
    path: tuple[str, ...]
    query: tuple[tuple[str, str], ...]


def parse_url(url: str, default_port: int = 6379) -> ParsedUrl:
    """Split a URL whose netloc may list several ``host:port`` pairs (sentinels, cluster)."""
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    hosts = []
    for item in filter(None, hostlist.split(",")):
        host, port = item, default_port
        if item.startswith("["):  # [::1]:6379
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else default_port
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
            try:
                port = int(port_text)
            except ValueError:
                raise ConfigurationError(
                    f"redis URL {redact_url(url)}: bad port {port_text!r}"
                ) from None
        hosts.append(Endpoint(unquote(host), port))
    path = tuple(p for p in parts.path.split("/") if p)
    return ParsedUrl(
        parts.scheme.lower(), username, password, tuple(hosts), path,
        tuple(parse_qsl(parts.query)),
    )


def redact_url(url: str) -> str:
    """``url`` with its password and any ``*password*`` query value replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis URL>"
    netloc = parts.netloc
    userinfo, at, hostlist = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostlist}"
    query = [
        (k, "***" if "password" in k.lower() else v) for k, v in parse_qsl(parts.query)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"),
                       parts.fragment))


# -- clients ---------------------------------------------------------------------------------

def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def standalone_client(
    url: str, pool_size: int, timeout: float, read_timeout: float,
) -> aioredis.Redis:
    """A client for one server, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""
    try:
        pool = aioredis.ConnectionPool.from_url(
            url, max_connections=pool_size, socket_timeout=read_timeout,
            socket_connect_timeout=timeout, retry=_no_retry(),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"redis URL {redact_url(url)}: {exc}") from None
    return aioredis.Redis(connection_pool=pool)


def sentinel_client(
    sentinels: Sequence[Endpoint], master_name: str, *, sentinel_password: str | None,
    username: str | None, password: str | None, db: int, ssl: bool, pool_size: int,
    timeout: float, read_timeout: float,
) -> tuple[aioredis.Redis, Sentinel]:
    """A client for the current master of ``master_name``, found through ``sentinels``."""
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": _no_retry(),
    }
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    manager = Sentinel(  # type: ignore[no-untyped-call]
        [(e.host, e.port) for e in sentinels], sentinel_kwargs=sentinel_kwargs,
        socket_timeout=read_timeout, socket_connect_timeout=timeout,
    )
    client = manager.master_for(
        master_name, max_connections=pool_size, retry=_no_retry(), username=username,
        password=password, db=db, ssl=ssl,
    )
    return client, manager


def cluster_client(
    nodes: Sequence[Endpoint], *, username: str | None, password: str | None, ssl: bool,
    pool_size: int, timeout: float,
) -> RedisCluster:
    """A cluster client that discovers the topology from any of ``nodes``."""
    return RedisCluster(
        startup_nodes=[ClusterNode(e.host, e.port) for e in nodes], username=username,
        password=password, ssl=ssl, max_connections=pool_size, socket_timeout=timeout,
        socket_connect_timeout=timeout, retry=_no_retry(),
    )


# -- executing commands ----------------------------------------------------------------------


class Executor:
    """Runs commands with bounded concurrency, retries, ``WAIT`` and error translation."""

    def __init__(
        self, client: AnyClient, *, scripts: Mapping[str, str], attempts: int, delay: float,
        concurrency: int, wait_replicas: int, wait_timeout: float,
        secrets: Sequence[str], describe: str,
    ) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self._sources = dict(scripts)
        self._shas = {n: hashlib.sha1(s.encode(), usedforsecurity=False).hexdigest()
                      for n, s in scripts.items()}
        self._attempts = attempts
        self._delay = delay
        self._sem = asyncio.Semaphore(concurrency)
        self._wait = wait_replicas
        self._wait_ms = int(wait_timeout * 1000)
        self._secrets = [s for s in secrets if s]
        self.describe = describe

    # -- translation: the one place a driver error becomes an authmw error ------------------

    def redact(self, text: str) -> str:
        """``text`` with every configured password masked."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def translate(self, exc: BaseException, operation: str, *, opening: bool = False) -> Exception:
        """The authmw error for a driver error (``ConfigurationError`` for bad settings at open)."""
        # Capped: some driver messages embed whole client reprs.
        detail = self.redact(f"{type(exc).__name__}: {exc}")[:_DETAIL_MAX]
        if opening and isinstance(exc, (AuthenticationError, AuthorizationError)):
            if not self._secrets:
                return ConfigurationError(
                    f"redis at {self.describe} requires a password and none was given "
                    f"({detail})")
            return ConfigurationError(
                f"redis at {self.describe} refused the credentials: {detail}")
        if opening and isinstance(exc, ResponseError) and (
            "DB index" in str(exc) or "invalid DB" in str(exc)
        ):
            return ConfigurationError(
                f"redis at {self.describe}: the database number does not exist ({detail})"
            )
        if opening and isinstance(exc, ResponseError) and "NOAUTH" in str(exc):
            return ConfigurationError(f"redis at {self.describe} requires a password")
        return StorageUnavailable("redis", operation, f"{detail} [{self.describe}]")

    def _after_error(self, exc: BaseException, operation: str, attempt: int,
                     idempotent: bool) -> float:
        """The pause before retry ``attempt + 1``, or the translated error raised."""
        if attempt >= self._attempts or not _retryable(exc, idempotent):
            raise self.translate(exc, operation) from exc
        pause: float = min(self._delay * 2.0 ** attempt, max(self._delay, 1.0))
        log.warning("redis %s failed (%s); retry %d/%d in %.2f s", operation,
                    self.redact(f"{type(exc).__name__}: {exc}"), attempt + 1, self._attempts,
                    pause)
        return pause

    async def call(
        self, operation: str, fn: Callable[..., Awaitable[T]], *args: Any,
        idempotent: bool = True, first_attempt: int = 0, **kwargs: Any,
    ) -> T:
        """Await ``fn(*args, **kwargs)``; retry what is safe; raise ``StorageUnavailable``."""
        attempt = first_attempt
        while True:
            try:
                async with self._sem:
                    return await fn(*args, **kwargs)
            except (RedisError, OSError) as exc:
                pause = self._after_error(exc, operation, attempt, idempotent)
            attempt += 1
            await asyncio.sleep(pause)

    async def read(self, operation: str, *args: Any) -> Any:
        """One read command."""
        # The verify hot path: the first try without the retry loop's extra coroutine frame.
        try:
            async with self._sem:
                return await self.client.execute_command(*args)
        except (RedisError, OSError) as exc:
            pause = self._after_error(exc, operation, 0, True)
        await asyncio.sleep(pause)
        return await self.call(operation, self.client.execute_command, *args, first_attempt=1)

    async def write(self, operation: str, *args: Any, idempotent: bool = True) -> Any:
        """One write command, acknowledged by ``wait_replicas`` replicas when configured."""
        return await self.call(operation, self._write, *args, idempotent=idempotent)

    async def script(
        self, operation: str, name: str, keys: Sequence[str], args: Sequence[Any], *,
        idempotent: bool = True,
    ) -> Any:
        """Run a registered Lua script as one write."""
        return await self.call(operation, self._eval, name, keys, args, idempotent=idempotent)

    async def load_scripts(self) -> None:
        """Load every script into the server's cache (all primaries in a cluster)."""
        for source in self._sources.values():
            await self.client.script_load(source)

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        command = ("EVALSHA", self._shas[name], len(keys), *keys, *args)
        try:
            return await self._write(*command)
        except NoScriptError:
            # A restarted or newly promoted server has an empty script cache.
            await self.client.script_load(self._sources[name])
            return await self._write(*command)

    async def _write(self, *args: Any) -> Any:
        if not self._wait:
            return await self.client.execute_command(*args)
        # WAIT covers the writes of its own connection, so it rides in the same pipeline.
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command(*args)
        pipe.execute_command("WAIT", self._wait, self._wait_ms)
        result, acked = await pipe.execute()
        if int(acked) < self._wait:
            raise NotAcknowledged(
                f"write acknowledged by {acked} of {self._wait} replica(s) "
                f"within {self._wait_ms} ms"
            )
        return result
