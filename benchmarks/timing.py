"""The one timing helper of the harness: rates, interleaved rounds, medians of per-round ratios.

Every figure in the table is a rate measured by :func:`rate` (async callers) or
:func:`sync_rate` (a plain loop, for WSGI), and every comparison runs its contenders in turn
within each round (:func:`interleave`), so load from elsewhere on the machine falls on both
sides of a ratio alike. A ratio is the median of the per-round ratios (:func:`median_ratio`),
not the ratio of two medians: one slow round then moves neither side alone.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "Op",
    "interleave",
    "interleave_sync",
    "median",
    "median_ratio",
    "rate",
    "sync_rate",
]

#: One operation of a measurement: called with a running index (to pick a key or a token).
Op = Callable[[int], Awaitable[Any]]


async def rate(op: Op, seconds: float, callers: int = 1, batch: int = 100) -> float:
    """Operations per second of ``await op(i)`` from ``callers`` concurrent tasks.

    Each task runs ``batch`` operations between looks at the clock, so reading the clock does
    not weigh on cheap operations; every task finishes its batch after the deadline, and the
    rate divides all completed operations by the time until the last one ended.
    """
    counter = itertools.count()
    start = time.perf_counter()
    deadline = start + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        take = counter.__next__
        while True:
            for _ in range(batch):
                await op(take())
            done += batch
            if time.perf_counter() >= deadline:
                return

    if callers == 1:
        await worker()  # no task to schedule: the single-caller figure stays a tight loop
    else:
        await asyncio.gather(*(worker() for _ in range(callers)))
    return done / (time.perf_counter() - start)


def sync_rate(op: Callable[[int], Any], seconds: float, batch: int = 100) -> float:
    """Operations per second of ``op(i)`` in a plain loop on the calling thread."""
    start = time.perf_counter()
    deadline = start + seconds
    done = 0
    while True:
        for i in range(done, done + batch):
            op(i)
        done += batch
        if time.perf_counter() >= deadline:
            return done / (time.perf_counter() - start)


async def interleave(
    rounds: int,
    measures: Mapping[str, Callable[[], Awaitable[float]]],
) -> dict[str, list[float]]:
    """Run every measure once per round, in turn, for ``rounds`` rounds; every round's figure.

    The order rotates from round to round so that no contender always runs first (right after
    a setup or a garbage collection) or always last.
    """
    names = list(measures)
    results: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(await measures[name]())
    return results


def interleave_sync(
    rounds: int,
    measures: Mapping[str, Callable[[], float]],
) -> dict[str, list[float]]:
    """:func:`interleave` for synchronous measures (WSGI apps)."""
    names = list(measures)
    results: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(measures[name]())
    return results


def median(values: Sequence[float]) -> float:
    """The median of a round's figures."""
    return statistics.median(values)


def median_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """The median over rounds of ``ours[r] / theirs[r]`` (both measured in the same round)."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError("both sides need one figure per round")
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
