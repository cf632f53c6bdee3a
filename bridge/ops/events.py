"""What a running pipeline reports as it works: the observer the pipeline and its adapters call.

`Events` does nothing, so a pipeline without an observer pays one method call per page, chunk, batch or
request, never per row. `Fanout` passes each event to several observers (the tracker, the metrics).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

__all__ = ["Events", "Fanout", "NO_EVENTS", "SOURCE", "PANDA"]

SOURCE = "source"
PANDA = "panda"


class Events:
    """The observer interface; every method is a no-op here. Called from the pipeline's threads."""

    def started(self, threads: Sequence[threading.Thread]) -> None:
        """The feed started; `threads` are the helper threads that must stay alive while it runs."""

    def behind(self, changes: int | None) -> None:
        """Before the feed starts: the source holds this many changes after the start position (None: unknown)."""

    def read(self, rows: int, changes: int) -> None:
        """A chunk arrived: `rows` feed items read from the source, of which `changes` go to batching."""

    def position(self, caught_up: bool, pending: int | None) -> None:
        """The source handed over a position: at the end of the feed or not; `pending` when it said."""

    def committed(self, received: int, upserts: int, deletes: int, unchanged: int) -> None:
        """A batch was acknowledged and committed: `received` changes folded into it, and its outcome."""

    def dead_lettered(self, count: int) -> None:
        """`count` changes went to the dead-letter file."""

    def retried(self, what: str, error: str) -> None:
        """A transient fault of `what` (error class name `error`) is about to be retried."""

    def request(self, end: str, ok: bool, method: str = "", seconds: float | None = None) -> None:
        """A request to `end` (SOURCE or PANDA) got an answer (`ok`) or failed; PANDA's carry their time."""

    def stopped(self, error: BaseException | None) -> None:
        """The pipeline ended: cleanly (None) or on `error`."""


NO_EVENTS = Events()
"""The default observer: nothing is recorded."""


class Fanout(Events):
    """Passes every event to each of `observers`, in order."""

    def __init__(self, *observers: Events) -> None:
        self._observers = observers

    def started(self, threads: Sequence[threading.Thread]) -> None:
        for observer in self._observers:
            observer.started(threads)

    def behind(self, changes: int | None) -> None:
        for observer in self._observers:
            observer.behind(changes)

    def read(self, rows: int, changes: int) -> None:
        for observer in self._observers:
            observer.read(rows, changes)

    def position(self, caught_up: bool, pending: int | None) -> None:
        for observer in self._observers:
            observer.position(caught_up, pending)

    def committed(self, received: int, upserts: int, deletes: int, unchanged: int) -> None:
        for observer in self._observers:
            observer.committed(received, upserts, deletes, unchanged)

    def dead_lettered(self, count: int) -> None:
        for observer in self._observers:
            observer.dead_lettered(count)

    def retried(self, what: str, error: str) -> None:
        for observer in self._observers:
            observer.retried(what, error)

    def request(self, end: str, ok: bool, method: str = "", seconds: float | None = None) -> None:
        for observer in self._observers:
            observer.request(end, ok, method, seconds)

    def stopped(self, error: BaseException | None) -> None:
        for observer in self._observers:
            observer.stopped(error)
