"""Helpers for testing apps that use authmw.

Real argon2 parameters take tens of milliseconds per hash by design; tests that register and
log in many users should use :func:`fast_password_hasher` instead. Never use it in production.
"""

from __future__ import annotations

from typing import Any

from argon2 import PasswordHasher

from .config import AuthConfig

__all__ = ["fast_password_hasher", "test_config"]


def fast_password_hasher() -> PasswordHasher:
    """argon2id with the cheapest parameters argon2 accepts (8 KiB, one pass): tests only."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=16, salt_len=8)


def test_config(**overrides: Any) -> AuthConfig:
    """An ``AuthConfig`` with a fixed test key and :func:`fast_password_hasher`."""
    settings: dict[str, Any] = {
        "secret_key": "authmw-testing-key-not-for-production-use!",
        "password_hasher": fast_password_hasher(),
    }
    settings.update(overrides)
    return AuthConfig(**settings)


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
