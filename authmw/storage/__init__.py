"""Storage backends and ``storage_from_url``.

Backends that need a driver (Redis, PostgreSQL) are imported only when first asked for, so
``import authmw`` needs neither redis nor asyncpg installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from . import _urls
from .base import AuthStorage, KVEntry
from .cached import CacheConfig, CachedStorage
from .memory import InMemoryConfig, InMemoryStorage
from .migration import MigrationOptions, StorageMigration

if TYPE_CHECKING:  # pragma: no cover
    from .postgres import (
        PostgresConfig,
        PostgresMigrationMode,
        PostgresOptimization,
        PostgresSSLConfig,
        PostgresStorage,
    )
    from .redis import RedisConfig, RedisFailoverConfig, RedisStorage

__all__ = [
    "AuthStorage",
    "CacheConfig",
    "CachedStorage",
    "InMemoryConfig",
    "InMemoryStorage",
    "KVEntry",
    "MigrationOptions",
    "PostgresConfig",
    "PostgresMigrationMode",
    "PostgresOptimization",
    "PostgresSSLConfig",
    "PostgresStorage",
    "RedisConfig",
    "RedisFailoverConfig",
    "RedisStorage",
    "StorageMigration",
    "storage_from_url",
]

# Public names that live in driver-backed modules: resolved on first attribute access.
_LAZY: dict[str, str] = {
    "PostgresConfig": "authmw.storage.postgres",
    "PostgresMigrationMode": "authmw.storage.postgres",
    "PostgresOptimization": "authmw.storage.postgres",
    "PostgresSSLConfig": "authmw.storage.postgres",
    "PostgresStorage": "authmw.storage.postgres",
    "RedisConfig": "authmw.storage.redis",
    "RedisFailoverConfig": "authmw.storage.redis",
    "RedisStorage": "authmw.storage.redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'authmw.storage' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def storage_from_url(url: str, *, cache: bool | CacheConfig = False) -> AuthStorage:
    """Build a storage from a URL: ``memory://``, ``redis://``, ``rediss://``,
    ``postgresql://`` or ``postgres://``.

    ``cache=True`` (default settings) or ``cache=CacheConfig(...)`` puts the storage behind a
    process-local :class:`CachedStorage`. Raises ``ConfigurationError`` for an unknown scheme,
    a ``cache`` that is neither, or when the backend's driver is not installed (naming the
    extra to install, e.g. ``pip install 'authmw[redis]'``).
    """
    if isinstance(cache, CacheConfig):
        return CachedStorage(_backend_from_url(url), cache)
    if cache is True:
        return CachedStorage(_backend_from_url(url))
    if cache is not False:
        raise ConfigurationError(f"cache: expected True, False or a CacheConfig, got {cache!r}")
    return _backend_from_url(url)


def _backend_from_url(url: str) -> AuthStorage:
    backend = _urls.backend_for(url)
    try:
        module = importlib.import_module(backend.module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith("authmw"):
            raise ConfigurationError(
                f"the {backend.name} backend is not available in this version of authmw"
            ) from exc
        raise ConfigurationError(
            f"the {backend.name} backend needs the {exc.name!r} package: "
            f"pip install 'authmw[{backend.extra}]'"
        ) from exc
    storage: AuthStorage = getattr(module, backend.cls).from_url(url)
    return storage
