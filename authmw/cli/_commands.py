"""What each ``authmw`` subcommand does (the parser and error handling live in ``cli/__init__``).

Each command is a coroutine taking the parsed arguments and returning the exit code; errors
are raised as :class:`~authmw.errors.AuthmwError` and turned into one line by ``cli.main``.
What only some storages can do (a versioned schema, a native backup format) is asked of the
storage as an optional capability of :mod:`authmw.storage.base`, checked with ``isinstance``.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import secrets
import statistics
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..config import AuthConfig
from ..errors import AuthmwError, ConfigurationError, InvalidInput
from ..framework import AuthFramework
from ..storage import AuthStorage, storage_from_url
from ..storage.base import SupportsNativeBackup, SupportsSchema
from ..storage.migration import (
    BackupFile,
    MigrationOptions,
    MigrationProgress,
    MigrationReport,
    StorageMigration,
    backup_kind,
    write_backup,
)
from ._output import ProgressBar, emit_json, human_bytes, human_count, redact_url, table

__all__ = ["COMMANDS", "CommandFailed"]

EXIT_CONFLICT = 3  # the operation ran, but the target holds data that differs from the source
_KIND_FLAGS = ("users", "tokens", "sessions", "kv", "audit")


class CommandFailed(AuthmwError):
    """A command ran but its outcome is a failure; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def storage_url(given: str | None) -> str:
    """The URL argument, else ``$AUTHMW_STORAGE_URL``."""
    url = given or os.environ.get("AUTHMW_STORAGE_URL")
    if not url:
        raise ConfigurationError("no storage URL: give one or set AUTHMW_STORAGE_URL")
    return url


@contextlib.asynccontextmanager
async def opened(url: str, storage: AuthStorage | None = None) -> AsyncIterator[AuthStorage]:
    """A storage from ``url``, opened, and closed afterwards."""
    store = storage or storage_from_url(url)
    try:
        await store.open()
        yield store
    finally:
        with contextlib.suppress(AuthmwError):
            await store.close()


def _native_backup(storage: AuthStorage, what: str) -> SupportsNativeBackup:
    """``storage`` as a storage with a native backup format, else ``ConfigurationError``."""
    if not isinstance(storage, SupportsNativeBackup):
        raise ConfigurationError(
            f"{what} is for storages with a native backup format "
            f"(PostgreSQL); this URL is a {storage.name} storage"
        )
    return storage


def _versioned(storage: AuthStorage, what: str) -> SupportsSchema:
    """``storage`` as a storage with a versioned schema, else ``ConfigurationError``."""
    if not isinstance(storage, SupportsSchema):
        raise ConfigurationError(
            f"{what} is for storages with a versioned schema "
            f"(PostgreSQL); this URL is a {storage.name} storage"
        )
    return storage


# -- migrate and restore ----------------------------------------------------------------------


def _options(args: argparse.Namespace, bar: ProgressBar) -> MigrationOptions:
    def progress(p: MigrationProgress) -> None:
        bar.update(p.kind, p.done, p.total)

    return MigrationOptions(
        batch_size=args.batch_size,
        verify_data=args.verify,
        preserve_ttl=getattr(args, "preserve_ttl", True),
        dry_run=getattr(args, "dry_run", False),
        overwrite=args.overwrite,
        progress=progress,
    )


async def _run_migration(
    migration: StorageMigration, kinds: list[str] | None, bar: ProgressBar
) -> MigrationReport:
    methods = {
        "users": migration.migrate_users,
        "tokens": migration.migrate_tokens,
        "sessions": migration.migrate_sessions,
        "kv": migration.migrate_kv_data,
        "audit": migration.migrate_audit_log,
    }
    try:
        if not kinds:
            return await migration.migrate_all()
        report = MigrationReport(
            migration.source.name, migration.target.name, dry_run=migration.options.dry_run
        )
        for kind in _KIND_FLAGS:
            if kind in kinds:
                report.kinds[kind] = await methods[kind]()
        report.duration = sum(r.duration for r in report.kinds.values())
        return report
    finally:
        bar.finish()


def _outcome(report: MigrationReport, args: argparse.Namespace, verb: str) -> int:
    if args.json:
        emit_json(report.to_dict())
    else:
        print(report.summary())
    conflicts = {
        k: r.mismatched - r.overwritten
        for k, r in report.kinds.items()
        if r.mismatched > r.overwritten
    }
    failed = {k: r.verify_failed for k, r in report.kinds.items() if r.verify_failed}
    if conflicts:
        detail = ", ".join(f"{k}: {n}" for k, n in conflicts.items())
        hint = "" if verb == "dry run" else "; rerun with --overwrite to replace them"
        raise CommandFailed(
            f"the target already holds {sum(conflicts.values())} conflicting records "
            f"({detail}) that differ from the source and were left as they are{hint}",
            EXIT_CONFLICT,
        )
    if failed:
        detail = ", ".join(f"{k}: {n}" for k, n in failed.items())
        raise CommandFailed(
            f"{sum(failed.values())} copied records read back differently "
            f"from the target ({detail})",
            EXIT_CONFLICT,
        )
    return 0


