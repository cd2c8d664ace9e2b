"""The cache invalidation channel of the Redis backend: ``PUBLISH``/``SUBSCRIBE``.

The channel is ``<key_prefix>invalidate``, so caches share it exactly when they share a key
prefix. Messages are published through the storage's executor (its retries and error
translation). Each subscription runs on a connection of its own that the executor makes from
the same settings as its pool but outside it (a subscribed connection cannot run commands, and
the pool is sized for commands), named ``authmw-invalidation:<prefix>`` in ``CLIENT LIST``. On a
cluster it connects to one node (``PUBLISH`` reaches every node), the next node on each new
subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from typing import Any

from ...errors import StorageUnavailable
from ..base import InvalidationSubscription
from ._executor import DRIVER_ERRORS, Executor

__all__ = ["Channel", "client_name_for"]


def client_name_for(prefix: str) -> str:
    """The ``CLIENT SETNAME`` of the subscriptions of a key prefix (no spaces allowed)."""
    return "authmw-invalidation:" + re.sub(r"[^A-Za-z0-9:_.-]", "_", prefix)


def _is_pong(response: Any) -> bool:
    # In subscribed mode PING answers ["pong", ""]; a plain connection would say "PONG".
    return (isinstance(response, list) and bool(response) and response[0] == b"pong") or (
        response in (b"PONG", "PONG", True)
    )


class _Subscription:
    """One ``SUBSCRIBE``d connection (see :class:`authmw.storage.base.InvalidationSubscription`)."""

    def __init__(self, conn: Any, x: Executor) -> None:
        self._conn = conn
        self._x = x
        self._pending: list[str] = []  # messages read while waiting for a PONG

    def _error(self, exc: BaseException) -> StorageUnavailable:
        error = self._x.translate(exc, "invalidation subscription")
        return (
            error
            if isinstance(error, StorageUnavailable)
            else StorageUnavailable("redis", "invalidation subscription", str(error))
        )

    def _take(self, response: Any, into: list[str]) -> bool:
        """File one reply; True if it was the PONG."""
        if isinstance(response, list) and len(response) == 3 and response[0] == b"message":
            data = response[2]
            into.append(data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data))
            return False
        return _is_pong(response)

    async def receive(self, timeout: float) -> list[str]:  # noqa: ASYNC109 (the Protocol's)
        """Messages within ``timeout`` seconds; ``StorageUnavailable`` if the connection dies."""
        if self._pending:
            ready, self._pending = self._pending, []
            return ready
        out: list[str] = []
        try:
            response = await self._conn.read_response(timeout=timeout)
        except DRIVER_ERRORS as exc:
            raise self._error(exc) from exc
        if response is not None:
            self._take(response, out)
        return out

    async def ping(self, timeout: float) -> None:  # noqa: ASYNC109 (the Protocol's)
        """``PING`` on the subscribed connection; the PONG must come within ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await self._conn.send_command("PING")
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise StorageUnavailable(
                        "redis",
                        "invalidation subscription",
                        f"no answer to PING within {timeout:g} s",
                    )
                response = await self._conn.read_response(timeout=remaining)
                if response is not None and self._take(response, self._pending):
                    return
        except DRIVER_ERRORS as exc:
            raise self._error(exc) from exc

    async def close(self) -> None:
        """Drop the connection (the server forgets the subscription with it)."""
        with contextlib.suppress(Exception):
            await self._conn.disconnect()


class Channel:
    """``PUBLISH`` through the storage's executor, ``SUBSCRIBE`` on a dedicated connection
    (an :class:`authmw.storage.base.InvalidationChannel`)."""

    def __init__(self, x: Executor, prefix: str) -> None:
        self._x = x
        self.name = prefix + "invalidate"
        self.client_name = client_name_for(prefix)
        self._next_node = itertools.count()

    async def publish(self, message: str) -> None:
        """``PUBLISH`` (retried like any idempotent command: a duplicate is harmless)."""
        await self._x.command("publish invalidation", "PUBLISH", self.name, message)

    async def subscribe(self) -> InvalidationSubscription:
        """A new subscription on its own connection; ``StorageUnavailable`` if it fails."""
        x = self._x
        # RESP2 whatever the client's default: there a message is an ordinary reply (RESP3
        # delivers it out of band, to a push handler) and PING answers ["pong", ""].
        conn = x.dedicated_connection(
            "invalidation subscription", next(self._next_node), protocol=2
        )
        try:
            await conn.connect()
            await conn.send_command("CLIENT", "SETNAME", self.client_name)
            await conn.read_response()
            await conn.send_command("SUBSCRIBE", self.name)
            await conn.read_response()  # ["subscribe", channel, 1]: from now on we hear it
        except DRIVER_ERRORS as exc:
            with contextlib.suppress(Exception):
                await conn.disconnect()
            raise _Subscription(conn, x)._error(exc) from exc
        return _Subscription(conn, x)
