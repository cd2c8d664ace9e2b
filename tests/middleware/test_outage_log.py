"""During a storage outage the edge logs a bounded number of warnings, not one per request."""

from __future__ import annotations

import logging

import pytest

from authmw import AuthConfig
from authmw._outage import OutageLog
from authmw.errors import StorageUnavailable
from authmw.models import SessionData
from authmw.testing import fast_password_hasher
from tests.support.factories import RemoteLikeMemory
from tests.support.fronts import FRONTS, Front

LOGGER = "authmw.middleware"


class Down(RemoteLikeMemory):
    """A memory storage whose session reads fail once ``down`` is set."""

    down = False

    async def get_session(self, session_id: str) -> SessionData | None:
        if self.down:
            raise StorageUnavailable("memory", "get_session", "simulated outage")
        return await super().get_session(session_id)


@pytest.mark.parametrize("kind", FRONTS)
def test_fifty_failing_requests_log_one_warning(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """50 requests refused with 503 during an outage give one warning, not 50."""
    storage = Down()
    front = Front(
        kind, storage, AuthConfig(secret_key="k" * 40, password_hasher=fast_password_hasher())
    )
    try:
        front.run(front.auth.register_user("ann", "password"))
        session_id, _ = front.run(front.auth.create_session("ann"))
        cookie = f"authmw_session={front.middleware.edge.cookies.sign(session_id)}".encode()
        storage.down = True
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            statuses = {front.request("GET", {"cookie": cookie}).status for _ in range(50)}
        assert statuses == {503}
        warnings = [r for r in caplog.records if r.name == LOGGER]
        assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]
        assert "simulated outage" in warnings[0].getMessage()
    finally:
        front.close()


def test_suppressed_warnings_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    """Within the interval one warning per message; the next one says how many were dropped."""
    now = [100.0]
    outage = OutageLog(logging.getLogger(LOGGER), interval=10.0, clock=lambda: now[0])
    error = StorageUnavailable("memory", "get_session", "down")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(50):
            outage.warning("refusing request with 503", error)
            outage.warning("session save failed, answering 503", error)
        assert len(caplog.records) == 2
        now[0] += 9.9
        outage.warning("refusing request with 503", error)
        assert len(caplog.records) == 2
        now[0] += 0.2
        outage.warning("refusing request with 503", error)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "and 50 more" in messages[2] and "down" in messages[2]
