"""InMemoryStorage.get_statistics: counts and the memory estimate."""

from __future__ import annotations

from authmw.storage import InMemoryStorage
from tests.support.factories import make_session, make_token, make_user


async def test_memory_bytes_estimates_what_is_stored() -> None:
    """memory_bytes is filled, grows with what is stored, and shrinks when it is deleted."""
    storage = InMemoryStorage()
    empty = (await storage.get_statistics()).memory_bytes
    assert empty is not None and empty > 0
    for i in range(200):
        await storage.create_user(make_user(f"user{i}"))
        await storage.store_token(make_token(f"user{i}"))
        await storage.store_session(make_session(f"user{i}", data={"blob": "x" * 1000}))
    full = (await storage.get_statistics()).memory_bytes
    assert full is not None
    # 200 session payloads of 1,000 characters alone are 200,000 bytes.
    assert full - empty > 200 * 1000
    for i in range(200):
        await storage.delete_user_sessions(f"user{i}")
    emptied = (await storage.get_statistics()).memory_bytes
    assert emptied is not None and emptied < full - 200 * 1000
