"""In-memory backend for the behaviour suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from authmw.storage import InMemoryStorage

BACKENDS = {"memory": "memory_storage"}


@pytest.fixture
async def memory_storage() -> AsyncIterator[InMemoryStorage]:
    """A fresh, opened in-memory storage."""
    storage = InMemoryStorage()
    await storage.open()
    yield storage
    await storage.close()
