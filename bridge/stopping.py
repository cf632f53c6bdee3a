"""SIGTERM/SIGINT for the `bridge` command, in place before anything slow happens (imports, start-up checks).

Until the pipeline starts nothing needs finishing, so a stop exits 0 at once: every start-up step (imports,
reading the state, the claim, the marker, creating the dataset) is safe to cut short and to repeat. Once
`graceful(stop)` is called, a stop sets the flag instead: the loop finishes the batch in hand, saves the
checkpoint and exits 0; a second signal exits at once (130). Imports only the standard library: it runs
before the rest of the bridge is imported.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

__all__ = ["install", "graceful", "release"]

logger = logging.getLogger("bridge")


class _State:
    stop: threading.Event | None = None
    """The pipeline's stop flag once it runs; None during start-up."""
    received = 0
    """Signals since the pipeline started."""


def _handle(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    stop = _State.stop
    if stop is None:
        logger.info("%s received during start-up: exiting (nothing was started)", name)
        raise SystemExit(0)
    _State.received += 1
    if _State.received > 1:
        logger.warning("second %s: exiting at once (the checkpoint is at the last acknowledged batch)", name)
        os._exit(130)
    logger.info("%s received: finishing the batch in hand, then stopping (again to exit at once)", name)
    stop.set()


def install() -> None:
    """Handle SIGTERM and SIGINT from now on: during start-up, by exiting 0 at once (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        _State.stop, _State.received = None, 0
        signal.signal(signal.SIGINT, _handle)
        signal.signal(signal.SIGTERM, _handle)


def graceful(stop: threading.Event) -> None:
    """The pipeline is starting: from now on a stop sets `stop` and the run ends cleanly."""
    _State.stop, _State.received = stop, 0


def release() -> None:
    """Back to Python's defaults (Ctrl-C raises KeyboardInterrupt), for commands that have no clean stop."""
    if threading.current_thread() is threading.main_thread():
        _State.stop = None
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
