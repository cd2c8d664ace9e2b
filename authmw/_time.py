"""Small helpers shared by the storage backends (durations, clocks, batching)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from .errors import ConfigurationError

T = TypeVar("T")

Duration = float | int | timedelta


def seconds(value: Duration, name: str, *, allow_zero: bool = False) -> float:
    """A duration as positive seconds; ``ConfigurationError`` naming the setting otherwise."""
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        raise ConfigurationError(f"{name}: expected seconds or a timedelta, got {value!r}")
    if result < 0 or (result == 0 and not allow_zero) or result != result:
        raise ConfigurationError(f"{name}: must be a positive duration, got {value!r}")
    return result


def from_ts(ts: float) -> datetime:
    """A POSIX timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def now_ts() -> float:
    """The wall clock as a POSIX timestamp (the same clock every backend's TTL uses)."""
    return time.time()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Split ``items`` into lists of at most ``size``."""
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
