"""Password-guessing throttle: a lock per (user, client address), a slow-down per user.

Two limits, both counted in storage (so they hold across processes and survive a restart on
Redis and PostgreSQL) and both expiring by themselves:

* **Per address.** ``max_failed_logins`` failures of one user from one client address within
  ``failed_login_window`` lock that address out of that account for ``lockout_duration``.
  Other addresses are not affected: an attacker cannot lock the owner out from elsewhere.
* **Per user, across addresses.** Attempts from addresses without a recent successful login
  (``known_address_ttl``) are counted per user over ``login_delay_window``. Past
  ``login_delay_after`` of them, each further attempt waits: the first
  ``login_delay_base``, doubling per attempt up to ``login_delay_max``. Only one attempt is let
  through each time a delay passes, however many addresses ask at once. An address the user
  logged in from successfully is never delayed (only its own per-address limit applies).

Every attempt reserves its counts atomically (``kv_incr``) before any hash is checked, so
concurrent guesses check no more hashes than the limits allow. Refusals are
:class:`authmw.errors.AccountLocked` with ``retry_after``. ``unlock`` forgets everything of a
user at once: the keys carry a per-user epoch, and raising it orphans the old keys (they expire).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

from ._time import now_ts, seconds
from .config import AuthConfig
from .storage.base import AuthStorage

__all__ = ["BUSY_RETRY", "Attempt", "LoginThrottle", "Refusal", "address_bucket"]

BUSY_RETRY = 1.0
"""Seconds a client should wait when earlier attempts of its address are still being checked
(longer than an argon2 check takes, far shorter than a lockout)."""

_PREFIX = "authmw:login:"
# The epoch must outlive every key it names; ten years is "for ever" for a counter.
_EPOCH_TTL = 10 * 365 * 86400.0
# 2**62 seconds is far past any cap: a bound that keeps the float finite.
_MAX_DOUBLINGS = 62


def address_bucket(address: str | None) -> str:
    """The throttle's key for a client address: an IPv4 address as is, an IPv6 address as its
    /64 network (one customer's allocation: one host can use every address in it), an
    IPv4-mapped IPv6 address as the IPv4 address, other text (a test client's name) as is, and
    no address as ``-``."""
    if not address:
        return "-"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


@dataclass(frozen=True, slots=True)
class _Keys:
    failures: str  # per (user, address): failures within the window
    locked: str  # per (user, address): the lock's end (POSIX seconds)
    known: str  # per (user, address): present while the address logged in recently
    user_failures: str  # per user: attempts from unknown addresses within the delay window
    gate: str  # per user: taken (> 1) while a delay runs or a delayed attempt is checked
    delayed: str  # per user: the current delay's end (POSIX seconds), for retry_after


@dataclass(frozen=True, slots=True)
class Refusal:
    """An attempt refused before any hash: ``reason`` is ``locked`` (this address),
    ``throttled`` (the user's delay) or ``busy`` (attempts of this address still being checked
    hold the whole budget), ``retry_after`` the seconds left."""

    reason: str
    retry_after: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt let through, with the counts it reserved."""

    keys: _Keys
    address: str
    address_failures: int
    known: bool
    user_failures: int


class LoginThrottle:
    """Counts, locks and delays password attempts in ``storage``. Held by the framework."""

    def __init__(self, storage: AuthStorage, config: AuthConfig) -> None:
        self._storage = storage
        self.limit = config.max_failed_logins
        self._window = seconds(config.failed_login_window, "failed_login_window")
        self.lockout = seconds(config.lockout_duration, "lockout_duration")
        self._delay_after = config.login_delay_after
        self._delay_window = seconds(config.login_delay_window, "login_delay_window")
        self._delay_base = seconds(config.login_delay_base, "login_delay_base")
        self._delay_max = seconds(config.login_delay_max, "login_delay_max")
        self._known_ttl = seconds(config.known_address_ttl, "known_address_ttl")

    def delay(self, user_failures: int) -> float:
        """The wait after the ``user_failures``-th counted attempt of a user (0 below the
        threshold): ``login_delay_base`` doubled per attempt past it, at most the cap."""
        over = user_failures - self._delay_after
        if over < 0:
            return 0.0
        return min(self._delay_max, self._delay_base * 2.0 ** min(over, _MAX_DOUBLINGS))

    async def _keys(self, user_id: str, address: str | None) -> _Keys:
        epoch = await self._storage.kv_get(f"{_PREFIX}epoch:{user_id}")
        # The user id's length first: user "a:b" at "c" and user "a" at "b:c" differ.
        user = f"{(epoch or b'0').decode()}:{len(user_id)}:{user_id}"
        where = f"{user}:{address_bucket(address)}"
        return _Keys(
            failures=f"{_PREFIX}failures:{where}",
            locked=f"{_PREFIX}locked:{where}",
            known=f"{_PREFIX}known:{where}",
            user_failures=f"{_PREFIX}user-failures:{user}",
            gate=f"{_PREFIX}gate:{user}",
            delayed=f"{_PREFIX}delayed:{user}",
        )

    async def _until(self, key: str) -> float | None:
        """The future instant stored at ``key``, or None."""
        raw = await self._storage.kv_get(key)
        if raw is None:
            return None
        until = float(raw)
        return until if until > now_ts() else None

    async def reserve(self, user_id: str, address: str | None) -> Attempt | Refusal:
        """Count an attempt before its password is checked, or refuse it."""
        storage = self._storage
        keys = await self._keys(user_id, address)
        locked, delayed, marker = await asyncio.gather(
            self._until(keys.locked), self._until(keys.delayed), storage.kv_get(keys.known)
        )
        known = marker is not None
        if locked is not None:
            return Refusal("locked", locked - now_ts())
        if delayed is not None and not known:
            # Refused before counting: a client honouring Retry-After loses nothing.
            return Refusal("throttled", delayed - now_ts())
        failures = await storage.kv_incr(keys.failures, self._window)
        # Read again after reserving: the attempt that locks sets the lock, then clears the
        # count, so a reservation made just after sees a low count but finds the lock here.
        locked = await self._until(keys.locked)
        if locked is not None:
            return Refusal("locked", locked - now_ts())
        if failures > self.limit:
            # Attempts still being checked hold the whole budget: nothing is locked yet. If they
            # fail, the last one locks and a retry meets the lock; if one is right, the count is
            # cleared and a retry goes through. Either way the answer is known within a hash.
            return Refusal("busy", BUSY_RETRY)
        user_failures = 0
        if not known:
            user_failures = await storage.kv_incr(keys.user_failures, self._delay_window)
            if user_failures > self._delay_after:
                # One attempt per delay: the first to take the gate once the last delay
                # passed; the gate's own expiry frees it should that attempt never finish.
                wait = self.delay(user_failures)
                if await storage.kv_incr(keys.gate, wait) > 1:
                    delayed = await self._until(keys.delayed)
                    return Refusal("throttled", wait if delayed is None else delayed - now_ts())
        return Attempt(keys, address_bucket(address), failures, known, user_failures)

    async def failed(self, attempt: Attempt) -> float | None:
        """Record a wrong password; the lockout's length when it locked the address."""
        storage, keys = self._storage, attempt.keys
        wait = self.delay(attempt.user_failures) if not attempt.known else 0.0
        if wait > 0:
            # Close the gate for the delay; retry_after reads the delay's end.
            await storage.kv_set(keys.gate, b"2", wait)
            await storage.kv_set(keys.delayed, repr(now_ts() + wait).encode(), wait)
        if attempt.address_failures >= self.limit:
            until = now_ts() + self.lockout
            # Lock first, then clear the count: see the second read in reserve.
            await storage.kv_set(keys.locked, repr(until).encode(), self.lockout)
            await storage.kv_delete(keys.failures)
            return self.lockout
        return None

    async def succeeded(self, attempt: Attempt) -> None:
        """Record a right password: the address's count goes, the address becomes known, and
        a delay the attempt waited for is lifted. The user's count stays (it expires): an
        attacker gains nothing from the owner's logins."""
        storage, keys = self._storage, attempt.keys
        await storage.kv_delete(keys.failures)
        await storage.kv_set(keys.known, b"1", self._known_ttl)
        if attempt.user_failures > self._delay_after:
            await storage.kv_delete(keys.delayed)
            await storage.kv_delete(keys.gate)

    async def counts(self, user_id: str, address: str | None) -> tuple[int, int]:
        """(failures of ``user_id`` from ``address``, attempts counted against the user from
        unknown addresses) as stored now."""
        keys = await self._keys(user_id, address)
        here, everywhere = await asyncio.gather(
            self._storage.kv_get(keys.failures), self._storage.kv_get(keys.user_failures)
        )
        return int(here or 0), int(everywhere or 0)

    async def unlock(self, user_id: str) -> None:
        """Forget every count, lock, delay and known address of the user."""
        await self._storage.kv_incr(f"{_PREFIX}epoch:{user_id}", _EPOCH_TTL)
