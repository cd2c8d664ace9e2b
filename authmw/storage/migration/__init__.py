"""Moving every record from one storage to another, and the portable backup format.

:class:`StorageMigration` copies users, tokens, sessions, key-value entries and the audit log
between any two backends (resumable, idempotent, optionally verified); the portable backup is a
JSON-lines file that any backend can be written to and restored from. See ``docs/cli.md``.
"""

from __future__ import annotations

from ._backup import BackupFile, BackupSummary, backup_kind, write_backup
from ._report import KindReport, MigrationProgress, MigrationReport
from ._runner import MigrationOptions, MigrationSource, StorageMigration

__all__ = [
    "BackupFile",
    "BackupSummary",
    "KindReport",
    "MigrationOptions",
    "MigrationProgress",
    "MigrationReport",
    "MigrationSource",
    "StorageMigration",
    "backup_kind",
    "write_backup",
]