async def cmd_migrate(args: argparse.Namespace) -> int:
    """``authmw migrate SRC DST``."""
    if args.source == args.target:
        raise ConfigurationError("source and target are the same URL")
    if args.target.startswith("memory:") and not args.dry_run:
        print(
            "authmw migrate: warning: memory:// lives in this process only; "
            "what is copied there vanishes when the command exits",
            file=sys.stderr,
        )
    bar = ProgressBar(args.progress)
    async with opened(args.source) as source, opened(args.target) as target:
        migration = StorageMigration(source, target, _options(args, bar))
        report = await _run_migration(migration, args.only, bar)
    return _outcome(report, args, "dry run" if args.dry_run else "migrate")


async def cmd_restore(args: argparse.Namespace) -> int:
    """``authmw restore URL FILE``: a portable file through the migration, or PostgreSQL's
    native file through its own restore."""
    url = storage_url(args.url)
    if backup_kind(args.file) == "native":
        storage = storage_from_url(url)
        native = _native_backup(storage, "restoring a file that is not a portable backup")
        async with opened(url, storage):
            info = await native.restore_backup(args.file, replace=args.replace)
        print(
            f"restored {args.file} (PostgreSQL {info.method} backup, schema version "
            f"{info.schema_version}, tables {', '.join(info.tables)})"
        )
        return 0
    if args.replace:
        raise ConfigurationError(
            "--replace applies to PostgreSQL native backups; for a portable backup use --overwrite"
        )
    backup = BackupFile(args.file)
    await backup.open()  # check the whole file before touching the target
    bar = ProgressBar(args.progress)
    async with opened(url) as target:
        migration = StorageMigration(backup, target, _options(args, bar))
        report = await _run_migration(migration, None, bar)
    return _outcome(report, args, "restore")


# -- backup -----------------------------------------------------------------------------------


async def cmd_backup(args: argparse.Namespace) -> int:
    """``authmw backup URL FILE``."""
    url = storage_url(args.url)
    path = Path(args.file)
    storage = storage_from_url(url)
    native = _native_backup(storage, "--native") if args.native else None
    async with opened(url, storage):
        if native is not None:
            info = await native.create_backup(path)
            print(
                f"backup written: {path} (PostgreSQL, made with {info.tool}, "
                f"schema version {info.schema_version})"
            )
            return 0
        bar = ProgressBar(args.progress)
        try:
            summary = await write_backup(
                storage,
                path,
                batch_size=args.batch_size,
                progress=lambda kind, n: bar.update(kind, n, None),
            )
        finally:
            bar.finish()
    counts = ", ".join(f"{k} {n}" for k, n in summary.counts.items())
    print(f"backup written: {path} ({counts}; {summary.size:,} bytes)")
    return 0


# -- stats, cleanup, check --------------------------------------------------------------------


async def cmd_stats(args: argparse.Namespace) -> int:
    """``authmw stats URL``."""
    url = storage_url(args.url)
    async with opened(url) as storage:
        stats = await storage.get_statistics()
    data = {
        "backend": stats.backend,
        "url": redact_url(url),
        "users": stats.total_users,
        "tokens": stats.total_tokens,
        "sessions": stats.active_sessions,
        "kv_entries": stats.kv_entries,
        "audit_events": stats.audit_events,
        "memory_bytes": stats.memory_bytes,
        "database_size_mb": stats.database_size_mb,
        "extra": stats.extra,
    }
    if args.json:
        emit_json(data)
        return 0
    rows: list[list[Any]] = [["statistic", "value"]]
    rows += [
        ["backend", stats.backend],
        ["url", data["url"]],
        ["users", human_count(stats.total_users)],
        ["tokens", human_count(stats.total_tokens)],
        ["sessions", human_count(stats.active_sessions)],
        ["kv entries", human_count(stats.kv_entries)],
        ["audit events", human_count(stats.audit_events)],
        ["memory", human_bytes(stats.memory_bytes)],
        ["database size", human_bytes(_mb(stats.database_size_mb))],
    ]
    rows += _extra_rows(stats.extra)
    table(rows)
    return 0


def _mb(value: float | None) -> float | None:
    return None if value is None else value * 1e6


def _extra_rows(extra: dict[str, Any], parent: str = "") -> list[list[Any]]:
    """A backend's own statistics as table rows: nested counts flattened to ``a / b``, sizes
    (names ending in ``bytes`` or ``memory``) in human units."""
    rows: list[list[Any]] = []
    for key, value in sorted(extra.items()):
        name = f"{parent}{key.replace('_', ' ')}"
        if isinstance(value, dict):
            rows += _extra_rows(value, f"{name} / ")
        elif isinstance(value, int | float) and key.endswith(("bytes", "memory")):
            rows.append([name, human_bytes(value)])
        else:
            rows.append([name, human_count(value)])
    return rows


