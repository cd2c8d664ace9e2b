"""Settings of the Redis backend and how they become a connection.

:class:`RedisConfig` and :class:`RedisFailoverConfig` are public through
:mod:`authmw.storage.redis`; :func:`connect` turns settings into an :class:`Executor` over a
single-server, sentinel or cluster client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..._time import Duration, seconds
from ...errors import ConfigurationError
from . import _executor as rc
from ._scripts import ATOMIC, KV_INCR, SLOT

if TYPE_CHECKING:  # pragma: no cover
    from ._backend import RedisStorage

__all__ = ["RedisConfig", "RedisFailoverConfig", "connect"]

_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


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

    def endpoints(self) -> list[rc.Endpoint]:
        """The sentinels as host/port pairs (26379 when a port is missing)."""
        return [e for s in self.sentinels
                for e in rc.parse_url(s if "://" in s else f"redis://{s}", 26379).hosts]

    def __repr__(self) -> str:
        shown = [rc.redact_url(s) for s in self.sentinels]
        return f"RedisFailoverConfig(master_name={self.master_name!r}, sentinels={shown!r})"


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Settings for :class:`RedisStorage`; durations are seconds or ``timedelta``.

    ``url`` (``redis://localhost:6379``; ``rediss://`` for TLS, user, password and database
    number allowed), ``pool_size`` (10 connections, per node on a cluster), ``timeout`` (5 s,
    connect and each command), ``key_prefix`` (``auth:``), ``default_ttl`` (1 hour, for
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "cluster_urls", tuple(self.cluster_urls))
        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f"url: expected one of {', '.join(s + '://' for s in _SCHEMES)}, "
                f"got {rc.redact_url(self.url)!r}")
        if scheme == "redis+sentinel" and self.failover is None:
            object.__setattr__(self, "failover", _failover_from_url(self.url))
        for name in ("timeout", "default_ttl", "wait_timeout"):
            seconds(getattr(self, name), name)
        seconds(self.retry_delay, "retry_delay", allow_zero=True)
        for name, low in (("pool_size", 1), ("retry_attempts", 0), ("wait_replicas", 0),
                          ("max_audit_events", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigurationError(f"{name}: expected an integer >= {low}, got {value!r}")
        if not self.key_prefix:
            raise ConfigurationError("key_prefix: must not be empty")
        if self.is_cluster:
            if "{" in self.key_prefix or "}" in self.key_prefix:
                raise ConfigurationError(
                    "key_prefix: no braces in cluster mode (they would pin every key to one "
                    "hash slot)")
            if self.failover is not None or self.wait_replicas:
                raise ConfigurationError(
                    "cluster_mode: failover and wait_replicas are for sentinel setups; a "
                    "cluster fails over by itself")

    @property
    def is_cluster(self) -> bool:
        """True when the settings describe a Redis Cluster."""
        return self.cluster_mode or self.url.lower().startswith("redis+cluster://")

    def __repr__(self) -> str:
        return (f"RedisConfig(url={rc.redact_url(self.url)!r}, pool_size={self.pool_size}, "
                f"key_prefix={self.key_prefix!r}, cluster_mode={self.is_cluster}, "
                f"cluster_urls={[rc.redact_url(u) for u in self.cluster_urls]!r}, "
                f"failover={self.failover!r})")

    @classmethod
    def from_url(cls, url: str) -> RedisConfig:
        """Settings from a URL: ``redis://[user:password@]host[:port][/db]``, ``rediss://...``,
        ``redis+sentinel://[user:password@]s1:26379,s2:26379/master_name[/db]`` or
        ``redis+cluster://[user:password@]n1:7000,n2:7001``. Query options: ``key_prefix``,
        ``pool_size``, ``timeout``, ``default_ttl``, ``retry_attempts``, ``retry_delay``,
        ``wait_replicas``, ``wait_timeout``, ``max_audit_events`` and, for sentinels,
        ``sentinel_password``; other options go to redis-py (e.g. ``ssl_cert_reqs``)."""
        parsed = rc.parse_url(url)
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

    def build(self) -> RedisStorage:
        """A :class:`RedisStorage` with these settings."""
        from ._backend import RedisStorage

        return RedisStorage(self)


def _failover_from_url(url: str) -> RedisFailoverConfig:
    """``redis+sentinel://[auth@]s1:26379,s2/master[/db]?sentinel_password=...``."""
    parsed = rc.parse_url(url, 26379)
    if not parsed.path:
        raise ConfigurationError("redis+sentinel:// URL: name the master in the path, "
                                 "e.g. redis+sentinel://host:26379/mymaster/0")
    return RedisFailoverConfig(parsed.path[0], [f"{e.host}:{e.port}" for e in parsed.hosts],
                               dict(parsed.query).get("sentinel_password"))


