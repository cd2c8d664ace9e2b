"""The one clock and the duration helpers.

Every expiry in authmw is compared against :func:`now_ts` (POSIX seconds) or :func:`utcnow`
(the same instant as an aware UTC datetime): the framework, every backend and the cache read
the same wall clock, so a record's expiry means the same thing everywhere.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from .errors import ConfigurationError

__all__ = ["Duration", "from_ts", "now_ts", "seconds", "utcnow"]

Duration = float | int | timedelta
"""A duration setting: seconds (int or float) or a ``timedelta``."""

now_ts = time.time
"""The wall clock as POSIX seconds. An alias, not a wrapper: hot read paths call it directly."""


def utcnow() -> datetime:
    """The wall clock as an aware UTC datetime (the instant :func:`now_ts` gives)."""
    return datetime.now(UTC)


def from_ts(ts: float) -> datetime:
    """A POSIX timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


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
