"""Settings and statistics of :class:`authmw.storage.cached.CachedStorage` (public there)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal

from ..._time import Duration, seconds
from ...errors import ConfigurationError

__all__ = ["CacheConfig", "CacheStatistics", "OutagePolicy"]

OutagePolicy = Literal["fail_closed", "serve_stale"]


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Settings for :class:`CachedStorage`; durations are seconds or ``timedelta``.

    ``max_entries`` (10,000): entries kept per kind of record (tokens, sessions, users), least
    recently used evicted first. ``ttl`` (30 s): how long an entry is served without asking the
    backend. ``negative_ttl`` (2 s): how long a missing record is remembered as missing.
    ``on_outage``: ``"fail_closed"`` (default) or ``"serve_stale"``, which answers from entries
    up to ``max_stale`` (5 minutes) after they were read while the backend is unreachable.
    ``batch_window`` (0: the rest of the current event-loop pass) and ``batch_size`` (64):
    misses for different keys arriving while a read is in flight gather for that long, up to
    that many, into one bulk read (a lone miss goes out at once). ``invalidation`` (True):
    publish and subscribe on the backend's invalidation channel when it has one.
    ``health_check_interval`` (5 s): a quiet subscription is pinged this often.
    ``resubscribe_max_delay`` (5 s): the backoff cap. ``subscribe_timeout`` (5 s): how long
    ``open()`` waits for the first subscription, and ``close()`` for the subscription to
    stop. ``retry_after_outage`` (1 s): after a failed read, ``serve_stale`` answers from
    stale entries without asking for this long. Raises ``ConfigurationError`` for a bad
    value.
    """

    max_entries: int = 10_000
    ttl: Duration = 30.0
    negative_ttl: Duration = 2.0
    max_stale: Duration = timedelta(minutes=5)
    on_outage: OutagePolicy = "fail_closed"
    batch_window: Duration = 0.0
    batch_size: int = 64
    invalidation: bool = True
    health_check_interval: Duration = 5.0
    resubscribe_max_delay: Duration = 5.0
    subscribe_timeout: Duration = 5.0
    retry_after_outage: Duration = 1.0

    def __post_init__(self) -> None:
        for name in ("max_entries", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name}: expected an integer >= 1, got {value!r}")
        for name in (
            "ttl",
            "negative_ttl",
            "max_stale",
            "health_check_interval",
            "resubscribe_max_delay",
            "subscribe_timeout",
            "retry_after_outage",
        ):
            seconds(getattr(self, name), name)
        seconds(self.batch_window, "batch_window", allow_zero=True)
        if self.on_outage not in ("fail_closed", "serve_stale"):
            raise ConfigurationError(
                f"on_outage: expected 'fail_closed' or 'serve_stale', got {self.on_outage!r}"
            )


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """A snapshot of what a :class:`CachedStorage` counted since it was created.

    ``hits``/``negative_hits``: reads answered from memory (a record / "none stored");
    ``misses``: reads that needed the backend; ``coalesced``: misses that joined a read already
    in flight (single-flight); ``backend_calls``: reads sent to the backend; ``batches`` and
    ``batched_keys``: backend round trips and the keys they carried, ``batch_sizes`` a histogram
    (bucket upper bound -> round trips); ``stale_hits``: answers given stale during an outage;
    ``evictions``: entries pushed out by ``max_entries``; ``invalidations_local``/``_received``:
    keys dropped for this process's writes / other processes' messages; ``subscribed``: whether
    the invalidation channel is live now. Hit counts from several threads may undercount.
    """

    entries: int
    hits: int
    negative_hits: int
    misses: int
    coalesced: int
    backend_calls: int
    batches: int
    batched_keys: int
    batch_sizes: dict[int, int] = field(default_factory=dict)
    stale_hits: int = 0
    evictions: int = 0
    invalidations_local: int = 0
    invalidations_received: int = 0
    messages_received: int = 0
    messages_published: int = 0
    publish_failures: int = 0
    subscribed: bool = False
    subscriptions: int = 0
    subscription_losses: int = 0
    distrusts: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a JSON-ready dict."""
        return asdict(self)
