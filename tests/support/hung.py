"""Hung servers for the storage-timeout tests: throwaway Redis and PostgreSQL servers whose
processes are paused with ``SIGSTOP`` (the sockets stay open, nothing answers) and resumed."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.backends.postgres import PgCluster
from tests.backends.redis import RedisServer

BOUND_FACTOR = 3
"""A hung call must end within ``timeout * BOUND_FACTOR + BOUND_SLACK`` seconds: generous, so
a slow machine does not fail the tests, and still far below a hang."""
BOUND_SLACK = 5.0


def bound(timeout: float) -> float:
    """The generous limit for everything a test does against a hung server of ``timeout``."""
    return timeout * BOUND_FACTOR + BOUND_SLACK


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            # The parent pid is the 2nd field after the ")" that ends the command name.
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def postmaster_pid(cluster: PgCluster) -> int:
    """The pid of a running throwaway cluster's postmaster."""
    return int((cluster.data / "postmaster.pid").read_text().split()[0])


@contextmanager
def paused(server: RedisServer | PgCluster) -> Iterator[None]:
    """The server's processes stopped (``SIGSTOP``) inside the block, resumed after, always.

    For PostgreSQL the postmaster is stopped first (so it forks no new backend), then every
    process it started: backends, checkpointer and the rest.
    """
    if isinstance(server, RedisServer):
        assert server.proc is not None
        pids = [server.proc.pid]
        os.kill(pids[0], signal.SIGSTOP)
    else:
        pids = [postmaster_pid(server)]
        os.kill(pids[0], signal.SIGSTOP)
        pids += _children(pids[0])
        for pid in pids[1:]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in reversed(pids):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@contextmanager
def throwaway(kind: str) -> Iterator[RedisServer | PgCluster]:
    """A started throwaway ``"redis"`` or ``"postgres"`` server, destroyed afterwards."""
    server: RedisServer | PgCluster
    if kind == "redis":
        server = RedisServer()
        try:
            yield server.start()
        finally:
            server.destroy()
    else:
        server = PgCluster()
        try:
            yield server.init().start()
        finally:
            server.destroy()


def url_of(server: RedisServer | PgCluster) -> str:
    """The server's URL."""
    return server.url if isinstance(server, RedisServer) else server.url()


def kind_of(server: RedisServer | PgCluster) -> str:
    """``"redis"`` or ``"postgres"``."""
    return "redis" if isinstance(server, RedisServer) else "postgres"
