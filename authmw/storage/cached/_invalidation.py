"""Cross-process invalidation for :class:`CachedStorage`: publishing and the subscription loop.

Every write through a cache announces the keys it changed on the backend's
:class:`~authmw.storage.base.InvalidationChannel`; every cache subscribed to the channel drops
those keys. A message is JSON ``{"o": origin, "k": [key, ...]}``; a cache ignores its own
(it dropped the keys when it wrote). Keys are ``t:<token id>``, ``s:<session id>``,
``u:<user id>``, ``T:<user id>`` (every token of the user), ``S:<user id>`` (every session of
the user) and ``*`` (everything).

Pub/sub delivers at most once, and only while subscribed. So whenever the subscription is
lost, and again when it is back, the cache *distrusts* what it holds: nothing cached earlier is
served without asking the backend again (``serve_stale`` may still use it while the backend is
down). In between the cache works as a plain TTL cache. Lost subscriptions are retried with
exponential backoff and jitter, for as long as the cache is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator

from ...errors import StorageUnavailable
from ..base import InvalidationChannel, InvalidationSubscription
from ._table import Counters

__all__ = ["ALL", "Invalidations", "decode", "encode"]

log = logging.getLogger("authmw.storage.cached")

ALL = "*"
_MAX_MESSAGE = 7000  # bytes: PostgreSQL's NOTIFY payload limit is 8000
_FIRST_DELAY = 0.05


def encode(origin: str, keys: Iterable[str]) -> Iterator[str]:
    """Messages carrying ``keys``, each under the size limit (``*`` for a key too long)."""
    head = f'{{"o":{json.dumps(origin)},"k":['
    parts: list[str] = []
    size = len(head) + 2
    for key in keys:
        part = json.dumps(key)
        if len(part.encode()) + len(head) + 2 > _MAX_MESSAGE:
            part = json.dumps(ALL)
        if parts and size + len(part.encode()) + 1 > _MAX_MESSAGE:
            yield head + ",".join(parts) + "]}"
            parts, size = [], len(head) + 2
        parts.append(part)
        size += len(part.encode()) + 1
    if parts:
        yield head + ",".join(parts) + "]}"


def decode(message: str) -> tuple[str, list[str]]:
    """``(origin, keys)`` of a message; an unreadable one means "everything" (``*``)."""
    try:
        data = json.loads(message)
        origin, keys = data["o"], data["k"]
        if (
            isinstance(origin, str)
            and isinstance(keys, list)
            and all(isinstance(k, str) for k in keys)
        ):
            return origin, keys
    except (ValueError, TypeError, KeyError):
        pass
    log.warning("unreadable cache invalidation message; dropping every cached entry")
    return "", [ALL]


class Invalidations:
    """Publishes one cache's invalidations and applies everyone else's to it."""

    def __init__(
        self,
        channel: InvalidationChannel,
        origin: str,
        counters: Counters,
        *,
        apply: Callable[[list[str]], None],
        distrust: Callable[[], None],
        health_check_interval: float,
        max_delay: float,
        republish_for: float,
        close_timeout: float,
    ) -> None:
        self.channel = channel
        self.origin = origin
        self.counters = counters
        self._apply = apply
        self._distrust = distrust
        self._interval = health_check_interval
        self._max_delay = max_delay
        self._republish_for = republish_for
        self._close_timeout = close_timeout
        self._closing = False
        self._sub: InvalidationSubscription | None = None  # the live one, for aclose()
        self.subscribed = False
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsent: dict[str, float] = {}
        self._republisher: asyncio.Task[None] | None = None

    # -- subscription ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the subscription loop runs (subscribed or retrying)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the subscription loop on the running event loop (once)."""
        if self.running:
            return
        self._ready = asyncio.Event()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(
            self._listen(), name="authmw-cache-invalidation"
        )

    async def wait_subscribed(self, within: float) -> bool:
        """Wait until subscribed, at most ``within`` seconds; True if subscribed."""
        if self._ready is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._ready.wait()
        return self.subscribed

    async def _listen(self) -> None:
        delay = _FIRST_DELAY
        failing = False
        # Also checked, not only cancelled: a driver that turns a cancellation into an error
        # of its own (or a timeout's None) would otherwise keep this loop going after aclose().
        while not self._closing:
            try:
                sub = await self.channel.subscribe()
            except Exception as exc:  # StorageUnavailable, or a driver surprise: retry either way
                if not failing:
                    log.warning(
                        "cache invalidation: cannot subscribe (%s); retrying",
                        exc,
                        exc_info=not isinstance(exc, StorageUnavailable),
                    )
                    failing = True
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
                delay = min(delay * 2, self._max_delay)
                continue
            failing, delay = False, _FIRST_DELAY
            self._sub = sub
            try:
                # Messages published from now on reach us; anything cached before may have
                # missed some while no subscription was live.
                self._distrust()
                self.subscribed = True
                self.counters.subscriptions += 1
                assert self._ready is not None
                self._ready.set()
                await self._pump(sub)
            except Exception as exc:  # whatever broke it, the subscription is gone
                log.warning(
                    "cache invalidation subscription lost (%s); cached entries are "
                    "re-read until it is back",
                    exc,
                    exc_info=not isinstance(exc, StorageUnavailable),
                )
                self.subscribed = False
                if self._ready is not None:
                    self._ready.clear()
                self.counters.subscription_losses += 1
                self._distrust()
            finally:
                self.subscribed = False
                self._sub = None
                await sub.close()

    async def _pump(self, sub: InvalidationSubscription) -> None:
        while not self._closing:
            messages = await sub.receive(self._interval)
            if not messages:
                # Quiet for a whole interval: prove the connection is still there (a peer that
                # vanished without closing the socket sends nothing, not even an error).
                await sub.ping(self._interval)
                continue
            for message in messages:
                self.counters.messages_received += 1
                origin, keys = decode(message)
                if origin != self.origin:
                    self.counters.invalidations_received += len(keys)
                    self._apply(keys)

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, keys: list[str]) -> None:
        """Announce ``keys``; on failure keep retrying in the background for
        ``republish_for`` seconds (after that every other cache has re-read them anyway)."""
        for message in encode(self.origin, keys):
            try:
                await self.channel.publish(message)
            except StorageUnavailable as exc:
                self.counters.publish_failures += 1
                log.warning(
                    "cache invalidation of %d key(s) not published (%s); retrying", len(keys), exc
                )
                self.retry_later(keys)
                return
            self.counters.messages_published += 1

    def retry_later(self, keys: list[str]) -> None:
        """Publish ``keys`` from a background task, retrying with backoff (see :meth:`publish`)."""
        deadline = time.monotonic() + self._republish_for
        for key in keys:
            self._unsent[key] = deadline
        if self._republisher is None or self._republisher.done():
            self._republisher = asyncio.get_running_loop().create_task(
                self._republish(), name="authmw-cache-republish"
            )

    async def _republish(self) -> None:
        delay = _FIRST_DELAY
        while self._unsent:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_delay)
            now = time.monotonic()
            keys = [k for k, deadline in self._unsent.items() if deadline > now]
            if not keys:
                break
            try:
                for message in encode(self.origin, keys):
                    await self.channel.publish(message)
                    self.counters.messages_published += 1
            except StorageUnavailable:
                self.counters.publish_failures += 1
                continue
            for key in keys:
                self._unsent.pop(key, None)
        self._unsent.clear()

    async def aclose(self) -> None:
        """Stop the subscription loop and the republisher, waiting at most ``close_timeout``
        seconds for them whatever the server does (past it they are left cancelled)."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._close_timeout
        sub, self._sub = self._sub, None
        for task in (self._task, self._republisher):
            if task is None or task.done():
                continue
            if task.get_loop() is not loop:
                # Started on another loop (a WSGI loop thread that is gone): cancel there.
                with contextlib.suppress(RuntimeError):
                    task.get_loop().call_soon_threadsafe(task.cancel)
                continue
            task.cancel()
            if sub is not None and task is self._task:
                # Drop the socket too: a read the cancellation did not reach then ends.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(deadline - loop.time(), 0.0)):
                        await sub.close()
            await self._stopped(task, deadline)
        self._task = self._republisher = None
        self.subscribed = False
        self._unsent.clear()

    async def _stopped(self, task: asyncio.Task[None], deadline: float) -> None:
        """Wait for a cancelled ``task`` until ``deadline``, cancelling it again now and then.

        ``asyncio.wait`` rather than awaiting the task: it neither cancels the task once more
        when this wait is itself cancelled nor hangs with it. A driver may swallow one
        cancellation (turning it into an error or a timeout's ``None``); repeating it reaches
        the task at its next ``await``.
        """
        loop = asyncio.get_running_loop()
        while not task.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("cache invalidation task did not stop in time; leaving it cancelled")
                return
            await asyncio.wait({task}, timeout=min(remaining, 0.1))
            if not task.done():
                task.cancel()
        if not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()  # retrieved, so asyncio does not log it as never retrieved
