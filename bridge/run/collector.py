"""The cyclic garbage collector while pipelines run: paused, and run on a timer instead.

Every feed row becomes a dozen dicts, lists and values that live until their batch is committed, so the
automatic collector keeps finding the rows waiting in the hand-offs and traverses them again and again
(measured: about a seventh of the bridge's CPU on a backfill, though rows hold no reference cycles and
reference counting frees them). While at least one run is in progress the automatic collector is off, the
objects alive at its start (modules, settings, sessions) are frozen out of every collection, and a run
calls `collect_if_due` between batches, which collects fully every COLLECT_INTERVAL seconds: the rare
cycles (an exception's traceback, a closed connection) are freed within seconds, so memory stays flat.

The collector is process-wide and many pipelines run as threads of one process: the first run to start
pauses it and the last to end restores it.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["paused", "collect_if_due", "COLLECT_INTERVAL"]

COLLECT_INTERVAL = 5.0
"""Seconds between full collections while the automatic collector is paused."""

_lock = threading.Lock()
_runs = 0
_was_enabled = True
_last = 0.0


@contextmanager
def paused(clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Pause automatic collection (and freeze what is alive now) until the last concurrent run ends."""
    global _runs, _was_enabled, _last
    with _lock:
        if _runs == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
            gc.collect()
            gc.freeze()
            _last = clock()
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.unfreeze()
                if _was_enabled:
                    gc.enable()


def collect_if_due(clock: Callable[[], float] = time.monotonic) -> bool:
    """Collect fully when COLLECT_INTERVAL passed since the last collection of any run; True if it did."""
    global _last
    now = clock()
    with _lock:
        if _runs == 0 or now - _last < COLLECT_INTERVAL:
            return False
        _last = now
    gc.collect()
    return True
