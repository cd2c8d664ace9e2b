"""Every failure the command line promises to report in one line, with a non-zero exit."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from authmw.storage.postgres import PostgresStorage
from authmw.storage.redis import RedisStorage
from tests.backends.redis import RedisServer, free_port
from tests.support.cli_helpers import (
    authmw,
    one_line_error,
    postgres_at_url,
    redis_at_url,
    redis_at_url2,
)
from tests.support.migration_data import add_audit, fill, make_auth

__all__ = ["postgres_at_url", "redis_at_url", "redis_at_url2"]  # fixtures used here

Store = tuple[str, RedisStorage]
PgStore = tuple[str, PostgresStorage]


def test_unreachable_url() -> None:
    """Nothing listening: one line naming the backend and the redacted address, no secret."""
    port = free_port()
    for command in (["stats"], ["backup"], ["cleanup"]):
        args = [*command, f"redis://:hidden-pw@127.0.0.1:{port}/0"]
        if command == ["backup"]:
            args.append("/tmp/never-written.jsonl")
        line = one_line_error(authmw(*args))
        assert "redis storage unavailable" in line and f"127.0.0.1:{port}" in line
        assert "hidden-pw" not in line
    assert not Path("/tmp/never-written.jsonl").exists()
    result = authmw(
        "stats", f"postgresql://postgres:pg-Pa55-cli@127.0.0.1:{port}/x?sslpassword=KEYPASS-cli"
    )
    line = one_line_error(result)
    assert "postgres storage unavailable" in line
    assert "pg-Pa55-cli" not in result.stdout + result.stderr
    assert "KEYPASS-cli" not in result.stdout + result.stderr


def test_bad_scheme_and_missing_url() -> None:
    """An unknown scheme or no URL at all is named in one line."""
    assert "unknown storage scheme 'mysql'" in one_line_error(authmw("stats", "mysql://h/db"))
    assert "AUTHMW_STORAGE_URL" in one_line_error(authmw("stats"))
    assert "same URL" in one_line_error(authmw("migrate", "memory://", "memory://"))
    usage = authmw("migrate", "memory://")
    assert usage.returncode == 2 and "DST" in usage.stderr


def test_wrong_password() -> None:
    """A password the server refuses: one line, the password nowhere in the output."""
    right = f"right-Pa55-{free_port()}"
    server = RedisServer([f"requirepass {right}"], password=right).start()
    try:
        result = authmw("stats", f"redis://:wrong-Pa55-word@127.0.0.1:{server.port}/0")
        line = one_line_error(result)
        assert "refused the credentials" in line
        assert "wrong-Pa55-word" not in result.stdout + result.stderr
        check = authmw("check", f"redis://:wrong-Pa55-word@127.0.0.1:{server.port}/0")
        assert "FAIL  connectivity" in check.stdout and check.returncode == 1
        assert "wrong-Pa55-word" not in check.stdout + check.stderr
    finally:
        server.destroy()


async def test_full_disk_leaves_no_file(redis_at_url: Store, tmp_path: Path) -> None:
    """A backup hitting a full disk (16 KiB tmpfs) fails in one line and leaves no file."""
    url, storage = redis_at_url
    await fill(storage, 300)
    target = tmp_path / "full"
    target.mkdir()
    script = (
        'mount -t tmpfs -o size=16k tmpfs "$1" || exit 99; '
        '"$2" -m authmw.cli backup "$3" "$1/backup.jsonl"; rc=$?; '
        'ls -A "$1" >&2; exit $rc'
    )
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is needed to mount a small tmpfs"
    result = authmw(
        "sh",
        "-c",
        script,
        "sh",
        str(target),
        sys.executable,
        url,
        argv0=[unshare, "--user", "--map-root-user", "--mount"],
    )
    assert result.returncode != 99, result.stderr
    line = one_line_error(result)  # ls printed nothing: the directory is empty
    assert "no space left on device" in line.lower() and "nothing was written" in line


async def test_unwritable_backup_path(redis_at_url: Store, tmp_path: Path) -> None:
    """A backup into a missing directory or onto a directory is refused in one line."""
    url, _ = redis_at_url
    line = one_line_error(authmw("backup", url, str(tmp_path / "no" / "such" / "b.jsonl")))
    assert "cannot create backup file" in line and "No such file or directory" in line
    line = one_line_error(authmw("backup", url, str(tmp_path)))
    assert "cannot write backup file" in line
    assert os.listdir(tmp_path) == []


async def test_backup_restore_and_bad_files(
    redis_at_url: Store, postgres_at_url: PgStore, tmp_path: Path
) -> None:
    """Backup/restore round-trips via the CLI; damaged files fail in one line, restore nothing."""
    (src_url, src), (dst_url, dst) = redis_at_url, postgres_at_url
    data = await fill(src, 40, real=2)
    await add_audit(src, 5)
    good = tmp_path / "good.jsonl"
    made = authmw("backup", src_url, str(good))
    assert made.returncode == 0 and f"backup written: {good}" in made.stdout

    raw = good.read_bytes()
    bad = {
        "truncated.jsonl": raw[:-40],
        "corrupt.jsonl": raw.replace(b"user000007", b"user000008", 1),
        "foreign.jsonl": b"hello\n",
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
        line = one_line_error(authmw("restore", dst_url, str(tmp_path / name)))
        assert name in line and "nothing was restored" in line
        assert any(word in line for word in ("truncated", "corrupt", "not an authmw backup"))
    assert (await dst.get_statistics()).total_users == 0
    missing = one_line_error(authmw("restore", dst_url, str(tmp_path / "absent.jsonl")))
    assert "cannot read backup file" in missing

    restored = authmw("restore", dst_url, str(good), "--verify")
    assert restored.returncode == 0, restored.stderr
    assert (await dst.get_statistics()).total_users == data.users
    for access_token in data.access_tokens:
        await make_auth(dst).verify(access_token)
    twice = authmw("restore", dst_url, str(good), "--json")
    assert twice.returncode == 0 and '"copied": 0' in twice.stdout


async def test_postgres_only_commands_refuse_other_backends(
    redis_at_url: Store, tmp_path: Path
) -> None:
    """--native, native restore and migrate-schema name PostgreSQL when given another URL."""
    url, _ = redis_at_url
    line = one_line_error(authmw("backup", url, str(tmp_path / "n.sql"), "--native"))
    assert "for storages with a native backup format (PostgreSQL)" in line
    assert "this URL is a redis storage" in line
    (tmp_path / "dump.sql").write_text("-- authmw-backup: 1\n")
    assert "PostgreSQL" in one_line_error(authmw("restore", url, str(tmp_path / "dump.sql")))
    assert "PostgreSQL" in one_line_error(authmw("migrate-schema", url))
