"""The PostgreSQL backend: durable, shared, ACID (``pip install 'authmw[postgres]'``).

``PostgresStorage("postgresql://...")`` or ``storage_from_url("postgresql://...")``. The schema,
its migrations, SSL, backups and every option are in ``docs/postgres.md``. Importing this
package imports asyncpg.
"""

from __future__ import annotations

from ._backend import PostgresBackupInfo, PostgresStorage, migrate_schema
from ._config import (
    PostgresConfig,
    PostgresMigrationMode,
    PostgresOptimization,
    PostgresSSLConfig,
)

__all__ = [
    "PostgresBackupInfo",
    "PostgresConfig",
    "PostgresMigrationMode",
    "PostgresOptimization",
    "PostgresSSLConfig",
    "PostgresStorage",
    "migrate_schema",
]
