"""Lockout that protects without locking the owner out, on every backend: a lock per (user,
address), a slow-down per user that addresses the user logged in from never wait for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import authmw
from authmw import AccountLocked, AuthFramework, AuthMiddleware, InvalidCredentials
from authmw._throttle import address_bucket
from authmw.storage import AuthStorage
from tests.support.apps import client
from tests.test_framework_lockout import CountingHasher, counting_auth

OWNER = "198.51.100.1"
NEW = "198.51.100.2"
# Small delays so the owner's wait is short; no test asserts how long anything took.
FAST = {
    "login_delay_after": 3,
    "login_delay_base": 0.05,
    "login_delay_max": 0.2,
    "lockout_duration": 60,
}


def throttled_auth(storage: AuthStorage, **overrides: Any) -> tuple[AuthFramework, CountingHasher]:
    """A counting framework with the small test delays."""
    return counting_auth(storage, **{**FAST, **overrides})


async def guess(auth: AuthFramework, address: str, password: str = "wrong password") -> str:
    """One login attempt as ``alice`` from ``address``; the outcome's name."""
    try:
        await auth.check_password("alice", password, ip_address=address)
    except (InvalidCredentials, AccountLocked) as exc:
        return type(exc).__name__
    return "ok"


async def login_within_delay(auth: AuthFramework, address: str) -> int:
    """Log ``alice`` in from ``address``, waiting out each refusal's ``retry_after`` (at most
    the configured cap) a bounded number of times; how many refusals came first."""
    for refusals in range(10):
        try:
            await auth.check_password("alice", "right password", ip_address=address)
        except AccountLocked as exc:
            assert 0 < exc.retry_after <= FAST["login_delay_max"]
            await asyncio.sleep(exc.retry_after + 0.01)
            continue
        return refusals
    raise AssertionError("the owner was never let in")


async def test_wrong_passwords_from_other_addresses_do_not_lock_the_owner_out(
    storage: AuthStorage,
) -> None:
    """5 (and then 30 more) wrong passwords from other addresses: the owner logs in at once
    from an address they logged in from before, and from a new one after at most the delay."""
    auth, _ = throttled_auth(storage)
    async with auth:
        await auth.register_user("alice", "right password")
        await auth.check_password("alice", "right password", ip_address=OWNER)
        outcomes = [await guess(auth, f"203.0.113.{i}") for i in range(5)]
        # The owner's first login counted too (3 attempts from addresses not known then).
        assert outcomes[:2] == ["InvalidCredentials"] * 2 and "AccountLocked" in outcomes
        assert (await auth.check_password("alice", "right password", ip_address=OWNER)).user_id
        await login_within_delay(auth, NEW)
        for i in range(30):
            await guess(auth, f"192.0.2.{i}")
        assert (await auth.check_password("alice", "right password", ip_address=OWNER)).user_id
        await login_within_delay(auth, "198.51.100.3")


async def test_per_address_lock_holds_for_the_attackers_address(storage: AuthStorage) -> None:
    """``max_failed_logins`` wrong passwords from one address lock that address for the
    lockout, the right password included; the owner's address is not locked."""
    auth, hasher = throttled_auth(storage, login_delay_after=100)
    async with auth:
        await auth.register_user("alice", "right password")
        outcomes = [await guess(auth, "203.0.113.66") for _ in range(5)]
        assert outcomes == ["InvalidCredentials"] * 4 + ["AccountLocked"]
        with pytest.raises(AccountLocked) as locked:
            await auth.check_password("alice", "right password", ip_address="203.0.113.66")
        assert 0 < locked.value.retry_after <= 60
        assert hasher.verifies == 5
        assert (await auth.check_password("alice", "right password", ip_address=OWNER)).user_id
        reasons = [
            e.metadata.get("reason")
            for e in await storage.query_audit(user_id="alice", action="login")
            if not e.outcome
        ]
        assert reasons.count("locked") == 1 and reasons.count("invalid_credentials") == 5


async def test_concurrent_guesses_from_many_addresses_are_slowed_down(
    storage: AuthStorage,
) -> None:
    """50 concurrent wrong guesses from 50 addresses check at most ``login_delay_after`` + 1
    hashes (the owner's first login used one; one more per delay), the rest are refused with a
    ``retry_after`` within the cap; the owner's known address still logs in."""
    auth, hasher = throttled_auth(storage, login_delay_base=30, login_delay_max=60)
    async with auth:
        await auth.register_user("alice", "right password")
        await auth.check_password("alice", "right password", ip_address=OWNER)
        before = hasher.verifies
        results = await asyncio.gather(
            *(
                auth.check_password("alice", f"wrong {i}", ip_address=f"203.0.113.{i}")
                for i in range(50)
            ),
            return_exceptions=True,
        )
        checked = hasher.verifies - before
        assert 2 <= checked <= 3, results
        refused = [r for r in results if isinstance(r, AccountLocked)]
        assert len(refused) >= 46, results
        assert all(0 < r.retry_after <= 60 for r in refused)
        assert all(isinstance(r, (AccountLocked, InvalidCredentials)) for r in results)
        assert (await auth.check_password("alice", "right password", ip_address=OWNER)).user_id


