"""Steady in-process load on an ASGI app: many concurrent clients, every answer recorded.

Used by the fault tests (a server stopped and started under the load) and ``scripts/soak``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it started and ended (monotonic seconds), what it was, what came back."""

    started: float
    ended: float
    kind: str
    status: int
    retry_after: bool


@dataclass
class Load:
    """``clients`` concurrent loops of GET ``path``, client ``i`` sending ``headers[kinds[i %
    len(kinds)]]``, until :meth:`stop` is called. ``samples`` grows as answers arrive."""

    app: Any
    headers: dict[str, dict[str, str]]
    clients: int = 64
    path: str = "/private"
    samples: list[Sample] = field(default_factory=list)
    _stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _client(self, http: httpx.AsyncClient, kind: str) -> None:
        headers = self.headers[kind]
        while not self._stopping:
            started = time.monotonic()
            try:
                response = await http.get(self.path, headers=headers)
                status, retry = response.status_code, "retry-after" in response.headers
            except httpx.HTTPError:
                status, retry = 0, False  # the transport failed: counted, never expected
            self.samples.append(Sample(started, time.monotonic(), kind, status, retry))
            await asyncio.sleep(0)

    async def __aenter__(self) -> Load:
        self._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
            base_url="https://testserver",
            timeout=60,
        )
        kinds = sorted(self.headers)
        self._tasks = [
            asyncio.create_task(self._client(self._http, kinds[i % len(kinds)]))
            for i in range(self.clients)
        ]
        return self

    async def stop(self) -> None:
        """Let every client finish its request in flight, then stop."""
        self._stopping = True
        await asyncio.gather(*self._tasks)
        await self._http.aclose()

    async def __aexit__(self, *exc: object) -> None:
        if not self._stopping:
            await self.stop()

    def between(self, start: float, end: float, kind: str | None = None) -> list[Sample]:
        """Samples that started at or after ``start`` and ended by ``end``."""
        return [
            s
            for s in self.samples
            if s.started >= start and s.ended <= end and (kind is None or s.kind == kind)
        ]

    def statuses(self, samples: list[Sample] | None = None) -> dict[int, int]:
        """Status -> count."""
        return dict(Counter(s.status for s in (self.samples if samples is None else samples)))

    async def wait_for(self, check: Callable[[], bool], limit: float) -> bool:
        """Poll ``check`` every 20 ms for up to ``limit`` seconds while the load runs."""
        deadline = time.monotonic() + limit
        while not check():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def recovered_since(self, up: float, kind: str, quiet: float) -> float | None:
        """Seconds from ``up`` to the end of the last non-200 answer of ``kind`` started after
        ``up`` - the recovery time - once ``quiet`` seconds of only 200s followed; else None."""
        after = [s for s in self.samples if s.kind == kind and s.started >= up]
        failed = [s.ended for s in after if s.status != 200]
        last_failure = max(failed, default=up)
        good_after = [s for s in after if s.started > last_failure]
        if not good_after or max(s.ended for s in good_after) - last_failure < quiet:
            return None
        return last_failure - up
