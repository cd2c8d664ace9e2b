"""Over HTTP: uvicorn serving the bare app and authmw on cached Redis, loaded by wrk.

* Matrix: one uvicorn worker per app, wrk on loopback at 1, 16 and 64 connections, the two
  apps in turn each round: requests/s and p99 latency (wrk ``--latency``); target: authmw at
  least 0.95x the bare app's requests/s.
* Scaling: authmw with two workers sharing Redis (each with its cache) beside one worker, 64
  connections; target 1.6x.
* Revocation under load: while wrk loads the two-worker server, a token is cached in both
  workers (one keep-alive connection to each, told apart by the process id in the body), then
  revoked from this process; the delay is until both workers refuse it (target: p99 < 50 ms).
  Each poll is a real request queued behind wrk's, so the figure includes that wait.

Servers listen on free loopback ports and are always stopped at the end (their process
group, which this module started). Run alone: ``python -m benchmarks.http_matrix [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from authmw import AuthFramework
from benchmarks._env import ROOT, ensure_wrk
from benchmarks.context import PASSWORD, USER, Context
from benchmarks.report import Row, absolute, compare
from benchmarks.timing import interleave, median

__all__ = ["run"]

CONNECTIONS = (1, 16, 64)
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class Server:
    """A uvicorn process group serving one app factory on a loopback port."""

    factory: str
    workers: int
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    pids: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The app's root URL."""
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        """Stop the whole process group (uvicorn's supervisor and its workers)."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _start(factory: str, workers: int, env: dict[str, str], logs: Path) -> Server:
    port = _free_port()
    log = logs / f"{factory}-{workers}.log"
    process = subprocess.Popen(  # noqa: ASYNC220 - a long-lived server, not awaited
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"benchmarks.http_app:{factory}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )  # its own process group: stop() ends every worker
    return Server(factory, workers, port, process, log)


async def _ready(server: Server, token: str, wait: float = 30.0) -> None:
    """Wait until every worker answered (a new connection per request reaches any of them)."""
    import httpx

    deadline = time.monotonic() + wait
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    async with httpx.AsyncClient(headers=headers) as client:
        while len(server.pids) < server.workers:
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"uvicorn {server.factory} did not start: {server.log.read_text()[-500:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                response = await client.get(server.url)
                if response.status_code == 200:
                    server.pids.add(response.text.split()[-1])
                    continue
            await asyncio.sleep(0.1)


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


@dataclass
class Load:
    """One wrk run: requests/s and p99 latency in milliseconds."""

    rate: float
    p99: float
    errors: str = ""


async def wrk(url: str, token: str, connections: int, seconds: float) -> Load:
    """Run wrk (one thread, ``connections`` keep-alive connections) and read its report.

    A response other than 2xx/3xx fails the case: a benchmark of 401s compares nothing.
    """
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.MULTILINE)
    if rate is None or p99 is None or "Non-2xx" in text:
        raise RuntimeError(f"wrk against {url}: {text.strip()[-400:]}")
    errors = re.search(r"Socket errors:.*", text)
    return Load(float(rate.group(1)), _ms(p99.group(1)), errors.group(0) if errors else "")


def _measure(
    ctx: Context,
    server: Server,
    token: str,
    connections: int,
    seconds: float,
    latencies: list[float],
) -> Callable[[], Awaitable[float]]:
    async def measure() -> float:
        load = await wrk(server.url, token, connections, seconds)
        latencies.append(load.p99)
        if load.errors:  # timeouts under load: worth knowing, not a reason to drop the case
            ctx.notes.append(
                f"wrk, {server.factory} x{server.workers}, {connections} connections: {load.errors}"
            )
        return load.rate

    return measure


@contextlib.asynccontextmanager
async def servers(ctx: Context, token: str) -> AsyncIterator[dict[str, Server]]:
    """bare (1 worker), authmw (1 worker), authmw (2 workers); all stopped on exit."""
    separator = "&" if "?" in ctx.redis_url else "?"
    env = {
        **os.environ,
        "AUTHMW_BENCH_REDIS_URL": f"{ctx.redis_url}{separator}key_prefix="
        f"{quote(ctx.redis_prefix('http'))}",
        "AUTHMW_BENCH_SECRET_KEY": ctx.secret_key,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    started: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="authmw-bench-") as logs:
        try:
            for name, factory, workers in (
                ("bare", "bare", 1),
                ("ours", "authmw_cached_redis", 1),
                ("ours2", "authmw_cached_redis", 2),
            ):
                started[name] = await _start(factory, workers, env, Path(logs))
            for server in started.values():
                await _ready(server, token)
            yield started
        finally:
            for server in started.values():
                server.stop()


async def _pollers(server: Server, token: str) -> dict[str, Any]:
    """One keep-alive client per worker of ``server`` (found by opening connections)."""
    import httpx

    found: dict[str, httpx.AsyncClient] = {}
    spare: list[httpx.AsyncClient] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    for _ in range(64):
        client = httpx.AsyncClient(limits=limits, timeout=10)
        pid = (
            await client.get(server.url, headers={"Authorization": f"Bearer {token}"})
        ).text.split()[-1]
        if pid in found:
            spare.append(client)
        else:
            found[pid] = client
        if len(found) == server.workers:
            break
    for client in spare:
        await client.aclose()
    if len(found) < server.workers:
        for client in found.values():
            await client.aclose()
        raise RuntimeError("could not open a connection to every worker")
    return dict(found)


async def revocation(
    ctx: Context, auth: AuthFramework, server: Server, load_token: str
) -> tuple[list[float], list[float]]:
    """Delays (ms) from ``revoke()`` returning to every worker refusing the token, under wrk
    load; and the round trips (ms) of the requests that cached each token in both workers just
    before: the resolution of the delay, since every poll queues behind wrk's requests."""
    s = ctx.settings
    duration = max(4.0, s.revocations * 0.4 + 2.0)
    load = asyncio.create_task(wrk(server.url, load_token, 64, duration))
    pollers = await _pollers(server, load_token)
    delays: list[float] = []
    trips: list[float] = []
    try:
        await asyncio.sleep(0.5)  # let wrk reach full load
        deadline = time.monotonic() + duration - 1.5
        while len(delays) < s.revocations and time.monotonic() < deadline:
            token = (await auth.authenticate(USER, PASSWORD)).access_token
            headers = {"Authorization": f"Bearer {token}"}
            for client in pollers.values():
                sent = time.perf_counter()
                first = await client.get(server.url, headers=headers)
                trips.append((time.perf_counter() - sent) * 1000)
                if first.status_code != 200:
                    raise RuntimeError(f"fresh token refused: {first.status_code}")
            await auth.revoke(token)
            revoked = time.perf_counter()

            async def refused(
                client: Any, headers: dict[str, str] = headers, revoked: float = revoked
            ) -> float:
                while time.perf_counter() - revoked < 5.0:
                    response = await client.get(server.url, headers=headers)
                    if response.status_code == 401:
                        return time.perf_counter()
                raise RuntimeError("a worker still accepted a revoked token after 5 s")

            ends = await asyncio.gather(*(refused(c) for c in pollers.values()))
            delays.append((max(ends) - revoked) * 1000)
        await load
    finally:
        if not load.done():
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await load
        for client in pollers.values():
            await client.aclose()
    return delays, trips


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def run(ctx: Context) -> list[Row]:
    """The matrix, the scaling ratio and the revocation delay."""
    if ensure_wrk() is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk) and could not be")
    s = ctx.settings
    auth = ctx.framework(ctx.redis("http", cached=True))
    rows: list[Row] = []
    try:
        await auth.register_user(USER, PASSWORD)
        token = (await auth.authenticate(USER, PASSWORD)).access_token
        async with servers(ctx, token) as up:
            for connections in CONNECTIONS:
                section = "HTTP: uvicorn, 1 worker, wrk on loopback"
                p99s: dict[str, list[float]] = {"bare": [], "ours": []}
                r = await interleave(
                    s.http_rounds,
                    {
                        name: _measure(
                            ctx, up[name], token, connections, s.http_seconds, p99s[name]
                        )
                        for name in ("bare", "ours")
                    },
                )
                rows.append(
                    compare(
                        section,
                        f"authmw bearer, cached Redis, {connections} connection"
                        f"{'s' if connections > 1 else ''}",
                        r["ours"],
                        r["bare"],
                        "bare app",
                        at_least=0.95,
                        detail=f"p99 {median(p99s['ours']):.2f} ms",
                        peer_detail=f"p99 {median(p99s['bare']):.2f} ms",
                    )
                )
            p99s = {"ours": [], "ours2": []}
            r = await interleave(
                s.http_rounds,
                {
                    name: _measure(ctx, up[name], token, 64, s.http_seconds, p99s[name])
                    for name in ("ours", "ours2")
                },
            )
            rows.append(
                compare(
                    "HTTP: scaling, 64 connections",
                    "authmw cached Redis, 2 workers / 1 worker",
                    r["ours2"],
                    r["ours"],
                    "1 worker",
                    at_least=1.6,
                    detail=f"p99 {median(p99s['ours2']):.2f} ms",
                    peer_detail=f"p99 {median(p99s['ours']):.2f} ms",
                )
            )
            delays, trips = await revocation(ctx, auth, up["ours2"], token)
    finally:
        await auth.close()
    ctx.notes.append(
        "Revocation under load: each poll is a real request queued behind wrk's 64 "
        "connections, so the delay includes that wait; 'one request under that load' is its "
        "size. wrk runs one thread on the same 2 cores as uvicorn, Redis and this process, "
        "which caps what the 2-worker scaling ratio can show here."
    )
    rows.append(
        absolute(
            "HTTP: revocation under load (2 workers, wrk 64 connections)",
            f"revoke() to both workers refusing, p99 of {len(delays)}",
            _p99(delays),
            unit="ms",
            peer=f"p50 {statistics.median(delays):.2f} ms, max {max(delays):.2f} ms; "
            f"one request under that load p50 {statistics.median(trips):.2f} ms",
            at_most=50.0,
        )
    )
    return rows


if __name__ == "__main__":
    from benchmarks.harness import standalone

    standalone("http_matrix")
