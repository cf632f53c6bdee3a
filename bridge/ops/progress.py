"""Backfill progress: a log line every 10 s (done, total, rate, ETA) and, on a terminal, a tqdm bar.

A thread of its own reads the Tracker, so the pipeline's hot path never formats or draws anything. It
reports only while a run that started behind is catching up; once caught up it logs one last line and
stops. The bar is drawn only where stderr is a terminal and `--no-progress` was not given; log lines go
around it (tqdm's logging redirect), so they never tear the bar.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from bridge.ops import logcontext
from bridge.ops.tracker import Tracker

__all__ = ["Progress", "progress_line", "format_eta"]

logger = logging.getLogger(__name__)

LOG_INTERVAL = 10.0
_TICK = 0.25


def format_eta(seconds: float | None) -> str:
    """`1h02m`, `3m05s`, `12s`; `unknown` when there is no rate yet."""
    if seconds is None:
        return "unknown"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def progress_line(done: int, total: int | None, rate: float) -> str:
    """The periodic backfill line: done of total (percent), rate and ETA; the total may be unknown."""
    if total is None or total <= 0:
        return f"backfill: {done} changes committed, {rate:.0f}/s, total unknown"
    left = max(0, total - done)
    eta = left / rate if rate > 0 else None
    return (f"backfill: {done} of {total} changes committed ({100 * min(done, total) / total:.1f}%), "
            f"{rate:.0f}/s, ETA {format_eta(eta)}")


class Progress:
    """Reports a backfill from `tracker` until it is caught up or `close()` is called."""

    def __init__(self, tracker: Tracker, stream: TextIO, *, bar: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._tracker = tracker
        self._stream = stream
        self._want_bar = bar and _is_terminal(stream)
        self._clock = clock
        self._done = threading.Event()
        self._thread = logcontext.thread(self._loop, name="bridge-progress")

    @property
    def draws_bar(self) -> bool:
        return self._want_bar

    def start(self) -> Progress:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        tracker = self._tracker

        def caught_up() -> bool:  # a call, not an attribute: another thread changes it
            return tracker.caught_up

        while tracker.started_at is None or tracker.backlog is None:  # until the feed starts
            if self._done.wait(_TICK):
                return
        if tracker.backlog == 0 or caught_up():
            return  # it started caught up: nothing to report
        with self._bar(tracker.backlog) as update:
            next_line = self._clock() + LOG_INTERVAL
            while not self._done.wait(_TICK if self._want_bar else 1.0):
                update(tracker.committed_changes)
                if caught_up():
                    break
                if self._clock() >= next_line:
                    next_line += LOG_INTERVAL
                    logger.info("%s", progress_line(tracker.committed_changes, tracker.backlog, tracker.rate()))
            if caught_up():
                logger.info("backfill done: %d changes committed at %.0f/s", tracker.committed_changes,
                            tracker.rate())

    @contextlib.contextmanager
    def _bar(self, total: int) -> Iterator[Callable[[int], None]]:
        if not self._want_bar:
            yield lambda _done: None
            return
        from tqdm import tqdm  # only a terminal run draws a bar
        from tqdm.contrib.logging import logging_redirect_tqdm

        with tqdm(total=total, file=self._stream, unit="changes", unit_scale=True, dynamic_ncols=True,
                  desc="backfill", mininterval=_TICK) as bar, logging_redirect_tqdm(loggers=[logging.getLogger()]):

            def update(done: int) -> None:
                if done > bar.n:
                    bar.update(min(done, total) - bar.n)

            yield update


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
