"""Migration throughput: token records from Redis to PostgreSQL with ``verify_data`` on.

Fills a Redis prefix with ``migration_tokens`` token records, then runs
``StorageMigration(redis, postgres, MigrationOptions(verify_data=True)).migrate_tokens()`` into
a fresh table prefix of the run's database (target from the migration issue: 5,000 records/s).
A second run over the same data, where everything is already present, is timed too.

Run alone: ``python -m benchmarks.migration [--quick]``.
"""

from __future__ import annotations

from authmw.storage import MigrationOptions, StorageMigration
from benchmarks._records import fresh_records, issue_tokens, store_all
from benchmarks.context import Context
from benchmarks.report import Row, absolute

__all__ = ["run"]

TARGET = 5_000


async def run(ctx: Context) -> list[Row]:
    """Records per second of a verified migration, and of a rerun with nothing to copy."""
    count = ctx.settings.migration_tokens
    section = f"migration Redis -> PostgreSQL, {count:,} tokens, verify_data on"
    source = ctx.redis("migrate")
    target = ctx.postgres("migrate")
    auth = ctx.framework(source)
    await target.open()
    try:
        # Every record a real login's shape: copies of one issued token with fresh ids.
        template = (await issue_tokens(auth, 1))[0]
        await store_all(source, fresh_records(template, count - 1))
        options = MigrationOptions(batch_size=1000, verify_data=True)
        first = await StorageMigration(source, target, options).migrate_tokens()
        again = await StorageMigration(source, target, options).migrate_tokens()
    finally:
        await auth.close()
        await target.close()
    if not first.ok or first.copied != count or first.verified != count:
        ctx.notes.append(
            f"migration: copied {first.copied}, verified {first.verified} of "
            f"{count} (failed: {first.failed[:3]})"
        )
    return [
        absolute(
            section,
            "records copied and verified",
            first.copied / first.duration,
            unit="/s",
            peer=f"{first.copied:,} in {first.duration:.2f} s",
            at_least=TARGET,
        ),
        absolute(
            section,
            "rerun, all already present",
            again.read / again.duration,
            unit="/s",
            peer=f"{again.already_present:,} already present",
        ),
    ]


if __name__ == "__main__":
    from benchmarks.harness import standalone

    standalone("migration")
