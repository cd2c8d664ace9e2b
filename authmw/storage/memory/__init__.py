"""The in-memory backend: one process, nothing survives a restart (tests, demos, one worker)."""

from __future__ import annotations

from ._backend import InMemoryConfig, InMemoryStorage

__all__ = ["InMemoryConfig", "InMemoryStorage"]
