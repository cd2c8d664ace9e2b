"""A second process for the cache tests and the benchmark: one cached framework, driven by stdin.

``python -m tests.support.cache_peer <redis|postgres> <url> <namespace>`` opens a framework over a
cached storage on that server and namespace (key or table prefix), prints ``ready``, then
answers one command per line:

* ``verify <token>``: verify it (caching it), print ``ok`` or ``refused <reason>``;
* ``watch <token>``: print ``watching``, then verify it every 0.2 ms until it is refused and
  print ``refused <time.time()>`` (or ``timeout`` after 10 s);
* ``quit``: close and exit.
"""

from __future__ import annotations

import asyncio
import sys
import time

from authmw import AuthConfig, AuthFramework
from authmw.errors import InvalidToken
from authmw.storage import CacheConfig, CachedStorage
from authmw.storage.postgres import PostgresConfig, PostgresStorage
from authmw.storage.redis import RedisConfig, RedisStorage
from authmw.testing import fast_password_hasher

SECRET = "test-secret-key-0123456789abcdef0123456789"


async def main(kind: str, url: str, namespace: str) -> None:
    if kind == "redis":
        inner: RedisStorage | PostgresStorage = RedisStorage(
            RedisConfig(url=url, key_prefix=namespace)
        )
    else:
        inner = PostgresStorage.with_config(PostgresConfig(url=url, table_prefix=namespace))
    auth = AuthFramework(
        CachedStorage(inner, CacheConfig()),
        AuthConfig(secret_key=SECRET, password_hasher=fast_password_hasher()),
    )
    await auth.open()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        command, token = line[0], line[1]
        if command == "verify":
            try:
                await auth.verify(token)
                print("ok", flush=True)
            except InvalidToken as exc:
                print("refused", exc.reason, flush=True)
        elif command == "watch":
            print("watching", flush=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    await auth.verify(token)
                except InvalidToken:
                    print("refused", repr(time.time()), flush=True)
                    break
                await asyncio.sleep(0.0002)
            else:
                print("timeout", flush=True)
    await auth.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
