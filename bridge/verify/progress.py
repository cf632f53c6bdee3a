"""Progress of a long read (a million rows take minutes): a log line on an interval, and one at the end."""

from __future__ import annotations

import logging
import time

__all__ = ["Progress"]

logger = logging.getLogger(__name__)

_INTERVAL = 30.0


class Progress:
    """Logs how far a long read has got, on an interval (and once at the end)."""

    def __init__(self, what: str, interval: float = _INTERVAL) -> None:
        self.what, self.count, self._interval = what, 0, interval
        self._started = self._last = time.monotonic()

    def add(self, n: int, total: int | None = None) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            rate = self.count / max(now - self._started, 1e-9)
            of = f" of about {total}" if total else ""
            logger.info("verify: %d%s %s read (%.0f/s)", self.count, of, self.what, rate)

    def done(self) -> None:
        logger.info("verify: %d %s read in %.1f s", self.count, self.what, time.monotonic() - self._started)
