"""The settings of the Redis backend: :class:`RedisConfig` and :class:`RedisFailoverConfig`.

Both are public through :mod:`authmw.storage.redis`. URLs are split and redacted by
:mod:`authmw.storage._urls`, so no ``repr`` or error shows a password.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from ..._time import Duration, seconds
from ...errors import ConfigurationError
from .._urls import Endpoint, ParsedUrl, backend_for, parse_url, redact_url, unknown_option
from ..base import WAITERS_PER_CONNECTION

__all__ = ["RedisConfig", "RedisFailoverConfig"]


@dataclass(frozen=True, slots=True)
class RedisFailoverConfig:
    """Where sentinels are: ``master_name``, ``sentinels`` (``"host:port"`` or
    ``"redis://host:port"``) and an optional ``sentinel_password`` (never shown)."""

    master_name: str
    sentinels: Sequence[str]
    sentinel_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sentinels", tuple(self.sentinels))
        if not self.master_name or not self.sentinels:
            raise ConfigurationError("failover: needs a master_name and at least one sentinel")

    def urls(self) -> list[str]:
        """The sentinels as URLs (``redis://`` added where no scheme was written)."""
        return [s if "://" in s else f"redis://{s}" for s in self.sentinels]

    def endpoints(self) -> list[Endpoint]:
        """The sentinels as host/port pairs (26379 when a port is missing)."""
        return [e for url in self.urls() for e in parse_url(url, 26379).hosts]

    def __repr__(self) -> str:
        # Each sentinel as it was written, redacted as the URL it stands for.
        shown = [
            redact_url(s) if "://" in s else redact_url(url).removeprefix("redis://")
            for s, url in zip(self.sentinels, self.urls(), strict=True)
        ]
        return f"RedisFailoverConfig(master_name={self.master_name!r}, sentinels={shown!r})"


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Settings for :class:`RedisStorage`; durations are seconds or ``timedelta``.

    ``url`` (``redis://localhost:6379``; ``rediss://`` for TLS, user, password and database
    number allowed), ``pool_size`` (10 connections, per node on a cluster), ``timeout`` (5 s:
    the longest one storage call may take in all, the wait for a free connection and retries
    included; past it the call raises ``StorageUnavailable``), ``max_waiting`` (None: 1,000 x
    ``pool_size``; how many calls may wait for a free connection, more fail at once with
    ``StorageUnavailable``), ``key_prefix`` (``auth:``), ``default_ttl`` (1 hour, for
    ``kv_set`` without a ttl), ``cluster_mode`` with ``cluster_urls``, ``failover``
    (:class:`RedisFailoverConfig`), ``retry_attempts`` (3) and ``retry_delay`` (0.1 s, doubling,
    capped at 1 s), ``wait_replicas`` (0: writes return once the master has them; n: once n
    replicas acknowledged them within ``wait_timeout``, else ``StorageUnavailable``) and
    ``max_audit_events`` (100,000: the audit stream's approximate cap).
    Raises ``ConfigurationError`` for a bad value.
    """

    url: str = field(default="redis://localhost:6379", repr=False)
    pool_size: int = 10
    timeout: Duration = 5.0
    key_prefix: str = "auth:"
    default_ttl: Duration = timedelta(hours=1)
    cluster_mode: bool = False
    cluster_urls: Sequence[str] = field(default=(), repr=False)
    failover: RedisFailoverConfig | None = None
    retry_attempts: int = 3
    retry_delay: Duration = 0.1
    wait_replicas: int = 0
    wait_timeout: Duration = 1.0
    max_audit_events: int = 100_000
    max_waiting: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cluster_urls", tuple(self.cluster_urls))
        try:
            backend_for(self.url, "redis")
        except ConfigurationError as exc:
            raise ConfigurationError(f"url: {exc}") from None
        scheme = self.url.split("://", 1)[0].lower()
        if scheme == "redis+sentinel" and self.failover is None:
            object.__setattr__(self, "failover", _failover_from_url(self.url))
        for name in ("timeout", "default_ttl", "wait_timeout"):
            seconds(getattr(self, name), name)
        seconds(self.retry_delay, "retry_delay", allow_zero=True)
        for name, low in (
            ("pool_size", 1),
            ("retry_attempts", 0),
            ("wait_replicas", 0),
            ("max_audit_events", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigurationError(f"{name}: expected an integer >= {low}, got {value!r}")
        waiting = self.max_waiting
        if waiting is not None and (
            not isinstance(waiting, int) or isinstance(waiting, bool) or waiting < 0
        ):
            raise ConfigurationError(f"max_waiting: expected an integer >= 0, got {waiting!r}")
        if not self.key_prefix:
            raise ConfigurationError("key_prefix: must not be empty")
        if self.is_cluster:
            if "{" in self.key_prefix or "}" in self.key_prefix:
                raise ConfigurationError(
                    "key_prefix: no braces in cluster mode (they would pin every key to one "
                    "hash slot)"
                )
            if self.failover is not None or self.wait_replicas:
                raise ConfigurationError(
                    "cluster_mode: failover and wait_replicas are for sentinel setups; a "
                    "cluster fails over by itself"
                )

    @property
    def waiting_bound(self) -> int:
        """How many calls may wait for a free connection: ``max_waiting``, or
        :data:`~authmw.storage.base.WAITERS_PER_CONNECTION` x ``pool_size`` when unset."""
        if self.max_waiting is None:
            return WAITERS_PER_CONNECTION * self.pool_size
        return self.max_waiting

    @property
    def is_cluster(self) -> bool:
        """True when the settings describe a Redis Cluster."""
        return self.cluster_mode or self.url.lower().startswith("redis+cluster://")

    def __repr__(self) -> str:
        return (
            f"RedisConfig(url={redact_url(self.url)!r}, pool_size={self.pool_size}, "
            f"key_prefix={self.key_prefix!r}, cluster_mode={self.is_cluster}, "
            f"cluster_urls={[redact_url(u) for u in self.cluster_urls]!r}, "
            f"failover={self.failover!r})"
        )

    @classmethod
    def from_url(cls, url: str) -> RedisConfig:
        """Settings from a URL: ``redis://[user:password@]host[:port][/db]``, ``rediss://...``,
        ``redis+sentinel://[user:password@]s1:26379,s2:26379/master_name[/db]`` or
        ``redis+cluster://[user:password@]n1:7000,n2:7001``. Query options: ``key_prefix``,
        ``pool_size``, ``timeout``, ``default_ttl``, ``retry_attempts``, ``retry_delay``,
        ``wait_replicas``, ``wait_timeout``, ``max_audit_events``, ``max_waiting`` and, for
        sentinels, ``sentinel_password``; other options go to redis-py (e.g. ``ssl_cert_reqs``)."""
        parsed = parse_url(url, 6379)
        options: dict[str, Any] = {}
        rest: list[tuple[str, str]] = []
        for key, value in parsed.query:
            if key in _URL_OPTIONS:
                try:
                    options[key] = _URL_OPTIONS[key](value)
                except ValueError:
                    raise ConfigurationError(f"redis URL option {key}: bad value") from None
            else:
                rest.append((key, value))
        _check_url_options(parsed, rest)
        if parsed.scheme == "redis+cluster":
            options["cluster_mode"] = True
        base = url.split("?", 1)[0]
        if rest:
            base += "?" + urlencode(rest)
        return cls(url=base, **options)

    def with_url(self, url: str) -> RedisConfig:
        """A copy with another URL."""
        return replace(self, url=url)

    def with_pool_size(self, size: int) -> RedisConfig:
        """A copy with another pool size."""
        return replace(self, pool_size=size)

    def with_timeout(self, timeout: Duration) -> RedisConfig:
        """A copy with another timeout."""
        return replace(self, timeout=timeout)

    def with_key_prefix(self, prefix: str) -> RedisConfig:
        """A copy with another key prefix."""
        return replace(self, key_prefix=prefix)

    def with_default_ttl(self, ttl: Duration) -> RedisConfig:
        """A copy with another default TTL."""
        return replace(self, default_ttl=ttl)

    def with_cluster_urls(self, urls: Sequence[str]) -> RedisConfig:
        """A copy with cluster seed nodes (and ``cluster_mode`` on)."""
        return replace(self, cluster_urls=tuple(urls), cluster_mode=True)

    def with_cluster_mode(self, enabled: bool) -> RedisConfig:
        """A copy with cluster mode on or off."""
        return replace(self, cluster_mode=enabled)

    def with_failover(self, failover: RedisFailoverConfig) -> RedisConfig:
        """A copy that finds the master through sentinels."""
        return replace(self, failover=failover)

    def with_retry_attempts(self, attempts: int) -> RedisConfig:
        """A copy with another retry count."""
        return replace(self, retry_attempts=attempts)

    def with_retry_delay(self, delay: Duration) -> RedisConfig:
        """A copy with another first retry delay."""
        return replace(self, retry_delay=delay)


def _failover_from_url(url: str) -> RedisFailoverConfig:
    """``redis+sentinel://[auth@]s1:26379,s2/master[/db]?sentinel_password=...``."""
    parsed = parse_url(url, 26379)
    if not parsed.path:
        raise ConfigurationError(
            "redis+sentinel:// URL: name the master in the path, "
            "e.g. redis+sentinel://host:26379/mymaster/0"
        )
    return RedisFailoverConfig(
        parsed.path[0],
        [f"{e.host}:{e.port}" for e in parsed.hosts],
        dict(parsed.query).get("sentinel_password"),
    )


_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "key_prefix": str,
    "pool_size": int,
    "timeout": float,
    "default_ttl": float,
    "retry_attempts": int,
    "retry_delay": float,
    "wait_replicas": int,
    "wait_timeout": float,
    "max_audit_events": int,
    "max_waiting": int,
}


def _driver_options(scheme: str) -> frozenset[str]:
    """The query options redis-py's URL parser and the connection class of ``scheme`` accept."""
    import inspect

    from redis.asyncio import connection

    classes: list[type] = [connection.AbstractConnection, connection.ConnectionPool]
    if scheme == "unix":
        classes.append(connection.UnixDomainSocketConnection)
    else:
        classes.append(connection.Connection)
    if scheme == "rediss":
        classes.append(connection.SSLConnection)
    names = set(connection.URL_QUERY_ARGUMENT_PARSERS)
    for cls in classes:
        names.update(inspect.signature(cls).parameters)
    if scheme != "rediss":
        names = {n for n in names if not n.startswith("ssl_")}
    return frozenset(names - {"self", "kwargs", "connection_kwargs", "connection_class"})


def _check_url_options(parsed: ParsedUrl, rest: list[tuple[str, str]]) -> None:
    """Refuse a query option that neither authmw nor redis-py reads (``?key_prefx=``):
    redis-py would pass it to its connection class, failing each command with a ``TypeError``.
    """
    if not rest or parsed.scheme in ("redis+cluster", "redis+sentinel"):
        # Sentinel and cluster clients are built from the parsed URL: the query is not used.
        return
    driver = _driver_options(parsed.scheme)
    for key, _ in rest:
        if key.startswith("ssl_") and parsed.scheme != "rediss":
            raise ConfigurationError(
                f"redis URL option {key!r} is for TLS connections: use a rediss:// URL"
            )
        if key not in driver:
            raise unknown_option(
                "redis",
                key,
                _URL_OPTIONS,
                driver,
                "or one of redis-py's connection options (client_name, health_check_interval,"
                " ssl_cert_reqs with rediss://, ...)",
            )
