"""Periodic reconciliation inside `bridge run`: `[verify] every = "6h"` runs a verify in a background thread
at low priority, logs the result, tells observers (the metrics registry), and repairs when `repair = true`.

The thread has its own connections to both ends and its own read of the state file, so the pipeline's
threads are untouched, except that its PANDA requests take turns with the pipeline's writes (run/gate.py).
On Linux it lowers its own scheduling priority (nice 10), which applies to that thread only. A failed
verify is logged and tried again at the next period; a stop ends it at once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

import requests

from bridge.config.settings import Settings
from bridge.errors import BridgeError, ConfigError, StopRequested
from bridge.ops import logcontext
from bridge.verify.repair import repair
from bridge.verify.report import LatestVerify, Report, VerifyObserver
from bridge.verify.verify import Verifier

__all__ = ["PeriodicVerify"]

logger = logging.getLogger(__name__)

_NICE = 10


class PeriodicVerify:
    """A background thread verifying one pipeline every `settings.verify.interval` seconds until `stop`."""

    def __init__(self, settings: Settings, stop: threading.Event,
                 observers: Sequence[VerifyObserver] = (), panda_session: requests.Session | None = None) -> None:
        """`panda_session`: the session its PANDA requests go through; inside `bridge run`, one that takes
        turns at the PANDA's gate with the pipeline's writes (run/gate.py), so that together they keep to
        `max_concurrent_requests`."""
        self.settings = settings
        self._panda_session = panda_session
        self.interval = settings.verify.interval
        self.latest = LatestVerify()
        """The last verify's numbers, for the metrics endpoint (bridge_verify_differences, ..._timestamp)."""
        self._observers: list[VerifyObserver] = [self.latest, *observers]
        self._stop = stop
        self._thread: threading.Thread | None = None

    def start(self) -> PeriodicVerify:
        """Start the thread when [verify] every is set; ConfigError at once for a source that cannot be re-read."""
        if self.interval > 0 and self.settings.source.kind != "couchdb":
            raise ConfigError("[verify] every needs a CouchDB source: an event stream cannot be read again")
        if self.interval > 0:
            logger.info("periodic verify every %s%s", self.settings.verify.every,
                        ", repairing what it finds" if self.settings.verify.repair else "")
            self._thread = logcontext.thread(self._loop, name="bridge-verify")
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for the thread once `stop` is set; a verify in progress stops at its next read."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        _lower_priority()
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except StopRequested:
                return
            except BridgeError as exc:
                logger.warning("periodic verify failed (trying again in %s): %s: %s",
                               self.settings.verify.every, type(exc).__name__, exc)
            except Exception:  # a bug here must not end reconciliation for the rest of the run unseen
                logger.exception("periodic verify failed unexpectedly (trying again in %s)", self.settings.verify.every)

    def run_once(self) -> Report:
        """One verify (and repair, when configured); observers are told the verify's report."""
        verifier = Verifier(self.settings, self._stop, examples=3, panda_session=self._panda_session)
        try:
            report = verifier.run()
            level = logging.INFO if report.in_sync else logging.WARNING
            logger.log(level, "periodic verify: %s", report.as_text().replace("\n", ";"))
            for observer in self._observers:
                observer.verified(report)
            if self.settings.verify.repair and not report.in_sync:
                # Rows the bridge never wrote are only listed: deleting another tool's rows is for a person.
                outcome = repair(verifier, delete_unowned=False, dry_run=False)
                if outcome.unowned_kept:
                    logger.warning("periodic repair kept %d row(s) the bridge never wrote, e.g. %s; "
                                   "`bridge repair --delete-unowned` removes them", len(outcome.unowned_kept),
                                   ", ".join(outcome.unowned_kept[:3]))
            return report
        finally:
            verifier.close()


def _lower_priority() -> None:
    """Nice this thread (Linux applies setpriority to a thread id alone); harmless where not possible."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
    except (AttributeError, OSError):
        logger.debug("could not lower the periodic verify's priority")
