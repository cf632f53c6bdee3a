"""Collects changes, keeps the last one per document, and says when a batch is due (pure).

A batch is due on count, bytes or age, whichever comes first, or as soon as the source is caught up
(so live changes are not held back). The clock is injected, so tests never sleep.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.config.settings import BatchSettings
from bridge.model import Batch, Change, Position, Seq

__all__ = ["Batcher"]


class Batcher:
    """Accumulates changes and positions into the next Batch.

    The position of a batch is the last seq seen, from a change or a Position, so recording it once the
    batch is acknowledged never skips a change. A change without a seq leaves the position where it was,
    which only means a restart re-reads a little more.
    """

    def __init__(self, limits: BatchSettings, clock: Callable[[], float]) -> None:
        self._limits = limits
        self._clock = clock
        self.max_changes = limits.max_changes
        """Documents at which a batch is due; the pipeline changes it between batches (core/sizing.py)."""
        self._changes: dict[str, Change] = {}
        self._bytes = 0
        self._received = 0
        self._position: Seq | None = None
        self._moved = False
        self._caught_up = False
        self._started: float | None = None

    def add(self, change: Change) -> None:
        """Fold in one change; a later change of the same document replaces the earlier one."""
        self._start()
        self._changes.pop(change.doc_id, None)  # re-insert so batch order is the order of last changes
        self._changes[change.doc_id] = change
        self._bytes += change.size
        self._received += 1
        if change.seq is not None:
            self._position = change.seq
            self._moved = True
        self._caught_up = False

    def advance(self, position: Position) -> None:
        """Record that the source reached `position` with every change before it already added."""
        self._start()
        self._position = position.seq
        self._moved = True
        self._caught_up = position.caught_up

    def due(self, more_waiting: bool = False) -> bool:
        """True when the batch should be delivered now.

        `more_waiting`: more feed items are already at hand, or the sink is still writing the last batch.
        Then reaching the end of the feed does not make the batch due, because more items can join it
        without delaying it: delivering a batch per longpoll response while the sink is slower would queue
        responses, and each would wait a write's time.
        """
        if self._started is None:
            return False
        if self._caught_up and self._changes and not more_waiting:
            return True
        if len(self._changes) >= self.max_changes or self._bytes >= self._limits.max_bytes:
            return True
        return self._clock() - self._started >= self._limits.max_age

    def seconds_until_due(self) -> float | None:
        """How long until the age limit makes the batch due; None when nothing is pending."""
        if self._started is None:
            return None
        return max(0.0, self._limits.max_age - (self._clock() - self._started))

    @property
    def empty(self) -> bool:
        """True when there is nothing to deliver or record."""
        return not self._changes and not self._moved

    def take(self) -> Batch | None:
        """The pending batch (changes and/or a new position), or None when there is nothing; resets."""
        if self.empty:
            return None
        batch = Batch(
            changes=tuple(self._changes.values()),
            position=self._position,
            caught_up=self._caught_up,
            received=self._received,
        )
        self._changes = {}
        self._bytes = 0
        self._received = 0
        self._moved = False
        self._caught_up = False
        self._started = None
        return batch

    def _start(self) -> None:
        if self._started is None:
            self._started = self._clock()
