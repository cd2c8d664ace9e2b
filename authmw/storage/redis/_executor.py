"""Runs every command of the Redis backend: retries, ``WAIT`` and error translation.

:class:`Executor` is the one place where redis-py errors become authmw errors: every command
of :class:`authmw.storage.redis.RedisStorage` (its writes, reads, importer and invalidation
channel) runs through it, and nothing else touches the client. It also

* connects on first use (and again after :meth:`Executor.close`), on the loop that uses it;
* bounds concurrency to ``pool_size`` (so the pool never overflows in any mode: redis-py's
  sentinel and cluster pools raise instead of waiting when they run out), with at most
  ``max_waiting`` callers waiting for a turn: more fail at once with ``StorageUnavailable``;
* bounds each whole call (the wait for a turn, every attempt and the pauses between them) by
  ``deadline`` seconds: a hung server costs a caller that long, then ``StorageUnavailable``;
* retries with backoff. redis-py's own retries are switched off because it cannot tell which
  commands are safe to repeat; here a command is repeated after an error that proves the server
  never ran it (refused connection, ``READONLY`` from a demoted master, ``LOADING``,
  ``CLUSTERDOWN``), and after any connection error only when the write is idempotent;
* appends ``WAIT`` to writes when ``wait_replicas`` asks for replica acknowledgement;
* runs the Lua scripts of :mod:`._scripts` by SHA, loading one again where a server lost it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from redis.asyncio.sentinel import MasterNotFoundError, SlaveNotFoundError
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..._outage import OutageLog
from ...errors import ConfigurationError, StorageUnavailable
from .._urls import scrub
from ._connect import AnyClient, Connection
from ._scripts import Script

__all__ = ["DRIVER_ERRORS", "Executor", "NotAcknowledged"]

log = logging.getLogger("authmw.storage.redis")

T = TypeVar("T")

_DETAIL_MAX = 400


class NotAcknowledged(RedisError):
    """A write reached fewer replicas than ``wait_replicas`` within ``wait_timeout``."""


DRIVER_ERRORS = (RedisError, RedisClusterException, OSError)
"""What the driver raises when Redis cannot answer. ``RedisClusterException`` (no reachable
startup node, among others) is not a ``RedisError``."""


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


class _RetryDetail:
    """The detail of a retry warning, formatted only when the warning is logged."""

    __slots__ = ("_attempt", "_exc", "_executor", "_operation", "_pause")

    def __init__(
        self, executor: Executor, exc: BaseException, operation: str, attempt: int, pause: float
    ) -> None:
        self._executor, self._exc, self._operation = executor, exc, operation
        self._attempt, self._pause = attempt, pause

    def __str__(self) -> str:
        x, exc = self._executor, self._exc
        return (
            f"{self._operation} ({x.redact(f'{type(exc).__name__}: {exc}')}); "
            f"retry {self._attempt}/{x._attempts} in {self._pause:.2f} s"
        )


class Executor:
    """Runs commands with bounded concurrency, retries, ``WAIT`` and error translation.

    ``connect`` makes the client (see :func:`._connect.connect`); it is called on first use
    and again after :meth:`close`. ``scripts`` are the Lua scripts :meth:`script` may run.
    ``concurrency`` commands run at once and ``max_waiting`` more may wait for a turn; a call
    takes at most ``deadline`` seconds in all.
    """

    def __init__(
        self,
        connect: Callable[[], Connection],
        *,
        cluster: bool,
        scripts: Mapping[str, Script],
        attempts: int,
        delay: float,
        concurrency: int,
        max_waiting: int,
        deadline: float,
        wait_replicas: int,
        wait_timeout: float,
    ) -> None:
        self._connect = connect
        self._conn: Connection | None = None
        self.cluster = cluster
        self._scripts = dict(scripts)
        self._attempts = attempts
        self._delay = delay
        self._concurrency = concurrency
        self._sem = asyncio.Semaphore(concurrency)
        self._max_waiting = max_waiting
        self._waiting = 0  # callers queued on the semaphore now
        # A write waits for its WAIT too, so its deadline is longer by wait_timeout.
        self._deadline = deadline + (wait_timeout if wait_replicas else 0.0)
        self._wait = wait_replicas
        self._wait_ms = int(wait_timeout * 1000)
        # What messages may say, from the latest connection (kept after close() for the
        # errors of commands still in flight).
        self.describe = "redis"
        self._secrets: tuple[str, ...] = ()
        self._password_given = False
        # One warning per interval for the retries, however many calls fail during an outage.
        self.retry_log = OutageLog(log)

    @property
    def deadline(self) -> float:
        """The longest one call may take, in seconds."""
        return self._deadline

    # -- the connection ------------------------------------------------------------------------

    @property
    def client(self) -> AnyClient:
        """The redis-py client, connected on first use (and again after :meth:`close`)."""
        conn = self._conn
        if conn is None:
            conn = self._open()
        return conn.client

    def _open(self) -> Connection:
        conn = self._conn = self._connect()
        # A fresh semaphore with each connection: a semaphore binds to the loop it waits on.
        self._sem = asyncio.Semaphore(self._concurrency)
        self.describe, self._secrets = conn.describe, conn.secrets
        self._password_given = conn.password_given
        return conn

    async def close(self) -> None:
        """Release every connection; the next command connects again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def probe(self) -> str:
        """``PING``, ``INFO server`` and the scripts loaded, once and without retries: the
        server's version. Bad credentials or database raise ``ConfigurationError``, anything
        else ``StorageUnavailable``."""
        client = self.client
        try:
            async with asyncio.timeout(self._deadline):
                await client.ping()
                info = await client.info("server")
                await self.load_scripts()
        except DRIVER_ERRORS as exc:
            if isinstance(exc, TimeoutError):  # the deadline's (the driver's are RedisErrors)
                raise self._late("open") from exc
            raise self.translate(exc, "open", opening=True) from exc
        except TypeError as exc:
            # A URL query option redis-py's connection class does not take (RedisConfig(url=)
            # passes its query through unchecked): a setting to fix, not an outage.
            raise ConfigurationError(
                f"redis at {self.describe}: redis-py refused a URL query option "
                f"({self.redact(str(exc))}); fix or remove it"
            ) from None
        if "redis_version" not in info:  # a cluster answers per node
            info = next(iter(info.values()))
        return str(info["redis_version"])

    def dedicated_connection(self, operation: str, turn: int, **overrides: Any) -> Any:
        """A new connection outside the pool, not yet connected, with the client's own settings
        and ``overrides``; on a cluster, to node ``turn`` modulo the nodes known.
        ``StorageUnavailable`` when a cluster knows no nodes yet."""
        client: Any = self.client
        if not self.cluster:
            pool = client.connection_pool
            factory, kwargs = pool.connection_class, pool.connection_kwargs
        else:
            nodes = client.get_nodes()
            if not nodes:
                raise StorageUnavailable(
                    "redis", operation, "the cluster client knows no nodes yet"
                )
            node = nodes[turn % len(nodes)]
            factory, kwargs = node.connection_class, node.connection_kwargs
        # Outside the executor's deadline: a socket timeout of its own (pooled ones have none).
        if self._conn is not None and kwargs.get("socket_timeout") is None:
            overrides = {"socket_timeout": self._conn.read_timeout, **overrides}
        return factory(**{**kwargs, **overrides})

    # -- translation: the one place a driver error becomes an authmw error ------------------

    def redact(self, text: str) -> str:
        """``text`` with every configured secret masked."""
        return scrub(text, self._secrets)

    def translate(self, exc: BaseException, operation: str, *, opening: bool = False) -> Exception:
        """The authmw error for a driver error (``ConfigurationError`` for bad settings at open)."""
        # Capped: some driver messages embed whole client reprs.
        detail = self.redact(f"{type(exc).__name__}: {exc}")[:_DETAIL_MAX]
        if opening and isinstance(exc, (AuthenticationError, AuthorizationError)):
            if not self._password_given:
                return ConfigurationError(
                    f"redis at {self.describe} requires a password and none was given ({detail})"
                )
            return ConfigurationError(
                f"redis at {self.describe} refused the credentials: {detail} (fix the user and "
                "password in the URL, redis://user:password@host, or the server's ACL/requirepass)"
            )
        if (
            opening
            and isinstance(exc, ResponseError)
            and ("DB index" in str(exc) or "invalid DB" in str(exc))
        ):
            return ConfigurationError(
                f"redis at {self.describe}: the database number does not exist ({detail})"
            )
        if opening and isinstance(exc, ResponseError) and "NOAUTH" in str(exc):
            return ConfigurationError(f"redis at {self.describe} requires a password")
        return StorageUnavailable("redis", operation, f"{detail} [{self.describe}]")

    def _after_error(
        self, exc: BaseException, operation: str, attempt: int, idempotent: bool
    ) -> float:
        """The pause before retry ``attempt + 1``, or the translated error raised."""
        if attempt >= self._attempts or not _retryable(exc, idempotent):
            raise self.translate(exc, operation) from exc
        pause: float = min(self._delay * 2.0**attempt, max(self._delay, 1.0))
        self.retry_log.warning(
            "redis command failed, retrying", _RetryDetail(self, exc, operation, attempt + 1, pause)
        )
        return pause

    # -- commands ------------------------------------------------------------------------------

    async def call(
        self,
        operation: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> T:
        """Await ``fn(*args, **kwargs)``; retry what is safe; raise ``StorageUnavailable``,
        also when the whole call (queueing and retries included) outlasts the deadline."""
        if self._conn is None:
            self._open()  # before taking the semaphore: connecting replaces it
        try:
            # asyncio.timeout, not wait_for: no extra task, and 3.11's wait_for can lose a cancel.
            async with asyncio.timeout(self._deadline) as deadline:
                attempt = 0
                while True:
                    sem = await self._turn(operation)
                    try:
                        return await fn(*args, **kwargs)
                    except DRIVER_ERRORS as exc:
                        if deadline.expired():
                            # The driver turned the deadline's cancellation into an error of
                            # its own (its read timeout expired at the same moment): no retry.
                            raise self._late(operation) from exc
                        pause = self._after_error(exc, operation, attempt, idempotent)
                    finally:
                        sem.release()
                    attempt += 1
                    await asyncio.sleep(pause)
        except TimeoutError as exc:
            # Only the deadline's: the driver's own timeouts are DRIVER_ERRORS, handled inside.
            raise self._late(operation) from exc

    async def _turn(self, operation: str) -> asyncio.Semaphore:
        """Take a turn among ``concurrency`` commands (the semaphore to release after); fail at
        once when ``max_waiting`` callers already wait, rather than queueing without end."""
        sem = self._sem
        if not sem.locked():
            await sem.acquire()  # free: returns at once
            return sem
        if self._waiting >= self._max_waiting:
            raise StorageUnavailable(
                "redis",
                operation,
                f"{self._waiting} calls already wait for one of {self._concurrency} "
                f"connections [{self.describe}]",
            )
        self._waiting += 1
        try:
            await sem.acquire()
        finally:
            self._waiting -= 1
        return sem

    def _late(self, operation: str) -> StorageUnavailable:
        return StorageUnavailable(
            "redis",
            operation,
            f"no answer within {self._deadline:g} s (server hung or overloaded) [{self.describe}]",
        )

    async def read(self, operation: str, *args: Any) -> Any:
        """One read command."""
        return await self.call(operation, self.client.execute_command, *args)

    async def command(self, operation: str, *args: Any, idempotent: bool = True) -> Any:
        """One command that needs no replica acknowledgement (``PUBLISH``)."""
        return await self.call(operation, self.client.execute_command, *args, idempotent=idempotent)

    async def write(self, operation: str, *args: Any, idempotent: bool = True) -> Any:
        """One write command, acknowledged by ``wait_replicas`` replicas when configured."""
        return await self.call(operation, self._write, *args, idempotent=idempotent)

    async def script(
        self,
        operation: str,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        idempotent: bool = True,
    ) -> Any:
        """Run one of the registered Lua scripts as one write."""
        return await self.call(
            operation, self._eval, self._scripts[name], keys, args, idempotent=idempotent
        )

    async def read_script(
        self, operation: str, name: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Run one of the registered Lua scripts that only reads (no replica acknowledgement)."""
        return await self.call(operation, self._eval_read, self._scripts[name], keys, args)

    async def pipeline(
        self,
        operation: str,
        commands: Sequence[tuple[Any, ...]],
        *,
        writes: bool = False,
    ) -> list[Any]:
        """``commands`` in one pipeline (not a transaction), repeated whole when a retry is
        safe. With ``writes``, acknowledged by ``wait_replicas`` replicas like :meth:`write`."""
        return await self.call(operation, self._pipeline, commands, writes)

    async def mget(self, operation: str, keys: Sequence[str | bytes]) -> list[bytes | None]:
        """The values of ``keys``, in one ``MGET`` (one per hash slot on a cluster)."""
        if self.cluster:
            client: Any = self.client
            found: list[bytes | None] = await self.call(
                operation, client.mget_nonatomic, list(keys)
            )
            return found
        return list(await self.read(operation, "MGET", *keys))

    async def scan(self, operation: str, pattern: str, count: int) -> AsyncIterator[list[bytes]]:
        """The keys matching ``pattern``, one batch per ``SCAN`` reply, from every primary of a
        cluster (``SCAN`` may return a key twice)."""
        client: Any = self.client
        nodes: list[Any] = [None]
        if self.cluster:
            # A cluster client learns the nodes with its first command; until then it lists none.
            await self.call(operation, client.initialize)
            nodes = client.get_primaries()
        for node in nodes:
            cursor = 0
            while True:
                if node is None:
                    cursor, keys = await self.read(
                        operation, "SCAN", cursor, "MATCH", pattern, "COUNT", count
                    )
                else:
                    cursors, keys = await self.call(
                        operation, client.scan, cursor, pattern, count, target_nodes=node
                    )
                    cursor = next(iter(cursors.values()))
                yield keys
                if cursor == 0:
                    break

    async def info(self, operation: str, section: str) -> dict[str, Any]:
        """``INFO section`` of the server, or of every primary of a cluster (keyed by node
        when there are several)."""
        client: Any = self.client
        if self.cluster:
            found: dict[str, Any] = await self.call(
                operation, client.info, section, target_nodes="primaries"
            )
        else:
            found = await self.call(operation, client.info, section)
        return found

    async def load_scripts(self) -> None:
        """Load every script into the server's cache (all primaries in a cluster)."""
        for script in self._scripts.values():
            await self.client.script_load(script.source)

    async def _eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._write(*command)
        except NoScriptError:
            # A restarted or newly promoted server has an empty script cache.
            await self.client.script_load(script.source)
            return await self._write(*command)

    async def _eval_read(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        client = self.client
        try:
            return await client.execute_command(*command)
        except NoScriptError:
            await client.script_load(script.source)  # as in _eval
            return await client.execute_command(*command)

    async def _write(self, *args: Any) -> Any:
        if not self._wait:
            return await self.client.execute_command(*args)
        (result,) = await self._pipeline([args], True)
        return result

    async def _pipeline(self, commands: Sequence[tuple[Any, ...]], writes: bool) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        wait = writes and self._wait
        if wait:
            # WAIT covers the writes of its own connection, so it rides in the same pipeline.
            pipe.execute_command("WAIT", self._wait, self._wait_ms)
        got = list(await pipe.execute())
        if wait:
            acked = got.pop()
            if int(acked) < self._wait:
                raise NotAcknowledged(
                    f"write acknowledged by {acked} of {self._wait} replica(s) "
                    f"within {self._wait_ms} ms"
                )
        return got
