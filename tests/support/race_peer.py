"""A second process for the race tests: verifies one token in a loop on a shared storage.

``python -m tests.support.race_peer <url>`` opens a framework over ``storage_from_url(url)``
(``cache:<url>`` puts it behind a cache), prints ``ready``, then answers one command per line:

* ``watch <token>``: verify it until the first success and print ``accepted``; go on verifying
  until it is refused, then 500 times more, and print ``refused <accepted after> <refused>``
  (successes after the first refusal, refusals seen), or ``timeout`` after 20 s without one;
* ``quit``: close and exit.
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import quote

from authmw import AuthConfig, AuthFramework, storage_from_url
from authmw.errors import InvalidToken
from authmw.storage import AuthStorage, CachedStorage
from authmw.storage.postgres import PostgresStorage
from authmw.storage.redis import RedisStorage
from authmw.testing import fast_password_hasher

SECRET = "test-secret-key-0123456789abcdef0123456789"
AFTER = 500


def peer_url(storage: AuthStorage) -> str | None:
    """The URL under which another process opens the same records as ``storage`` (prefix
    included), ``cache:``-marked when it is cached; None for memory, which no process shares."""
    if isinstance(storage, CachedStorage):
        inner = peer_url(storage.inner)
        return None if inner is None else f"cache:{inner}"
    if isinstance(storage, RedisStorage):
        config = storage.config
        prefix = f"key_prefix={quote(config.key_prefix, safe='')}"
        if config.is_cluster:
            nodes = ",".join(u.split("://", 1)[1].split("/", 1)[0] for u in config.cluster_urls)
            return f"redis+cluster://{nodes}?{prefix}"
        return f"{config.url}?{prefix}"
    if isinstance(storage, PostgresStorage):
        pg = storage.config
        return f"{pg.url}?table_prefix={pg.table_prefix}"
    return None


async def _watch(auth: AuthFramework, token: str) -> str:
    deadline = time.monotonic() + 20
    accepted = False
    refused = accepted_after = 0
    while time.monotonic() < deadline and refused < AFTER:
        try:
            await auth.verify(token)
        except InvalidToken:
            refused += 1
        else:
            if refused:
                accepted_after += 1
            elif not accepted:
                accepted = True
                print("accepted", flush=True)
        await asyncio.sleep(0)
    return f"refused {accepted_after} {refused}" if refused else "timeout"


async def main(url: str) -> None:
    cached = url.startswith("cache:")
    storage = storage_from_url(url.removeprefix("cache:"), cache=cached)
    auth = AuthFramework(
        storage, AuthConfig(secret_key=SECRET, password_hasher=fast_password_hasher())
    )
    await auth.open()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "watch":
            print(await _watch(auth, line[1]), flush=True)
    await auth.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