_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "key_prefix": str, "pool_size": int, "timeout": float, "default_ttl": float,
    "retry_attempts": int, "retry_delay": float, "wait_replicas": int, "wait_timeout": float,
    "max_audit_events": int,
}


def connect(cfg: RedisConfig) -> tuple[rc.Executor, Any]:
    """An executor over the client the settings describe, and the sentinel manager (or None)."""
    timeout = read_timeout = seconds(cfg.timeout, "timeout")
    if cfg.wait_replicas:
        # A write's reply comes after WAIT, so its read may take up to wait_timeout longer.
        read_timeout += seconds(cfg.wait_timeout, "wait_timeout")
    parsed = rc.parse_url(cfg.url)
    secrets = [p for p in (parsed.password,) if p]
    client: rc.AnyClient
    sentinel: Any = None
    if cfg.is_cluster:
        seeds = [rc.parse_url(u) for u in cfg.cluster_urls] or [parsed]
        nodes = [e for p in seeds for e in p.hosts]
        creds = next((p for p in [parsed, *seeds] if p.password or p.username), parsed)
        secrets += [p.password for p in seeds if p.password]
        if not nodes:
            raise ConfigurationError("cluster_mode: give cluster_urls or hosts in url")
        client = rc.cluster_client(
            nodes, username=creds.username, password=creds.password,
            ssl=any(p.scheme == "rediss" for p in seeds), pool_size=cfg.pool_size,
            timeout=timeout)
        describe = f"cluster {','.join(f'{e.host}:{e.port}' for e in nodes)}"
    elif cfg.failover is not None:
        failover = cfg.failover
        # A password written into a sentinel URL counts as the sentinel password.
        in_urls = [p.password for u in failover.sentinels if "://" in u
                   for p in [rc.parse_url(u)] if p.password]
        sentinel_password = failover.sentinel_password or next(iter(in_urls), None)
        secrets += [p for p in (sentinel_password, *in_urls) if p]
        db_part = parsed.path[-1] if parsed.path else "0"
        db = int(db_part) if db_part.isdigit() else 0
        client, sentinel = rc.sentinel_client(
            failover.endpoints(), failover.master_name,
            sentinel_password=sentinel_password, username=parsed.username,
            password=parsed.password, db=db, ssl=parsed.scheme == "rediss",
            pool_size=cfg.pool_size, timeout=timeout, read_timeout=read_timeout)
        describe = f"sentinel master {failover.master_name!r}"
    else:
        client = rc.standalone_client(cfg.url, cfg.pool_size, timeout, read_timeout)
        describe = rc.redact_url(cfg.url)
    scripts = {**(SLOT if cfg.is_cluster else ATOMIC), "kv_incr": KV_INCR}
    executor = rc.Executor(
        client, scripts=scripts, attempts=cfg.retry_attempts,
        delay=seconds(cfg.retry_delay, "retry_delay", allow_zero=True),
        concurrency=cfg.pool_size, wait_replicas=cfg.wait_replicas,
        wait_timeout=seconds(cfg.wait_timeout, "wait_timeout"), secrets=secrets,
        describe=describe)
    return executor, sentinel
