"""Every ``authmw`` subcommand through its real entry point, on real servers."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from authmw import AuthConfig, AuthFramework
from authmw.errors import InvalidToken
from authmw.storage.postgres import PostgresStorage
from authmw.storage.redis import RedisStorage
from tests.backends.postgres import fresh_prefix
from tests.support.cli_helpers import (
    ROOT,
    authmw,
    interrupt_when,
    one_line_error,
    postgres_at_url,
    redis_at_url,
    redis_at_url2,
    with_query,
)
from tests.support.factories import make_user
from tests.support.migration_data import fill, make_auth

__all__ = ["postgres_at_url", "redis_at_url", "redis_at_url2"]  # fixtures used here

Store = tuple[str, RedisStorage]
PgStore = tuple[str, PostgresStorage]

COMMANDS = {
    "migrate": ["--batch-size", "--verify", "--no-preserve-ttl", "--dry-run", "--json"],
    "stats": ["--json"],
    "cleanup": ["--json"],
    "backup": ["--native", "FILE"],
    "restore": ["--overwrite", "FILE"],
    "check": ["--max-latency", "--json"],
    "create-user": ["--role", "--permission", "--password-stdin"],
    "revoke-user": ["USER", "--json"],
    "list-users": ["--after", "--limit", "--role", "--disabled", "--json"],
    "show-user": ["USER", "--json"],
    "set-password": ["--password-stdin", "--json"],
    "set-roles": ["ROLE", "--json"],
    "set-permissions": ["PERMISSION", "--json"],
    "disable-user": ["USER", "--json"],
    "enable-user": ["USER", "--json"],
    "unlock-user": ["USER", "--json"],
    "delete-user": ["--yes", "--json"],
    "migrate-schema": ["--target"],
    "demo": ["--walkthrough"],
}


def test_help_reads_well_for_every_command() -> None:
    """`authmw --help` lists every subcommand; each subcommand's help names its options."""
    top = authmw("--help", argv0=[str(ROOT / ".venv" / "bin" / "authmw")])
    assert top.returncode == 0
    for command, words in COMMANDS.items():
        assert command in top.stdout
        sub = authmw(command, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith("usage: authmw " + command)
        for word in words:
            assert word in sub.stdout, (command, word)


async def test_migrate_redis_to_postgres(redis_at_url: Store, postgres_at_url: PgStore) -> None:
    """`migrate --verify --json` copies everything, a rerun copies nothing, tokens verify."""
    (src_url, src), (dst_url, dst) = redis_at_url, postgres_at_url
    data = await fill(src, 100, real=3)
    result = authmw("migrate", src_url, dst_url, "--verify", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["totals"]["copied"] == report["totals"]["verified"]
    assert report["kinds"]["tokens"]["copied"] == data.tokens
    again = json.loads(authmw("migrate", src_url, dst_url, "--json").stdout)
    assert again["totals"]["copied"] == 0
    assert again["totals"]["already_present"] == report["totals"]["copied"]
    for access_token in data.access_tokens:
        await make_auth(dst).verify(access_token)


async def test_migrate_table_progress_and_dry_run(
    redis_at_url: Store, redis_at_url2: Store
) -> None:
    """The summary table and a progress bar (--progress) show; --dry-run writes nothing."""
    (src_url, src), (dst_url, dst) = redis_at_url, redis_at_url2
    await fill(src, 30)
    dry = authmw("migrate", src_url, dst_url, "--dry-run", "--progress")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "total" in dry.stdout
    assert "users" in dry.stderr and "30/30" in dry.stderr
    assert (await dst.get_statistics()).total_users == 0
    only = authmw("migrate", src_url, dst_url, "--only", "users", "kv", "--no-progress")
    assert only.returncode == 0 and only.stderr == ""
    stats = await dst.get_statistics()
    assert (stats.total_users, stats.kv_entries, stats.total_tokens) == (30, 30, 0)


async def test_migrate_conflict_exits_3(redis_at_url: Store, redis_at_url2: Store) -> None:
    """A conflicting target record: exit 3 and one line, kept; --overwrite replaces it."""
    (src_url, src), (dst_url, dst) = redis_at_url, redis_at_url2
    await src.create_user(make_user("alice", roles=("admin",)))
    await dst.create_user(make_user("alice", roles=("guest",)))
    result = authmw("migrate", src_url, dst_url)
    line = one_line_error(result, 3)
    assert "1 conflicting records (users: 1)" in line and "--overwrite" in line
    assert (await dst.get_user("alice")).roles == ("guest",)  # type: ignore[union-attr]
    fixed = authmw("migrate", src_url, dst_url, "--overwrite", "--verify")
    assert fixed.returncode == 0, fixed.stderr
    assert (await dst.get_user("alice")).roles == ("admin",)  # type: ignore[union-attr]


async def test_stats_and_cleanup(redis_at_url: Store) -> None:
    """`stats --json` counts records; `cleanup` reports what it removed; the env URL works."""
    url, storage = redis_at_url
    await fill(storage, 12)
    stats = json.loads(authmw("stats", url, "--json").stdout)
    assert (stats["backend"], stats["users"], stats["kv_entries"]) == ("redis", 12, 12)
    table = authmw("stats", env={"AUTHMW_STORAGE_URL": url})
    assert table.returncode == 0 and "users" in table.stdout and "12" in table.stdout
    memory = next(line for line in table.stdout.splitlines() if line.startswith("memory"))
    assert memory.split()[-1] in {"kB", "MB", "GB"}, table.stdout  # human units, not a raw int
    assert "{" not in table.stdout  # a table, not a dict repr
    cleanup = authmw("cleanup", url, "--json")
    assert cleanup.returncode == 0 and "tokens" in json.loads(cleanup.stdout)["removed"]
    assert authmw("cleanup", url).stdout.startswith("removed expired records:")


async def test_check_healthy_and_schema(redis_at_url: Store, postgres_url: str) -> None:
    """`check` passes healthy storages and fails an old schema until `migrate-schema` runs."""
    url, _ = redis_at_url
    ok = json.loads(authmw("check", url, "--json").stdout)
    assert ok["healthy"] and [c["check"] for c in ok["checks"]] == ["connectivity", "latency"]
    pg = with_query(postgres_url, table_prefix=fresh_prefix(), migration_mode="manual")
    bad = authmw("check", pg)
    assert "FAIL  schema" in bad.stdout and "version 0" in bad.stdout
    assert "unhealthy (schema failed)" in one_line_error(bad)
    applied = authmw("migrate-schema", pg)
    assert applied.returncode == 0 and "applied schema migrations 1, 2" in applied.stdout
    assert "already up to date" in authmw("migrate-schema", pg).stdout
    good = json.loads(authmw("check", pg, "--json").stdout)
    assert good["healthy"] and good["checks"][-1]["check"] == "schema"
    assert "unhealthy (latency failed)" in one_line_error(
        authmw("check", url, "--max-latency", "0")
    )


async def test_create_user_and_revoke_user(redis_at_url: Store) -> None:
    """`create-user` registers via the framework; `revoke-user` ends the user's tokens."""
    url, storage = redis_at_url
    password = "pass-from-stdin-42"
    made = authmw(
        "create-user",
        url,
        "alice",
        "--role",
        "admin",
        "--permission",
        "read",
        "--password-stdin",
        stdin=password + "\n",
    )
    assert made.returncode == 0, made.stderr
    assert "created user 'alice' (roles: admin; permissions: read)" in made.stdout
    assert password not in made.stdout + made.stderr
    user = await storage.get_user("alice")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert (await storage.query_audit(action="user.register"))[0].user_id == "alice"
    auth = AuthFramework(storage, AuthConfig(secret_key="k" * 40))
    token = await auth.authenticate("alice", password)
    again = authmw("create-user", url, "alice", "--password-stdin", stdin="another-pass-1\n")
    assert "user 'alice' already exists" in one_line_error(again)
    revoked = authmw("revoke-user", url, "alice")
    assert revoked.returncode == 0 and "revoked 1 live tokens" in revoked.stdout
    with pytest.raises(InvalidToken):
        await auth.verify(token.access_token)


async def test_create_user_needs_a_password_source(redis_at_url: Store) -> None:
    """Without a terminal and without --password-stdin, create-user refuses in one line."""
    url, storage = redis_at_url
    line = one_line_error(authmw("create-user", url, "bob"))
    assert "--password-stdin" in line
    short = one_line_error(authmw("create-user", url, "bob", "--password-stdin", stdin="x\n"))
    assert "password: shorter than" in short
    assert await storage.get_user("bob") is None


async def test_postgres_native_backup_and_restore(postgres_at_url: PgStore, tmp_path: Path) -> None:
    """`backup --native` and `restore --replace` round-trip PostgreSQL's own dump."""
    url, storage = postgres_at_url
    data = await fill(storage, 25, real=2)
    dump = tmp_path / "native.sql"
    made = authmw("backup", url, str(dump), "--native")
    assert made.returncode == 0 and "backup written" in made.stdout, made.stderr
    assert dump.read_text().startswith("-- authmw-backup: 1")
    for i in range(10):
        await storage.delete_user(f"user{i:06d}")
    busy = one_line_error(authmw("restore", url, str(dump)))
    assert "not empty" in busy
    done = authmw("restore", url, str(dump), "--replace")
    assert done.returncode == 0 and "restored" in done.stdout, done.stderr
    assert (await storage.get_statistics()).total_users == data.users
    for access_token in data.access_tokens:
        await make_auth(storage).verify(access_token)


def test_create_user_reads_password_from_terminal_without_echo() -> None:
    """On a real terminal create-user prompts twice and never echoes the password."""
    master, slave = pty.openpty()

    def own_terminal() -> None:  # the child's controlling terminal is the pty, for getpass
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "authmw.cli", "create-user", "memory://", "tty-user"],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        preexec_fn=own_terminal,
    )
    os.close(slave)
    screen = b""

    def read_until(word: bytes, wait: float = 30) -> None:
        nonlocal screen
        deadline = time.monotonic() + wait
        while word not in screen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    screen += os.read(master, 1024)
                except OSError:
                    return

    try:
        read_until(b"Password: ")
        os.write(master, b"typed-Secret-77\n")
        read_until(b"Repeat password: ")
        os.write(master, b"typed-Secret-77\n")
        out, err = proc.communicate(timeout=60)
        read_until(b"\x00", 2)  # drain what is left on the terminal
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert b"created user 'tty-user'" in out and b"Repeat password: " in screen
    assert b"typed-Secret-77" not in screen + out + err


