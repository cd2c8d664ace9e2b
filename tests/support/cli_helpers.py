"""Running the ``authmw`` console script for real, and storages addressed by URL for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authmw.storage.postgres import PostgresStorage
from authmw.storage.redis import RedisStorage
from tests.backends.postgres import fresh_prefix
from tests.backends.redis import prefix, purge

ROOT = Path(__file__).resolve().parents[2]


def authmw(
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    argv0: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m authmw.cli ARGS`` (or ``argv0 ARGS``) and return what it did.

    Every run is checked for what no run may ever print: a traceback.
    """
    full_env = {k: v for k, v in os.environ.items() if k != "AUTHMW_STORAGE_URL"}
    full_env.update(env or {})
    result = subprocess.run(
        [*(argv0 or [sys.executable, "-m", "authmw.cli"]), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        input=stdin if stdin is not None else "",
        env=full_env,
    )
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def interrupt_when(marker: str, *args: str) -> tuple[int, str]:
    """Run ``authmw ARGS``, send SIGINT (Ctrl-C) once a stderr line starts with ``marker``;
    return the exit code and everything it wrote to stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "authmw.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # one progress line per redraw when stderr is not a terminal
        seen.append(line)
        if line.startswith(marker):
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=60)
    return proc.returncode, "".join(seen) + rest


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single stderr line of a failed run (asserting there is exactly one)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def with_query(url: str, **options: str) -> str:
    """``url`` with query options added."""
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in options.items())


@pytest.fixture
async def redis_at_url(redis_url: str) -> AsyncIterator[tuple[str, RedisStorage]]:
    """A URL with a key prefix of its own, and an opened storage on it (purged afterwards)."""
    url = with_query(redis_url, key_prefix=prefix())
    storage = RedisStorage(url)
    await storage.open()
    try:
        yield url, storage
    finally:
        await purge(storage)
        await storage.close()


@pytest.fixture
async def redis_at_url2(redis_url: str) -> AsyncIterator[tuple[str, RedisStorage]]:
    """A second, independent :func:`redis_at_url`."""
    url = with_query(redis_url, key_prefix=prefix())
    storage = RedisStorage(url)
    await storage.open()
    try:
        yield url, storage
    finally:
        await purge(storage)
        await storage.close()


@pytest.fixture
async def postgres_at_url(postgres_url: str) -> AsyncIterator[tuple[str, PostgresStorage]]:
    """A URL with a table prefix of its own, and an opened storage on it."""
    url = with_query(postgres_url, table_prefix=fresh_prefix())
    storage = PostgresStorage(url)
    await storage.open()
    try:
        yield url, storage
    finally:
        await storage.close()
