"""Rate-limited warnings for outages: a bounded number of log lines however many calls fail.

Shared by the edge (each request refused with 503 during an outage) and the Redis executor
(each retry of a failed command): both would otherwise log one warning per failure, which under
load floods the logs and costs a formatted record per failure. It sits below every layer that
logs such failures so that each may import it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["OutageLog"]


class OutageLog:
    """Warnings about outages on ``logger``, at most one per ``interval`` seconds per message.

    During an outage every call fails the same way: the first warning with a given ``message``
    is logged; the ones within the next ``interval`` are counted, and the count goes with the
    next warning logged. Thread-safe (WSGI request threads share one).
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._log = logger
        self._lock = threading.Lock()
        self._quiet_until: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, message: str, detail: object) -> None:
        """Log ``message: detail`` as a warning unless one with ``message`` went out recently.

        ``detail`` (an exception, or text) is only formatted when the warning is logged.
        """
        now = self._clock()
        with self._lock:
            if now < self._quiet_until.get(message, now):
                self._suppressed[message] = self._suppressed.get(message, 0) + 1
                return
            self._quiet_until[message] = now + self.interval
            suppressed = self._suppressed.pop(message, 0)
        if suppressed:
            self._log.warning(
                "%s: %s (and %d more since the last such warning)", message, detail, suppressed
            )
        else:
            self._log.warning("%s: %s", message, detail)
