"""In-memory ``verify`` rate against a baseline loop, memory per token, and login isolation.

Run: ``.venv/bin/python benchmarks/verify.py`` (``--quick`` for a shorter run).

Prints, from one run on one core:
1. the baseline: awaiting a trivial coroutine that does one dict lookup;
2. ``auth.verify`` of the same token over and over (the verified-token cache hit path);
3. ``auth.verify`` cycling through 100,000 distinct tokens with the cache off (the cold path:
   tag HMAC + storage lookup + SHA-256 digest compare);
4. memory per stored token at 100,000 tokens (tracemalloc);
5. the verify rate while 16 real-cost argon2 logins run, as a share of the rate without them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from typing import Any

from argon2 import PasswordHasher

from authmw import AuthConfig, AuthFramework, InMemoryStorage
from authmw.testing import fast_password_hasher

KEY = "benchmark-secret-key-0123456789abcdef"


def framework(**overrides: Any) -> AuthFramework:
    settings: dict[str, Any] = {"secret_key": KEY, "password_hasher": fast_password_hasher()}
    settings.update(overrides)
    return AuthFramework(InMemoryStorage(), AuthConfig(**settings))


async def rate(fn: Any, args: list[Any], seconds: float) -> float:
    """Calls per second of ``await fn(arg)`` cycling through ``args`` for about ``seconds``."""
    count, n, start = 0, len(args), time.perf_counter()
    deadline = start + seconds
    while True:
        for i in range(1000):
            await fn(args[(count + i) % n])
        count += 1000
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


async def baseline(seconds: float) -> float:
    table = {f"key{i}": i for i in range(100_000)}

    async def lookup(key: str) -> int | None:
        return table.get(key)

    return await rate(lookup, ["key5"], seconds)


async def issue_tokens(auth: AuthFramework, count: int) -> list[str]:
    await auth.register_user("bench", "password")
    user = await auth.storage.get_user("bench")
    assert user is not None
    tokens = []
    for _ in range(count):
        token = auth._mint(user, None)
        await auth.storage.store_token(token)
        tokens.append(token.access_token)
    return tokens


async def memory_per_token(count: int) -> float:
    auth = framework()
    await auth.register_user("mem", "password")
    user = await auth.storage.get_user("mem")
    assert user is not None
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(count):
        await auth.storage.store_token(auth._mint(user, None).stored())
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


async def login_isolation(seconds: float) -> tuple[float, float]:
    """verify rate alone, and while 16 real-cost logins run."""
    auth = framework(password_hasher=PasswordHasher())  # argon2-cffi defaults: 64 MiB, t=3
    await auth.register_user("iso", "password")
    token = (await auth.authenticate("iso", "password")).access_token
    alone = await rate(auth.verify, [token], seconds)
    logins = asyncio.gather(*(auth.authenticate("iso", "password") for _ in range(16)))
    await asyncio.sleep(0)
    during = await rate(auth.verify, [token], seconds)
    done_before = logins.done()
    await logins
    assert not done_before, "logins finished before the measurement ended; raise seconds"
    return alone, during


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter run, fewer tokens")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 3.0
    count = 20_000 if args.quick else 100_000

    base = await baseline(seconds)
    warm_auth = framework()
    warm_tokens = await issue_tokens(warm_auth, 1)
    warm = await rate(warm_auth.verify, warm_tokens, seconds)
    cold_auth = framework(verified_token_cache=0)
    cold_tokens = await issue_tokens(cold_auth, count)
    cold = await rate(cold_auth.verify, cold_tokens, seconds)
    per_token = await memory_per_token(count)
    alone, during = await login_isolation(min(seconds, 1.5))

    print(f"baseline (await coroutine + dict lookup): {base:12,.0f} /s")
    print(f"verify, repeat token (cache hit):         {warm:12,.0f} /s  "
          f"= {warm / base:6.1%} of baseline")
    print(f"verify, {count:,} tokens, cache off:      {cold:12,.0f} /s  "
          f"= {cold / base:6.1%} of baseline")
    print(f"memory per stored token at {count:,}:   {per_token:12,.0f} bytes")
    print(f"verify alone / during 16 argon2 logins:   {alone:12,.0f} /s  {during:,.0f} /s  "
          f"= {during / alone:6.1%} kept")


if __name__ == "__main__":
    asyncio.run(main())
