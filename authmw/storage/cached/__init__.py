"""A process-local LRU cache in front of any storage, with cross-instance invalidation.

``CachedStorage(backend, CacheConfig(...))`` or ``storage_from_url(url, cache=True)``; see
``docs/cache.md``.
"""

from __future__ import annotations

from ._backend import CachedStorage
from ._config import CacheConfig, CacheStatistics

__all__ = ["CacheConfig", "CacheStatistics", "CachedStorage"]
