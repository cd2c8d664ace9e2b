"""The portable backup file: round trips on every backend, atomic writes, refusing bad files."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authmw.errors import BackupError, StorageUnavailable
from authmw.models import UserRecord
from authmw.storage import AuthStorage, InMemoryStorage, StorageMigration
from authmw.storage.migration import BackupFile, write_backup
from tests.storage.migration.test_runner import snapshot
from tests.support.migration_data import add_audit, fill, make_auth


async def restore(path: Path, target: AuthStorage) -> StorageMigration:
    """A migration from the backup file at ``path`` into ``target``."""
    return StorageMigration(BackupFile(path), target)


async def test_round_trip_through_every_backend(storage: AuthStorage, tmp_path: Path) -> None:
    """memory -> file -> backend -> file -> memory keeps every record; tokens still verify."""
    source = InMemoryStorage()
    data = await fill(source, 200, real=3)
    await add_audit(source, 25)
    first = tmp_path / "first.jsonl"
    summary = await write_backup(source, first, batch_size=64)
    assert summary.counts["users"] == data.users and summary.counts["audit"] == data.audit + 25

    report = await (await restore(first, storage)).migrate_all()
    assert report.ok and report.total("copied") == sum(summary.counts.values())
    assert report.kinds["tokens"].copied == data.tokens
    second = tmp_path / "second.jsonl"
    await write_backup(storage, second)
    final = InMemoryStorage()
    again = await (await restore(second, final)).migrate_all()
    assert again.ok and again.kinds["audit"].copied == data.audit + 25
    assert await snapshot(final) == await snapshot(source)
    for access_token in data.access_tokens:
        await make_auth(storage).verify(access_token)
        await make_auth(final).verify(access_token)


async def test_backup_is_private_and_complete(tmp_path: Path) -> None:
    """The file is mode 0600, starts with the header, ends with the end marker, no temp left."""
    source = InMemoryStorage()
    await fill(source, 5)
    path = tmp_path / "b.jsonl"
    await write_backup(source, path)
    assert (path.stat().st_mode & 0o777) == 0o600
    lines = path.read_text().splitlines()
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])
    assert header["format"] == "authmw-backup" and header["source"] == "memory"
    assert trailer["kind"] == "end" and trailer["counts"]["users"] == 5
    assert os.listdir(tmp_path) == ["b.jsonl"]


async def test_backup_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """With umask 0 and a world-readable file already under the name, the backup ends up
    readable and writable by its owner only."""
    source = InMemoryStorage()
    await fill(source, 2)
    path = tmp_path / "b.jsonl"
    path.write_text("old")
    path.chmod(0o644)
    old = os.umask(0)
    try:
        await write_backup(source, path)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path) == ["b.jsonl"]


async def test_failed_backup_leaves_nothing(tmp_path: Path) -> None:
    """A storage failing half-way leaves neither the file nor a temporary file behind."""

    class Failing(InMemoryStorage):
        async def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list]:  # type: ignore[type-arg]
            raise StorageUnavailable("memory", "iter_tokens", "gone")
            yield []

    source = Failing()
    await fill(source, 5)
    with pytest.raises(StorageUnavailable):
        await write_backup(source, tmp_path / "b.jsonl")
    assert os.listdir(tmp_path) == []
    (tmp_path / "b.jsonl").write_text("previous backup\n")
    with pytest.raises(StorageUnavailable):
        await write_backup(source, tmp_path / "b.jsonl")
    assert (tmp_path / "b.jsonl").read_text() == "previous backup\n"  # untouched


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "is truncated"),
        ("cut-line", "is truncated"),
        ("flip", "is corrupt"),
        ("garbage", "is corrupt at line"),
        ("foreign", "is not an authmw backup"),
        ("version", "format version"),
    ],
)
async def test_bad_files_restore_nothing(tmp_path: Path, damage: str, message: str) -> None:
    """A truncated, edited, foreign or future-version file is refused before any write."""
    source = InMemoryStorage()
    await fill(source, 20)
    path = tmp_path / "b.jsonl"
    await write_backup(source, path)
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    if damage == "truncate":
        path.write_bytes(b"".join(lines[:-1]))
    elif damage == "cut-line":
        path.write_bytes(raw[: len(raw) - len(lines[-1]) - 10])
    elif damage == "flip":
        path.write_bytes(raw.replace(b"user000003", b"user000004", 1))
    elif damage == "garbage":
        path.write_bytes(b"".join([*lines[:3], b"{not json\n", *lines[3:]]))
    elif damage == "foreign":
        path.write_bytes(b"id,name\n1,alice\n")
    else:
        path.write_bytes(raw.replace(b'"version":1', b'"version":99', 1))
    target = InMemoryStorage()
    with pytest.raises(BackupError, match=message):
        await (await restore(path, target)).migrate_all()
    stats = await target.get_statistics()
    assert stats.total_users == 0 and stats.total_tokens == 0


async def test_restore_skips_records_expired_since_backup(tmp_path: Path) -> None:
    """Entries that expired between backup and restore are counted and not restored."""
    source = InMemoryStorage()
    await source.kv_set("brief", b"x", 0.2)
    await source.kv_set("lasting", b"y", 600)
    await source.create_user(
        UserRecord.from_dict(
            {
                "user_id": "u",
                "password_hash": "h",
                "created_at": "2024-01-01T00:00:00+00:00",
                "updated_at": "2024-01-01T00:00:00+00:00",
            }
        )
    )
    path = tmp_path / "b.jsonl"
    await write_backup(source, path)
    await asyncio.sleep(0.3)
    target = InMemoryStorage()
    report = await (await restore(path, target)).migrate_kv_data()
    assert (report.read, report.copied, report.skipped_expired) == (2, 1, 1)
    assert await target.kv_get("lasting") == b"y" and await target.kv_get("brief") is None


async def test_deeply_nested_line_is_corrupt(tmp_path: Path) -> None:
    """A line of deeply nested JSON is reported as corruption (BackupError naming the line),
    not a RecursionError (found by tests/reliability)."""
    from authmw.errors import BackupError
    from authmw.storage.migration import BackupFile

    header = b'{"format": "authmw-backup", "version": 1}\n'
    path = tmp_path / "nested.jsonl"
    path.write_bytes(header + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    with pytest.raises(BackupError, match="corrupt at line 2 .nested deeper than 500"):
        await BackupFile(path).open()


def test_nesting_depth_is_read_without_recursion() -> None:
    """too_deep counts only brackets outside strings, scans only lines with enough openers,
    and answers for 100,000 levels without recursing (json.loads would near its limit)."""
    from authmw.storage.migration._backup import too_deep

    assert not too_deep(b'{"data": "' + b"[" * 1000 + b'"}\n', limit=10)
    assert not too_deep(b'{"a": "\\"[[[[[[[[[[[[", "b": [[1]]}\n', limit=3)
    assert too_deep(b"[" * 12 + b"]" * 12, limit=10)
    assert not too_deep(b"[[]]" * 50, limit=10)  # many brackets, shallow
    assert too_deep(b"[" * 100_000 + b"]" * 100_000)


async def test_deeply_nested_header_is_not_a_backup(tmp_path: Path) -> None:
    """A header line of deeply nested JSON reads as "not an authmw backup", not as a
    RecursionError."""
    from authmw.errors import BackupError
    from authmw.storage.migration import BackupFile

    path = tmp_path / "nested-header.jsonl"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    with pytest.raises(BackupError, match="not an authmw backup"):
        await BackupFile(path).open()
