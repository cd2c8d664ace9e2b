"""The connection side of PostgresStorage: pool, lifecycle, schema check, error boundary.

Private: :class:`PostgresConnection` is the base of
:class:`authmw.storage.postgres.PostgresStorage`, which adds the data methods. Every query goes
through :meth:`PostgresConnection._with_connection`, where driver errors are translated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from ..._time import seconds
from ...errors import AuthmwError, ConfigurationError, StorageUnavailable
from . import _schema as schema
from ._config import PostgresConfig, PostgresMigrationMode, url_password
from ._driver import CONNECTION_LOST, DRIVER_ERRORS, connect_once, translate
from ._sql import Statements

__all__ = ["PostgresConnection", "affected", "config_of", "utc_now"]

log = logging.getLogger("authmw.storage.postgres")

T = TypeVar("T")


def utc_now() -> datetime:
    """The application's clock, which every expiry comparison uses."""
    return datetime.now(UTC)


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


class PostgresConnection:
    """Pool, lifecycle and error boundary shared by every PostgresStorage method."""

    def __init__(self, url_or_config: str | PostgresConfig) -> None:
        self.config = config_of(url_or_config)
        self._sql = Statements(self.config.table_prefix)
        self._timeout = seconds(self.config.timeout, "timeout")
        self._cleanup_interval = seconds(self.config.cleanup_interval, "cleanup_interval")
        self._default_ttl = seconds(self.config.default_ttl, "default_ttl")
        self._batch_size = self.config.optimization.batch_size
        self._secret = url_password(self.config.url)
        self._pool: Any = None
        self._open_lock = asyncio.Lock()
        self._cleanup_task: asyncio.Task[None] | None = None

    @property
    def pool(self) -> Any:
        """The asyncpg pool while open (for diagnostics and benchmarks), else None."""
        return self._pool

    def _is_open(self) -> bool:
        return self._pool is not None

    def _error(self, exc: BaseException, operation: str, *, opening: bool = False,
               acquiring: bool = False) -> AuthmwError:
        return translate(exc, operation, target=self.config.target, secret=self._secret,
                         opening=opening, timeout=self._timeout, acquiring=acquiring)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Prepare the schema (per ``migration_mode``), build the pool and start the
        background clean-up. Idempotent."""
        if self._pool is not None:
            return
        async with self._open_lock:
            if self._is_open():  # another task opened it while this one waited
                return
            await self._prepare_schema()
            opt = self.config.optimization
            try:
                pool = await asyncpg.create_pool(
                    **self.config.pool_arguments(),
                    reset=_keep_session_state if opt.enable_query_optimization else None,
                )
            except DRIVER_ERRORS as exc:
                raise self._error(exc, "open", opening=True) from exc
            self._pool = pool
            self._cleanup_task = asyncio.get_running_loop().create_task(
                self._cleanup_loop(), name="authmw-postgres-cleanup")
            log.info("postgres storage open: %s, prefix %r, pool %d",
                     self.config.target, self.config.table_prefix,
                     self.config.effective_pool_size)

    async def _prepare_schema(self) -> None:
        mode = self.config.migration_mode
        if mode is PostgresMigrationMode.MANUAL:
            return
        prefix = self.config.table_prefix
        con = await connect_once(self.config, "open")
        try:
            if mode is PostgresMigrationMode.AUTO:
                await schema.migrate(con, prefix)
            state = await schema.read_state(con, prefix)
        except DRIVER_ERRORS as exc:
            raise self._error(exc, "open", opening=True) from exc
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
                "`authmw migrate-schema URL` or open with migration_mode=auto")
        for problem in problems:
            log.warning("postgres schema for table prefix %r: %s", prefix, problem)

    async def close(self) -> None:
        """Stop the clean-up task and close the pool (terminating it past ``timeout``)."""
        task, self._cleanup_task = self._cleanup_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except DRIVER_ERRORS:  # includes TimeoutError: a connection still busy past it
                pool.terminate()

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                removed = await self.cleanup_expired()
                log.debug("postgres clean-up removed %s", removed)
            except AuthmwError as exc:  # a failed pass is retried next interval
                log.warning("postgres clean-up failed: %s", exc)
            except Exception:
                log.exception("postgres clean-up failed")

    # -- connection handling ---------------------------------------------------------------

    async def _with_connection(self, operation: str,
                               work: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection; every driver error is translated here."""
        pool = self._pool
        if pool is None:
            await self.open()
            pool = self._pool
        deadline = asyncio.timeout(self._timeout)
        try:
            # asyncio.timeout rather than acquire(timeout=...): the latter wraps the wait in a
            # task per call, and this is every query's hot path.
            async with deadline:
                con = await pool.acquire()
        except DRIVER_ERRORS as exc:
            raise self._error(exc, operation, acquiring=deadline.expired()) from exc
        try:
            return await work(con)
        except DRIVER_ERRORS as exc:
            if isinstance(exc, CONNECTION_LOST):
                # Never hand a connection in an unknown protocol state back to the pool (the
                # reset on release is skipped for speed): the pool replaces it. A connection
                # the pool already took back after a socket close refuses terminate().
                with contextlib.suppress(asyncpg.InterfaceError):
                    con.terminate()
                # Whatever killed this one (a restart, a failover) most likely killed its
                # siblings too: have every pooled connection replaced on its next use.
                await pool.expire_connections()
            raise self._error(exc, operation) from exc
        finally:
            try:
                await pool.release(con)
            except DRIVER_ERRORS:  # the pool has dropped the broken connection already
                log.debug("postgres: releasing a broken connection failed", exc_info=True)

    async def _query(self, operation: str, method: str, sql: str, *args: Any,
                     read: bool = False) -> Any:
        """One statement via ``Connection.<method>``. Reads are retried once on a connection
        the server had closed; writes are not, as they may have been applied."""
        attempts = 2 if read else 1
        for attempt in range(attempts):
            try:
                return await self._with_connection(
                    operation, lambda con: getattr(con, method)(sql, *args))
            except StorageUnavailable as exc:
                if attempt + 1 == attempts or not isinstance(exc.__cause__, CONNECTION_LOST):
                    raise
                log.info("postgres %s: connection lost, retrying once", operation)
        raise AssertionError("unreachable")  # pragma: no cover

    async def cleanup_expired(self) -> dict[str, int]:
        """Reclaim expired rows (implemented by PostgresStorage)."""
        raise NotImplementedError

    async def _pages(self, operation: str, sql: tuple[str, str], key: str,
                     batch_size: int, *live: Any) -> AsyncIterator[list[Any]]:
        # Keyset pages, each its own short query: no connection is held between batches.
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        first, following = sql
        last: Any = None
        while True:
            if last is None:
                rows = await self._query(operation, "fetch", first, *live, batch_size,
                                         read=True)
            else:
                rows = await self._query(operation, "fetch", following, *live, batch_size,
                                         *last, read=True)
            if rows:
                yield rows
            if len(rows) < batch_size:
                return
            last = tuple(rows[-1][k] for k in key.split(","))