async def test_interrupted_migrate_then_rerun(
    redis_at_url: Store, postgres_at_url: PgStore
) -> None:
    """Ctrl-C during `migrate` exits 130 with one line; running it again finishes the job."""
    (src_url, src), (dst_url, dst) = redis_at_url, postgres_at_url
    await fill(src, 3000)
    code, err = interrupt_when(
        "tokens", "migrate", src_url, dst_url, "--batch-size", "50", "--progress"
    )
    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert last == "authmw migrate: interrupted - rerun the same command to resume"
    assert "Traceback" not in err
    assert (await dst.get_statistics()).total_users == 3000
    rerun = authmw("migrate", src_url, dst_url, "--json")
    report = json.loads(rerun.stdout)
    assert rerun.returncode == 0 and report["kinds"]["users"]["already_present"] == 3000
    tokens = report["kinds"]["tokens"]
    assert tokens["already_present"] > 0 and tokens["copied"] + tokens["already_present"] == 3000
    assert (await dst.get_statistics()).total_tokens == 3000


def test_version() -> None:
    """`authmw --version` prints the package version."""
    from authmw import __version__

    result = authmw("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"authmw {__version__}"


async def test_stats_into_a_closed_pipe(redis_at_url: Store) -> None:
    """`authmw stats | head -0`: the reader is gone; no BrokenPipeError, no traceback."""
    url, _ = redis_at_url
    proc = subprocess.Popen(  # noqa: ASYNC220 - blocking on the child is the test
        [sys.executable, "-m", "authmw.cli", "stats", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `head` exiting before the table is written
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert "BrokenPipe" not in err and "Traceback" not in err and err == "", err
    assert proc.returncode == 1


async def test_migrate_into_memory_warns(redis_at_url: Store) -> None:
    """Migrating into memory:// says the copy vanishes when the command exits."""
    url, storage = redis_at_url
    await fill(storage, 3)
    result = authmw("migrate", url, "memory://", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "vanishes when the command exits" in result.stderr
