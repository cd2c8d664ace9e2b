"""Runs coroutines for synchronous code on an event loop in a daemon thread.

``WSGIAuthMiddleware`` runs the async authentication core here: every request thread submits
its coroutine and blocks until the answer comes back. The loop starts on demand and can be
stopped (closing the framework on the loop's own thread first) and started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..framework import AuthFramework

__all__ = ["LoopGone", "LoopThread"]

log = logging.getLogger("authmw.middleware")

T = TypeVar("T")


class LoopGone(RuntimeError):
    """The loop was stopped (``close()``) while a call was on its way to it."""


class _Call:
    """One coroutine handed to the loop: a lock the caller blocks on, and the outcome.

    A bare ``threading.Lock`` and a task that releases it cost about half of what
    ``asyncio.run_coroutine_threadsafe`` does (its ``concurrent.futures.Future`` waits on a
    ``Condition`` and answers through done-callbacks, one more loop iteration), and this trip
    is on every authenticated request.
    """

    __slots__ = ("__weakref__", "done", "error", "result", "task")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.result: Any = None
        # Stays set if the loop stops before the coroutine ran to an end.
        self.error: BaseException | None = LoopGone("the middleware's event loop stopped")
        self.task: asyncio.Task[None] | None = None

    def release(self) -> None:
        # Already released when the loop's shutdown raced the task's own end.
        with contextlib.suppress(RuntimeError):
            self.done.release()


async def _drive(coro: Coroutine[Any, Any, Any], call: _Call) -> None:
    try:
        call.result = await coro
        call.error = None
    except (Exception, asyncio.CancelledError) as exc:
        call.error = exc
    finally:
        call.release()


def _begin(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], call: _Call) -> None:
    call.task = loop.create_task(_drive(coro, call))


def _cancel(call: _Call) -> None:
    if call.task is not None:
        call.task.cancel()


class LoopThread:
    """An event loop running forever in a daemon thread, started on demand, restartable."""

    __slots__ = ("__weakref__", "_calls", "_lock", "_thread", "loop")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._calls: weakref.WeakSet[_Call] = weakref.WeakSet()
        _ALL.add(self)

    def _forget(self) -> None:
        """In a forked child: the thread did not survive the fork, so start afresh on demand.

        (The framework's connections, if it was opened before the fork, still belong to the
        parent: open it in the workers, not before the server forks them.)
        """
        self._lock = threading.Lock()
        self.loop = self._thread = None
        self._calls = weakref.WeakSet()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self.loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()
                # Calls in flight on this loop, so its shutdown can release their callers.
                self._calls = weakref.WeakSet()
                thread = threading.Thread(
                    target=self._serve,
                    args=(loop, started, self._calls),
                    name="authmw-wsgi-loop",
                    daemon=True,
                )
                thread.start()
                started.wait()
                self.loop, self._thread = loop, thread
            return self.loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop (starting it if needed) and return or raise its outcome.

        Raises ``TimeoutError`` after ``timeout`` seconds (the coroutine is cancelled),
        ``LoopGone`` when the loop stops first, ``RuntimeError`` on the loop's own thread.
        """
        loop = self.loop or self._start()
        if self._thread is threading.current_thread():
            coro.close()
            raise RuntimeError(
                "WSGIAuthMiddleware.run() called from its own loop's thread; "
                "await the coroutine instead"
            )
        call = _Call()
        calls = self._calls
        calls.add(call)
        try:
            loop.call_soon_threadsafe(_begin, loop, coro, call)
        except RuntimeError as exc:  # the loop was closed under us
            coro.close()
            raise LoopGone("the middleware's event loop was stopped") from exc
        if not call.done.acquire(timeout=timeout):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_cancel, call)
            raise TimeoutError(f"no answer from the event loop within {timeout} s")
        calls.discard(call)
        error = call.error
        if error is not None:
            call.error = None  # no cycle through the traceback
            raise error
        result: T = call.result
        return result

    @staticmethod
    def _serve(
        loop: asyncio.AbstractEventLoop, started: threading.Event, calls: weakref.WeakSet[_Call]
    ) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            try:
                # Whatever is left (a request cut off by close()) is cancelled so the loop
                # closes without "task destroyed but pending" noise.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                for call in list(calls):  # never answered: their callers get LoopGone
                    call.release()

    def stop(self, auth: AuthFramework, timeout: float) -> None:
        """Close ``auth`` on the loop's thread, then stop the loop and join the thread."""
        with self._lock:
            loop, thread = self.loop, self._thread
            self.loop = self._thread = None
        if loop is None or thread is None:
            return
        if thread is threading.current_thread():
            # Reached from the loop itself (the middleware collected there): finish there.
            loop.create_task(_close_then_stop(auth, loop))
            return
        try:
            asyncio.run_coroutine_threadsafe(auth.close(), loop).result(timeout)
        except Exception as exc:  # shutting down: report it, then stop the loop anyway
            log.warning("closing the framework on the WSGI loop failed: %r", exc)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)


_ALL: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for loop_thread in list(_ALL):
        loop_thread._forget()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


async def _close_then_stop(auth: AuthFramework, loop: asyncio.AbstractEventLoop) -> None:
    try:
        await auth.close()
    finally:
        loop.stop()
