"""The Redis backend: one server, Sentinel failover or a Cluster (``pip install 'authmw[redis]'``).

``RedisStorage("redis://...")`` or ``storage_from_url("redis://...")``. The key layout, what is
atomic where, and every option are in ``docs/redis.md``. Importing this package imports redis-py.
"""

from __future__ import annotations

from ._backend import RedisStorage
from ._config import RedisConfig, RedisFailoverConfig

__all__ = ["RedisConfig", "RedisFailoverConfig", "RedisStorage"]
