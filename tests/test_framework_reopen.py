"""AuthFramework over a storage that cannot be opened: operations raise StorageUnavailable
(503), retry opening at most every reopen_interval, log the reason once, and recover."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from authmw import AuthFramework
from authmw.errors import ConfigurationError, StorageUnavailable
from authmw.storage import storage_from_url
from authmw.testing import test_config
from tests.backends.postgres import with_database


async def test_bounded_retries_then_recovery(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing database: explicit open() raises ConfigurationError; operations raise
    StorageUnavailable, try again only after reopen_interval, and work once it exists."""
    caplog.set_level(logging.DEBUG, logger="authmw")
    name = "authmw_reopen_test_db"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        auth = AuthFramework(storage_from_url(with_database(postgres_url, name)), test_config())
        auth.reopen_interval = 3600.0
        with pytest.raises(ConfigurationError, match="does not exist"):
            await auth.open()
        assert isinstance(auth.open_failure, ConfigurationError)
        for _ in range(5):
            with pytest.raises(StorageUnavailable, match="not retried yet"):
                await auth.register_user("ann", "password")
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # open() raised

        auth.reopen_interval = 0.0  # the interval has passed: the next call tries again
        with pytest.raises(StorageUnavailable, match="does not exist") as info:
            await auth.register_user("ann", "password")
        assert isinstance(info.value.__cause__, ConfigurationError)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "CREATE DATABASE" in errors[0].getMessage()

        await admin.execute(f"CREATE DATABASE {name}")
        assert await auth.try_open()
        assert auth.open_failure is None
        assert (await auth.register_user("ann", "password")).user_id == "ann"
        await auth.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