async def test_a_delayed_refusal_costs_the_address_nothing(storage: AuthStorage) -> None:
    """Attempts refused while a delay runs check no hash and count nothing against their
    address (a client retrying too early is not locked out for it), nor against the user."""
    auth, hasher = throttled_auth(
        storage, login_delay_after=1, max_failed_logins=2, login_delay_base=30, login_delay_max=60
    )
    async with auth:
        await auth.register_user("alice", "right password")
        assert await guess(auth, "203.0.113.1") == "InvalidCredentials"
        checked = hasher.verifies
        early = [await guess(auth, NEW, "right password") for _ in range(10)]
        assert early == ["AccountLocked"] * 10
        assert hasher.verifies == checked
        assert await auth.throttle.counts("alice", NEW) == (0, 1)
        reasons = {
            e.metadata.get("reason")
            for e in await storage.query_audit(user_id="alice", action="login")
            if not e.outcome
        }
        assert reasons == {"invalid_credentials", "throttled"}


async def test_unlock_user_clears_locks_delays_and_counts(storage: AuthStorage) -> None:
    """After ``unlock_user`` a locked address tries again and a new address logs in at once;
    other users' locks stay."""
    auth, _ = throttled_auth(storage, login_delay_base=30, login_delay_max=60)
    async with auth:
        await auth.register_user("alice", "right password")
        await auth.register_user("bob", "right password")
        for _ in range(5):
            await guess(auth, "203.0.113.66")
            with pytest.raises((InvalidCredentials, AccountLocked)):
                await auth.check_password("bob", "wrong", ip_address="203.0.113.66")
        with pytest.raises(AccountLocked):
            await auth.check_password("alice", "right password", ip_address=NEW)
        await auth.unlock_user("alice")
        assert await auth.throttle.counts("alice", "203.0.113.66") == (0, 0)
        assert await guess(auth, "203.0.113.66") == "InvalidCredentials"
        assert await guess(auth, NEW, "right password") == "ok"
        with pytest.raises(AccountLocked):
            await auth.check_password("bob", "right password", ip_address="203.0.113.66")
        events = await storage.query_audit(user_id="alice", action="user.unlock")
        assert len(events) == 1


async def test_locks_and_delays_survive_a_restart(storage: AuthStorage) -> None:
    """Counts, locks and delays live in storage: a new framework (a restarted process) keeps
    refusing the locked address and delaying new addresses."""
    first, _ = throttled_auth(storage, login_delay_base=30, login_delay_max=60)
    async with first:
        await first.register_user("alice", "right password")
        for _ in range(5):
            await guess(first, "203.0.113.66")
    second, hasher = throttled_auth(storage, login_delay_base=30, login_delay_max=60)
    async with second:
        for address in ("203.0.113.66", NEW):
            with pytest.raises(AccountLocked):
                await second.check_password("alice", "right password", ip_address=address)
        assert hasher.verifies == 0


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("testclient", "testclient"),
        (None, "-"),
        ("", "-"),
    ],
)
def test_address_bucket(address: str | None, bucket: str) -> None:
    """IPv6 addresses count per /64 (one host owns a whole /64), mapped IPv4 as IPv4."""
    assert address_bucket(address) == bucket


async def test_a_throttled_login_answers_429_with_retry_after(storage: AuthStorage) -> None:
    """Through the middleware and authmw's error handlers, a login refused by the slow-down
    is a 429 with ``Retry-After`` within the cap, behind a trusted proxy per forwarded client."""
    auth, _ = throttled_auth(storage, login_delay_after=1, login_delay_base=30, login_delay_max=60)

    async def login(request: Request) -> Response:
        form = await request.json()
        user = await authmw.login(request, form["user"], form["password"])
        return JSONResponse({"user": user.user_id})

    app = Starlette(
        routes=[Route("/login", login, methods=["POST"])],
        middleware=[
            Middleware(AuthMiddleware, auth=auth, csrf=False, trusted_proxies=["127.0.0.1"])
        ],
        exception_handlers=authmw.exception_handlers,
    )
    async with auth:
        await auth.register_user("alice", "right password")
        async with client(app) as http:

            async def attempt(password: str, address: str) -> Any:
                return await http.post(
                    "/login",
                    json={"user": "alice", "password": password},
                    headers={"x-forwarded-for": address},
                )

            assert (await attempt("wrong", "203.0.113.1")).status_code == 401
            refused = await attempt("right password", "203.0.113.2")
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 60
