"""Storage backends and ``storage_from_url``.

Backends that need a driver (Redis, PostgreSQL) are imported only when first asked for, so
``import authmw`` needs neither redis nor asyncpg installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigurationError
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

# scheme -> (module, class, pip extra). The one place a URL scheme is tied to a backend.
_SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("authmw.storage.memory", "InMemoryStorage", None),
    "redis": ("authmw.storage.redis", "RedisStorage", "redis"),
    "rediss": ("authmw.storage.redis", "RedisStorage", "redis"),
    "redis+sentinel": ("authmw.storage.redis", "RedisStorage", "redis"),
    "redis+cluster": ("authmw.storage.redis", "RedisStorage", "redis"),
    "postgresql": ("authmw.storage.postgres", "PostgresStorage", "postgres"),
    "postgres": ("authmw.storage.postgres", "PostgresStorage", "postgres"),
}

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


def _memory_from_url(url: str) -> InMemoryStorage:
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    known = {"cleanup_interval", "default_ttl", "max_audit_events"}
    unknown = set(options) - known
    if unknown:
        raise ConfigurationError(
            f"memory:// does not take {', '.join(sorted(unknown))}; it takes {sorted(known)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        try:
            kwargs[key] = int(value) if key == "max_audit_events" else float(value)
        except ValueError:
            raise ConfigurationError(f"memory:// option {key}: not a number: {value!r}") from None
    return InMemoryStorage(InMemoryConfig(**kwargs))


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
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"storage URL must look like scheme://..., got {url!r}; "
            f"known schemes: {', '.join(sorted(_SCHEMES))}"
        )
    scheme = url.split("://", 1)[0].lower()
    entry = _SCHEMES.get(scheme)
    if entry is None:
        raise ConfigurationError(
            f"unknown storage scheme {scheme!r}; known schemes: {', '.join(sorted(_SCHEMES))}"
        )
    if scheme == "memory":
        return _memory_from_url(url)
    module_name, class_name, extra = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith("authmw"):
            raise ConfigurationError(
                f"the {scheme}:// backend is not available in this version of authmw"
            ) from exc
        raise ConfigurationError(
            f"the {scheme}:// backend needs the {exc.name!r} package: "
            f"pip install 'authmw[{extra}]'"
        ) from exc
    storage: AuthStorage = getattr(module, class_name).from_url(url)
    return storage
