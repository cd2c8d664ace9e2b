"""Password hashing off the loop, and in-memory storage specifics (clean-up task, threads)."""

from __future__ import annotations

import asyncio
import threading
import time

from argon2 import PasswordHasher

from authmw import InMemoryStorage
from authmw.passwords import PasswordManager
from authmw.storage import InMemoryConfig
from tests.support.factories import make_session, make_token


async def test_hashing_does_not_block_the_loop() -> None:
    """Hashing and verifying run on worker threads, never on the event loop's thread."""

    class Recording(PasswordHasher):
        threads: set[int] = set()

        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            self.threads.add(threading.get_ident())
            return super().hash(password, salt=salt)

        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            self.threads.add(threading.get_ident())
            return super().verify(hash, password)

    manager = PasswordManager(
        Recording(time_cost=1, memory_cost=8, parallelism=1), max_concurrent=2
    )
    hashes = await asyncio.gather(*(manager.hash(f"password{i}") for i in range(4)))
    assert await manager.verify(hashes[0], "password0")
    assert Recording.threads and threading.get_ident() not in Recording.threads
    manager.close()


async def test_concurrency_is_bounded() -> None:
    """No more than max_concurrent hashes run at once."""
    running = 0
    peak = 0
    lock = threading.Lock()

    class Tracked(PasswordHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.02)
            with lock:
                running -= 1
            return super().hash(password, salt=salt)

    manager = PasswordManager(Tracked(time_cost=1, memory_cost=8, parallelism=1), max_concurrent=2)
    await asyncio.gather(*(manager.hash(f"p{i}") for i in range(8)))
    assert peak == 2
    manager.close()


async def test_verify_and_rehash_checks() -> None:
    """verify answers True/False (never raises); corrupt hashes fail closed."""
    manager = PasswordManager(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    hashed = await manager.hash("secret-pw")
    assert await manager.verify(hashed, "secret-pw") is True
    assert await manager.verify(hashed, "wrong") is False
    assert await manager.verify("not-a-hash", "secret-pw") is False
    assert await manager.burn("anything") is False
    assert manager.needs_rehash(hashed) is False
    assert manager.needs_rehash("not-a-hash") is True
    assert "secret" not in repr(manager)
    manager.close()


async def test_cleanup_task_reclaims_memory() -> None:
    """The background task started by open() removes expired records on its interval."""
    storage = InMemoryStorage(InMemoryConfig(cleanup_interval=0.1))
    await storage.open()
    await storage.store_token(make_token(ttl=-5, refresh_ttl=-1))
    await storage.store_session(make_session(ttl=-1))
    await storage.kv_set("k", b"v", ttl=0.05)
    await asyncio.sleep(0.3)
    assert storage._t.tokens == {} and storage._t.sessions == {} and storage._t.kv == {}
    assert storage._t.user_tokens == {} and storage._t.user_sessions == {}
    await storage.close()
    assert storage._cleanup_task is None


async def test_memory_is_thread_safe() -> None:
    """Increments from several threads, each with its own loop, are all counted."""
    storage = InMemoryStorage()

    def worker() -> None:
        async def run() -> None:
            for _ in range(500):
                await storage.kv_incr("shared", 60)

        asyncio.run(run())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert await storage.kv_get("shared") == b"2000"
