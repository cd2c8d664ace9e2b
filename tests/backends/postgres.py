"""PostgreSQL backend for the behaviour suite, and the throwaway servers PostgreSQL tests use.

The run's server is ``AUTHMW_POSTGRES_URL`` when set, else 127.0.0.1:5432 (user postgres) when
it answers, else a throwaway cluster started here with ``initdb``/``pg_ctl`` (as the
``postgres`` OS user when the tests run as root, since PostgreSQL refuses to run as root).
``AUTHMW_POSTGRES_THROWAWAY=1`` forces the throwaway cluster. The run creates a database of
its own, ``authmw_test_<random>``, and drops it at the end. Each behaviour test gets a storage
on one fixed table prefix whose tables are emptied before the test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from authmw.storage.postgres import PostgresConfig, PostgresStorage

BACKENDS = {"postgres": "postgres_storage"}

CONTRACT_PREFIX = "contract_"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

T = TypeVar("T")


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop in a worker thread (usable from sync
    session fixtures without touching pytest-asyncio's loops)."""

    async def main() -> T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def fresh_prefix() -> str:
    """A table prefix no other test uses."""
    return f"t{secrets.token_hex(5)}_"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pg_binary(name: str) -> str:
    """The path of a PostgreSQL server binary (initdb, pg_ctl); fails clearly if missing."""
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    found = shutil.which(name) or (candidates[-1] if candidates else None)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed and no server answers on 127.0.0.1:5432; "
            "install the server (e.g. apt-get install postgresql) or set AUTHMW_POSTGRES_URL"
        )
    return found


class PgCluster:
    """A throwaway PostgreSQL cluster on a free loopback port, in a temporary directory.

    ``hba`` lines replace pg_hba.conf (default: trust for everyone on 127.0.0.1); ``conf``
    lines are appended to postgresql.conf. ``files`` (name -> bytes) are written into the data
    directory before start (certificates, keys), owned by the server's user with mode 0600.
    Always call :meth:`destroy` (the fixtures do, in ``finally``).
    """

    def __init__(
        self,
        *,
        hba: list[str] | None = None,
        conf: list[str] | None = None,
        files: dict[str, bytes] | None = None,
    ) -> None:
        self.port = free_port()
        self.hba = hba or ["host all all 127.0.0.1/32 trust"]
        self.conf = conf or []
        self.files = files or {}
        self.root = Path(tempfile.mkdtemp(prefix="authmw-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            self._uid = pwd.getpwnam("postgres").pw_uid
            self._gid = pwd.getpwnam("postgres").pw_gid
            os.chown(self.root, self._uid, self._gid)
        self.running = False

    def _cmd(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        full = ["runuser", "-u", "postgres", "--", *argv] if self._as_root else list(argv)
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {proc.stderr.strip()}\n{tail}")
        return proc.stdout

    def _own(self, path: Path, mode: int = 0o600) -> None:
        if self._as_root:
            os.chown(path, self._uid, self._gid)
        path.chmod(mode)

    def init(self) -> PgCluster:
        """initdb, configuration and files; does not start the server."""
        self._cmd(
            pg_binary("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.root}'",
            # Throwaway data: durability only costs time here.
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "max_connections = 60",
            "shared_buffers = 16MB",
            *self.conf,
        ]
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n" + "\n".join(settings) + "\n")
        (self.data / "pg_hba.conf").write_text("local all all trust\n" + "\n".join(self.hba) + "\n")
        for name, content in self.files.items():
            path = self.data / name
            path.write_bytes(content)
            self._own(path)
        return self

    def start(self) -> PgCluster:
        """Start the server and wait until it accepts connections."""
        self._cmd(
            pg_binary("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "30",
            "start",
        )
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` disconnects clients; ``immediate`` is a crash)."""
        if self.running:
            self._cmd(
                pg_binary("pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                mode,
                "-w",
                "-t",
                "30",
                "stop",
                check=False,
            )
            self.running = False

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the cluster's unix socket."""
        return self._cmd(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.root),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        )

    def url(
        self, user: str = "postgres", password: str | None = None, database: str = "postgres"
    ) -> str:
        """A TCP URL for this cluster."""
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        """Stop the server at once and remove its files."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _answers(url: str) -> bool:
    async def probe() -> bool:
        try:
            con = await asyncpg.connect(url, timeout=3)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False
        await con.close()
        return True

    return run_async(probe)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A superuser URL of the run's PostgreSQL server (found or started)."""
    configured = os.environ.get("AUTHMW_POSTGRES_URL")
    if configured:
        yield configured
        return
    if not os.environ.get("AUTHMW_POSTGRES_THROWAWAY") and _answers(LOCAL_URL):
        yield LOCAL_URL
        return
    cluster = PgCluster()
    try:
        cluster.init().start()
        yield cluster.url()
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A URL of a database created for this run and dropped after it."""
    name = f"authmw_test_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        con = await asyncpg.connect(postgres_admin_url, timeout=10)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    run_async(lambda: admin(f"CREATE DATABASE {name}"))
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        run_async(lambda: admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def contract_config(url: str, **overrides: Any) -> PostgresConfig:
    """The config of the behaviour-suite storage (fixed prefix, short timeouts)."""
    fields: dict[str, Any] = {"url": url, "table_prefix": CONTRACT_PREFIX, "timeout": 10}
    fields.update(overrides)
    return PostgresConfig(**fields)


@pytest.fixture
async def postgres_storage(postgres_url: str) -> AsyncIterator[PostgresStorage]:
    """An opened PostgresStorage whose tables are empty."""
    storage = PostgresStorage.with_config(contract_config(postgres_url))
    await storage.open()
    tables = ", ".join(
        f"{CONTRACT_PREFIX}{t}"
        for t in ("users", "tokens", "sessions", "kv_store", "audit_log", "revoked_families")
    )
    async with storage.pool.acquire() as con:
        await con.execute(f"TRUNCATE {tables}")
    yield storage
    await storage.close()


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()
