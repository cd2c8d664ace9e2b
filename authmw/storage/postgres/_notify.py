"""Cache invalidation over PostgreSQL ``LISTEN``/``NOTIFY``: the backend's invalidation channel.

:meth:`PostgresStorage.invalidation_channel` returns a :class:`PostgresChannel`, the backend's
:class:`~authmw.storage.base.InvalidationChannel`. Its name is ``<prefix>cache_invalidation``,
so the processes sharing a database and table prefix share it. Publishing is one
``pg_notify`` on a pooled connection; each subscription holds a dedicated connection that
``LISTEN``s, and learns from asyncpg's termination callback when that connection is gone.
``NOTIFY`` delivers at most once, to sessions listening when the publishing transaction
commits: exactly the channel contract.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from ...errors import InvalidInput, StorageUnavailable
from ._driver import BACKEND, DRIVER_ERRORS, translate
from ._pool import Database

__all__ = ["MAX_MESSAGE_BYTES", "PostgresChannel", "PostgresSubscription"]

# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; the channel contract promises 7000.
MAX_MESSAGE_BYTES = 7000


class PostgresSubscription:
    """One ``LISTEN`` on a connection of its own."""

    def __init__(self, con: Any, channel: str, target: str, secrets: Sequence[str]) -> None:
        self._con = con
        self._channel = channel
        self._target = target
        self._secrets = secrets
        self._messages: list[str] = []
        self._wakeup = asyncio.Event()
        self._lost = False

    def _on_notify(self, con: Any, pid: int, channel: str, payload: str) -> None:
        self._messages.append(payload)
        self._wakeup.set()

    def _on_terminated(self, con: Any) -> None:
        self._lost = True
        self._wakeup.set()

    def _gone(self, operation: str) -> StorageUnavailable:
        return StorageUnavailable(
            BACKEND, operation, f"the LISTEN connection to {self._target} was lost"
        )

    async def receive(self, timeout: float) -> list[str]:  # noqa: ASYNC109 (the Protocol's)
        """Messages arriving within ``timeout`` seconds (``[]`` if none); ``StorageUnavailable``
        once the connection is lost."""
        if not self._messages and not self._lost:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
        messages, self._messages = self._messages, []
        self._wakeup.clear()
        if not messages and self._lost:
            raise self._gone("receive")
        return messages

    async def ping(self, timeout: float) -> None:  # noqa: ASYNC109 (the Protocol's)
        """Round-trip the LISTEN connection within ``timeout`` seconds."""
        if self._lost:
            raise self._gone("ping")
        try:
            await self._con.fetchval("SELECT 1", timeout=timeout)
        except DRIVER_ERRORS as exc:
            self._lost = True
            raise translate(
                exc, "ping", target=self._target, secrets=self._secrets, timeout=timeout
            ) from exc

    async def close(self) -> None:
        """Stop listening and close the connection. Never raises."""
        self._lost = True
        try:
            with contextlib.suppress(Exception):  # TimeoutError included: terminated below
                # asyncio.timeout, not wait_for: 3.11's wait_for can lose a cancellation.
                async with asyncio.timeout(2):
                    await self._con.close()
        finally:
            # Also when cancelled: a stopped server must not keep the socket open.
            with contextlib.suppress(Exception):
                self._con.terminate()


class PostgresChannel:
    """The invalidation channel of ``db``'s database and table prefix. Creating it does no
    I/O: publishing borrows a pooled connection, each subscription opens its own."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.name = f"{db.config.table_prefix}cache_invalidation"

    async def publish(self, message: str) -> None:
        """``NOTIFY`` every live subscription. ``InvalidInput`` past 7,000 bytes of UTF-8."""
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            raise InvalidInput("message", f"longer than {MAX_MESSAGE_BYTES} bytes of UTF-8")
        await self._db.query("publish", "execute", "SELECT pg_notify($1, $2)", self.name, message)

    async def subscribe(self) -> PostgresSubscription:
        """``LISTEN`` on a new dedicated connection; ``StorageUnavailable`` if that fails."""
        db = self._db
        con = await db.connect_once("subscribe", opening=False)
        sub = PostgresSubscription(con, self.name, db.config.target, db.secrets)
        try:
            con.add_termination_listener(sub._on_terminated)
            await con.add_listener(self.name, sub._on_notify)
        except DRIVER_ERRORS as exc:
            await sub.close()
            raise db.error(exc, "subscribe") from exc
        return sub
