"""Shared fixtures: the parametrized ``storage`` fixture and an ``auth`` framework over it."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authmw import AuthConfig, AuthFramework
from authmw.storage import AuthStorage
from authmw.testing import fast_password_hasher

pytest.register_assert_rewrite("tests.backends")

_BACKEND_DIR = Path(__file__).parent / "backends"
_BACKEND_MODULES = sorted(
    f"tests.backends.{info.name}" for info in pkgutil.iter_modules([str(_BACKEND_DIR)])
)
pytest_plugins = _BACKEND_MODULES

# test-id -> fixture name, gathered from every backend module.
BACKENDS: dict[str, str] = {}
for _name in _BACKEND_MODULES:
    BACKENDS.update(importlib.import_module(_name).BACKENDS)

TEST_SECRET = "test-secret-key-0123456789abcdef0123456789"


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest) -> AuthStorage:
    """An opened, empty storage of each backend in turn."""
    # A plain fixture: pytest-asyncio sets the async backend fixture up on the test's loop.
    backend: AuthStorage = request.getfixturevalue(BACKENDS[request.param])
    return backend


@pytest.fixture
def config() -> AuthConfig:
    """A config with a fixed key and cheap password hashing."""
    return AuthConfig(secret_key=TEST_SECRET, password_hasher=fast_password_hasher())


@pytest.fixture
async def auth(storage: AuthStorage, config: AuthConfig) -> AsyncIterator[AuthFramework]:
    """An opened framework over each backend in turn."""
    framework = AuthFramework(storage, config)
    await framework.open()
    yield framework
    await framework.close()
