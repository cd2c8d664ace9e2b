"""The connection side of PostgresStorage: the pool, its lifecycle and the error boundary.

Private: :class:`Database` is a helper that :class:`authmw.storage.postgres.PostgresStorage`
holds; the storage's data methods, its importer and its invalidation channel all reach the
server through it. Every pooled query goes through :meth:`Database.with_connection`, where
driver errors are translated; one-off connections (migrations, LISTEN) come from
:meth:`Database.connect_once`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from ..._time import seconds
from ...errors import AuthmwError, ConfigurationError, StorageUnavailable
from .._urls import secrets_of
from . import _schema as schema
from ._config import PostgresConfig, PostgresMigrationMode
from ._driver import BACKEND, CONNECTION_LOST, DRIVER_ERRORS, connect_once, translate

__all__ = ["Database", "affected", "config_of"]

log = logging.getLogger("authmw.storage.postgres")

T = TypeVar("T")


def affected(status: str) -> int:
    """The row count of a command tag."""
    # asyncpg returns the command tag, e.g. "UPDATE 1" or "INSERT 0 1": the last word counts.
    return int(status.rsplit(" ", 1)[-1])


async def _keep_session_state(con: Any) -> None:
    """Pool ``reset`` hook that skips asyncpg's per-release reset query (see
    ``PostgresOptimization.enable_query_optimization``); an open transaction is still rolled
    back by the pool before this runs."""


def config_of(url_or_config: str | PostgresConfig) -> PostgresConfig:
    """A config from a URL (with its query options) or the config itself."""
    if isinstance(url_or_config, PostgresConfig):
        return url_or_config
    return PostgresConfig.from_url(url_or_config)


class Database:
    """One database and table prefix: the asyncpg pool, its lifecycle and the error boundary.

    ``cleanup`` is the clean-up pass that :meth:`open` schedules every ``cleanup_interval``
    until :meth:`close`; the storage hands in its own ``cleanup_expired``.
    """

    def __init__(
        self, config: PostgresConfig, cleanup: Callable[[], Awaitable[dict[str, int]]]
    ) -> None:
        self.config = config
        self.timeout = seconds(config.timeout, "timeout")
        self.secrets = secrets_of([config.url])
        """What error messages must never show: the URL's password and secret options."""
        self._cleanup = cleanup
        self._cleanup_interval = seconds(config.cleanup_interval, "cleanup_interval")
        self._pool: Any = None
        self._open_lock = asyncio.Lock()
        # Calls inside with_connection now (running or waiting for a connection), and how
        # many may be: the pool's connections plus max_waiting waiting for one.
        self._callers = 0
        self._call_bound = config.effective_pool_size + config.waiting_bound
        self.cleanup_task: asyncio.Task[None] | None = None
        """The background clean-up while open, else None."""

    @property
    def pool(self) -> Any:
        """The asyncpg pool while open, else None."""
        return self._pool

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._pool is not None

    def error(
        self, exc: BaseException, operation: str, *, opening: bool = False, acquiring: bool = False
    ) -> AuthmwError:
        """The authmw error for driver error ``exc`` (see :func:`._driver.translate`)."""
        return translate(
            exc,
            operation,
            target=self.config.target,
            secrets=self.secrets,
            opening=opening,
            timeout=self.timeout,
            acquiring=acquiring,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Prepare the schema (per ``migration_mode``), build the pool and start the
        background clean-up. Idempotent."""
        if self._pool is not None:
            return
        async with self._open_lock:
            if self.is_open:  # another task opened it while this one waited
                return
            await self._prepare_schema()
            opt = self.config.optimization
            try:
                pool = await asyncpg.create_pool(
                    **self.config.pool_arguments(),
                    reset=_keep_session_state if opt.enable_query_optimization else None,
                )
            except DRIVER_ERRORS as exc:
                raise self.error(exc, "open", opening=True) from exc
            self._pool = pool
            self.cleanup_task = asyncio.get_running_loop().create_task(
                self._cleanup_loop(), name="authmw-postgres-cleanup"
            )
            log.info(
                "postgres storage open: %s, prefix %r, pool %d",
                self.config.target,
                self.config.table_prefix,
                self.config.effective_pool_size,
            )

    async def _prepare_schema(self) -> None:
        mode = self.config.migration_mode
        if mode is PostgresMigrationMode.MANUAL:
            return
        prefix = self.config.table_prefix
        con = await self.connect_once("open", bulk=True)
        try:
            if mode is PostgresMigrationMode.AUTO:
                await schema.migrate(con, prefix)
            state = await schema.read_state(con, prefix)
        except DRIVER_ERRORS as exc:
            raise self.error(exc, "open", opening=True) from exc
        finally:
            await con.close()
        problems = state.problems()
        if not problems:
            return
        if mode is PostgresMigrationMode.STRICT:
            raise ConfigurationError(
                f"postgres schema for table prefix {prefix!r} at {self.config.target} is at "
                f"version {state.version}, this authmw expects version "
                f"{schema.latest_version()} ({'; '.join(problems)}); run "
                "`authmw migrate-schema URL` or open with migration_mode=auto"
            )
        for problem in problems:
            log.warning("postgres schema for table prefix %r: %s", prefix, problem)

    async def close(self) -> None:
        """Stop the clean-up task and close the pool (terminating it past ``timeout``)."""
        task, self.cleanup_task = self.cleanup_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can lose the cancellation.
                async with asyncio.timeout(self.timeout):
                    await pool.close()
            except DRIVER_ERRORS:  # includes TimeoutError: a connection still busy past it
                pool.terminate()

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                removed = await self._cleanup()
                log.debug("postgres clean-up removed %s", removed)
            except AuthmwError as exc:  # a failed pass is retried next interval
                log.warning("postgres clean-up failed: %s", exc)
            except Exception:
                log.exception("postgres clean-up failed")

    # -- connections -----------------------------------------------------------------------

    async def connect_once(
        self, operation: str, *, opening: bool = True, bulk: bool = False
    ) -> Any:
        """A connection of its own, outside the pool (see :func:`._driver.connect_once`);
        the caller closes it."""
        return await connect_once(self.config, operation, opening=opening, bulk=bulk)

    async def with_connection(self, operation: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection (opening first if needed); every driver error
        is translated here. The whole call, the wait for a connection included, ends within
        ``timeout``; when ``max_waiting`` calls already wait for a connection it fails at once."""
        pool = self._pool
        if pool is None:
            await self.open()
            pool = self._pool
        if self._callers >= self._call_bound:
            # Queueing without end is what made a hung server hold every request: refuse.
            raise StorageUnavailable(
                BACKEND,
                operation,
                f"{self._callers - self.config.effective_pool_size} calls already wait for one "
                f"of {self.config.effective_pool_size} pooled connections ({self.config.target})",
            )
        self._callers += 1
        con: Any = None
        # asyncio.timeout rather than acquire(timeout=...) and wait_for: no task per call (this
        # is every query's hot path), and one deadline for the wait and the query together.
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                con = await pool.acquire()
                return await work(con)
        except DRIVER_ERRORS as exc:
            if con is None:
                raise self.error(exc, operation, acquiring=deadline.expired()) from exc
            lost = isinstance(exc, CONNECTION_LOST)
            if lost or deadline.expired():
                # Never hand a connection in an unknown protocol state back to the pool (the
                # reset on release is skipped for speed; a query cut off by the deadline may
                # still be running): the pool replaces it. A connection the pool already
                # took back after a socket close refuses terminate().
                with contextlib.suppress(asyncpg.InterfaceError):
                    con.terminate()
            if lost:
                # Whatever killed this one (a restart, a failover) most likely killed its
                # siblings too: have every pooled connection replaced on its next use.
                await pool.expire_connections()
            raise self.error(exc, operation) from exc
        finally:
            self._callers -= 1
            if con is not None:
                try:
                    await pool.release(con)
                except DRIVER_ERRORS:  # the pool has dropped the broken connection already
                    log.debug("postgres: releasing a broken connection failed", exc_info=True)

    async def query(
        self, operation: str, method: str, sql: str, *args: Any, read: bool = False
    ) -> Any:
        """One statement via ``Connection.<method>``. Reads are retried once on a connection
        the server had closed; writes are not, as they may have been applied."""
        attempts = 2 if read else 1
        for attempt in range(attempts):
            try:
                return await self.with_connection(
                    operation, lambda con: getattr(con, method)(sql, *args)
                )
            except StorageUnavailable as exc:
                if attempt + 1 == attempts or not isinstance(exc.__cause__, CONNECTION_LOST):
                    raise
                log.info("postgres %s: connection lost, retrying once", operation)
        raise AssertionError("unreachable")  # pragma: no cover

    async def pages(
        self, operation: str, sql: tuple[str, str], key: str, batch_size: int, *live: Any
    ) -> AsyncIterator[list[Any]]:
        """Rows in keyset pages of ``batch_size``, ordered by the columns named in ``key``
        (comma-separated); ``sql`` is the first page's and the following pages' statement."""
        # Each page is its own short query: no connection is held between batches.
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        first, following = sql
        last: Any = None
        while True:
            if last is None:
                rows = await self.query(operation, "fetch", first, *live, batch_size, read=True)
            else:
                rows = await self.query(
                    operation, "fetch", following, *live, batch_size, *last, read=True
                )
            if rows:
                yield rows
            if len(rows) < batch_size:
                return
            last = tuple(rows[-1][k] for k in key.split(","))

    # -- schema ----------------------------------------------------------------------------

    async def schema_state(self) -> schema.SchemaState:
        """What the database holds for this prefix (read on a pooled connection)."""
        return await self.with_connection(
            "schema_version", lambda con: schema.read_state(con, self.config.table_prefix)
        )

    async def migrate_schema(self, target: int | None = None) -> list[int]:
        """Apply the missing migrations up to ``target`` on a connection of its own (the pool
        need not be open); return the versions applied now."""
        con = await self.connect_once("migrate_schema", bulk=True)
        try:
            return await schema.migrate(con, self.config.table_prefix, target=target)
        except DRIVER_ERRORS as exc:
            raise self.error(exc, "migrate_schema") from exc
        finally:
            await con.close()
