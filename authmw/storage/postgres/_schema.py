"""Versioned schema migrations for the PostgreSQL backend.

The SQL lives in ``authmw/storage/postgres/migrations/NNNN_name.sql``, read with
:mod:`importlib.resources`. A version table ``<prefix>schema_migrations`` records what was
applied, with each file's SHA-256 so an edited migration is noticed. Applying runs under a
session-level advisory lock keyed by the prefix, so instances that start together queue up:
the first applies, the others find nothing left to do. Each migration runs in its own
transaction together with its version row, so a failure leaves the schema at the last good
version.
"""

# ruff: noqa: S608 -- SQL is built only from the validated table prefix (an identifier
# regex in PostgresConfig) and fixed names; every value is a bind parameter.

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "Migration",
    "SchemaState",
    "latest_version",
    "load_migrations",
    "lock_key",
    "migrate",
    "read_state",
]

log = logging.getLogger("authmw.storage.postgres")

_FILE_RE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version, name, SQL template and checksum."""

    version: int
    name: str
    template: str
    checksum: str

    def sql(self, prefix: str) -> str:
        """The SQL with the (already validated) table prefix filled in."""
        return self.template.replace("{prefix}", prefix)


@lru_cache(maxsize=1)
def load_migrations() -> tuple[Migration, ...]:
    """Every packaged migration, in version order (versions must run 1, 2, 3...)."""
    folder = resources.files("authmw.storage.postgres").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_RE.fullmatch(entry.name)
        if match is None:
            continue
        text = entry.read_text(encoding="utf-8")
        found.append(
            Migration(
                int(match.group(1)), match.group(2), text, hashlib.sha256(text.encode()).hexdigest()
            )
        )
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"authmw migrations are not numbered 1..n: {[m.version for m in found]}")
    return tuple(found)


def latest_version() -> int:
    """The schema version this authmw expects."""
    return len(load_migrations())


def lock_key(prefix: str) -> int:
    """The advisory lock id (a signed 64-bit int) that serialises migrations of one prefix."""
    digest = hashlib.sha256(f"authmw-schema:{prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What the database holds for one prefix: applied versions and their checksums."""

    applied: dict[int, str]

    @property
    def version(self) -> int:
        """The highest applied version (0: no schema)."""
        return max(self.applied, default=0)

    def problems(self) -> list[str]:
        """Why this schema is not exactly the one this authmw expects (empty: it is)."""
        expected = {m.version: m for m in load_migrations()}
        issues: list[str] = []
        missing = sorted(set(expected) - set(self.applied))
        unknown = sorted(set(self.applied) - set(expected))
        if missing:
            issues.append(f"missing migrations {missing}")
        if unknown:
            issues.append(f"migrations {unknown} are newer than this authmw")
        changed = sorted(
            v
            for v, checksum in self.applied.items()
            if v in expected and expected[v].checksum != checksum
        )
        if changed:
            issues.append(f"migrations {changed} differ from the packaged files")
        return issues


async def read_state(con: Any, prefix: str) -> SchemaState:
    """The schema state of ``prefix`` as seen on connection ``con``."""
    table = f"{prefix}schema_migrations"
    if await con.fetchval("SELECT to_regclass($1) IS NULL", table):
        return SchemaState({})
    rows = await con.fetch(f"SELECT version, checksum FROM {table}")
    return SchemaState({row["version"]: row["checksum"] for row in rows})


async def migrate(con: Any, prefix: str, *, target: int | None = None) -> list[int]:
    """Apply the missing migrations up to ``target`` (default: all); return the versions
    applied now. Safe to run from several processes at once."""
    key = lock_key(prefix)
    table = f"{prefix}schema_migrations"
    await con.execute("SELECT pg_advisory_lock($1)", key)
    try:
        await con.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, checksum TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        state = await read_state(con, prefix)
        applied: list[int] = []
        for migration in load_migrations():
            if migration.version in state.applied:
                continue
            if target is not None and migration.version > target:
                break
            async with con.transaction():
                await con.execute(migration.sql(prefix))
                await con.execute(
                    f"INSERT INTO {table} (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info(
                "postgres schema %r: applied migration %04d_%s",
                prefix,
                migration.version,
                migration.name,
            )
            applied.append(migration.version)
        return applied
    finally:
        # Closing the connection releases the lock too; this only matters for reused ones.
        if not con.is_closed():
            try:
                await con.execute("SELECT pg_advisory_unlock($1)", key)
            except Exception:  # the original error, if any, is the one worth raising
                log.warning("postgres schema %r: could not release the migration lock", prefix)