async def cmd_cleanup(args: argparse.Namespace) -> int:
    """``authmw cleanup URL``."""
    async with opened(storage_url(args.url)) as storage:
        removed = await storage.cleanup_expired()
    if args.json:
        emit_json({"removed": removed})
    else:
        print("removed expired records: " + ", ".join(f"{k} {v}" for k, v in removed.items()))
    return 0


async def cmd_check(args: argparse.Namespace) -> int:
    """``authmw check URL``: exit 0 when healthy."""
    url = storage_url(args.url)
    checks: list[dict[str, Any]] = []

    def record(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    storage = storage_from_url(url)
    if isinstance(storage, SupportsSchema):
        storage = storage.inspecting()  # never migrate from a health check: look as it is
    try:
        await storage.open()
        record("connectivity", True, f"{storage.name} at {redact_url(url)}")
        samples = [await storage.ping() * 1000 for _ in range(5)]
        latency = statistics.median(samples)
        record(
            "latency",
            latency <= args.max_latency,
            f"median {latency:.2f} ms of 5 pings (limit {args.max_latency:g} ms)",
        )
        if isinstance(storage, SupportsSchema):
            version = await storage.schema_version()
            latest = storage.latest_schema_version
            record(
                "schema",
                version == latest,
                f"version {version}, this authmw expects {latest}"
                + ("" if version == latest else "; run `authmw migrate-schema URL`"),
            )
    except AuthmwError as exc:
        record("connectivity", False, str(exc))
    finally:
        with contextlib.suppress(AuthmwError):
            await storage.close()
    healthy = all(c["ok"] for c in checks)
    if args.json:
        emit_json({"healthy": healthy, "url": redact_url(url), "checks": checks})
    else:
        for c in checks:
            print(f"{'ok  ' if c['ok'] else 'FAIL'}  {c['check']:<12}  {c['detail']}")
    if not healthy:
        failed = ", ".join(c["check"] for c in checks if not c["ok"])
        raise CommandFailed(f"unhealthy ({failed} failed)")
    return 0


# -- users ------------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidInput("password", "nothing was read from stdin")
        return password
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "no terminal to read the password from; pipe it in with --password-stdin"
        )
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise InvalidInput("password", "the two entries differ")
    return first


def _framework(storage: AuthStorage) -> AuthFramework:
    # Users and revocations need no signing key; a random one avoids the "generated key"
    # warning when AUTHMW_SECRET_KEY is not set.
    key = os.environ.get("AUTHMW_SECRET_KEY") or secrets.token_urlsafe(32)
    return AuthFramework(storage, AuthConfig(secret_key=key))


async def cmd_create_user(args: argparse.Namespace) -> int:
    """``authmw create-user URL USER``: argon2id-hashed, audited, through the framework."""
    url = storage_url(args.url)
    password = _read_password(args.password_stdin)
    async with opened(url) as storage:
        auth = _framework(storage)
        user = await auth.register_user(
            args.user, password, roles=args.role, permissions=args.permission
        )
    extra = [f"roles: {', '.join(user.roles)}"] if user.roles else []
    extra += [f"permissions: {', '.join(user.permissions)}"] if user.permissions else []
    print(f"created user {user.user_id!r}" + (f" ({'; '.join(extra)})" if extra else ""))
    return 0


async def cmd_revoke_user(args: argparse.Namespace) -> int:
    """``authmw revoke-user URL USER``: every token and session of the user."""
    url = storage_url(args.url)
    # Through a cache layer, so the deletions are announced on the backend's invalidation
    # channel and the apps' own caches drop those records at once instead of after their ttl.
    async with opened(url, storage_from_url(url, cache=True)) as storage:
        auth = _framework(storage)
        user = await auth.get_user(args.user)  # UnknownUser: exit 1, not "revoked 0"
        count = await auth.revoke_user(user.user_id)
    if args.json:
        emit_json({"user_id": user.user_id, "revoked": count})
    else:
        print(f"revoked {count} live tokens and sessions of user {user.user_id!r}")
    return 0


async def cmd_migrate_schema(args: argparse.Namespace) -> int:
    """``authmw migrate-schema URL``: PostgreSQL's manual schema mode."""
    url = storage_url(args.url)
    # Not opened: opening may migrate (migration_mode=auto), past the --target asked for.
    versioned = _versioned(storage_from_url(url), "migrate-schema")
    applied = await versioned.migrate_schema(args.target)
    if applied:
        print(f"applied schema migrations {', '.join(map(str, applied))}")
    else:
        print("schema already up to date")
    return 0


COMMANDS = {
    "migrate": cmd_migrate,
    "restore": cmd_restore,
    "backup": cmd_backup,
    "stats": cmd_stats,
    "cleanup": cmd_cleanup,
    "check": cmd_check,
    "create-user": cmd_create_user,
    "revoke-user": cmd_revoke_user,
    "migrate-schema": cmd_migrate_schema,
}
