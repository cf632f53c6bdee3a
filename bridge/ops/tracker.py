"""Where a running pipeline stands, from its events: counts, pending changes, lag, health and readiness.

Only state and arithmetic: the clock is injected and nothing here does I/O, so the HTTP endpoint, the
metrics and the progress reporter all read one consistent account. Updated from the pipeline's threads,
read from the endpoint's; each update is a few assignments, so a reader sees at worst a batch-old view.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.ops.events import PANDA, SOURCE, Events

__all__ = ["Readiness", "Tracker"]


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer of /readyz."""

    ready: bool
    reason: str
    """`ready`, `starting`, `backfilling`, `PANDA unavailable`, `source unavailable` or `stopped`."""


class Tracker(Events):
    """Counts what happened in this process and derives pending changes, lag and readiness from it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self.rows_read = 0
        """Feed items read from the source."""
        self.changes_read = 0
        """Changes handed to batching (the units a batch's `received` counts)."""
        self.committed_changes = 0
        """Changes whose batch was acknowledged and committed."""
        self.upserts = 0
        self.deletes = 0
        self.unchanged = 0
        self.dead_letters = 0
        self.retries: dict[tuple[str, str], int] = {}
        """(what, error) -> retries."""
        self.backlog: int | None = None
        """Changes the source had after the start position when the run began (None: unknown)."""
        self.started_at: float | None = None
        self.last_commit: float | None = None
        """Unix time of the last commit."""
        self.up: dict[str, bool | None] = {SOURCE: None, PANDA: None}
        """Whether the last request to each end got an answer (None: none made yet)."""
        self._feed_end = False
        self._source_pending: int | None = None
        self._reads: deque[tuple[float, int]] = deque()
        """(when read, changes_read after that chunk), for chunks not yet wholly committed."""
        self._threads: Sequence[threading.Thread] = ()
        self._stopped = False
        self.error: BaseException | None = None
        """What the pipeline stopped on (None while running or after a clean stop)."""

    # -- events -------------------------------------------------------------------------------------------

    def started(self, threads: Sequence[threading.Thread]) -> None:
        self._threads = tuple(threads)
        self.started_at = self._clock()

    def behind(self, changes: int | None) -> None:
        self.backlog = changes

    def read(self, rows: int, changes: int) -> None:
        self.rows_read += rows
        if changes:
            self.changes_read += changes
            self._reads.append((self._clock(), self.changes_read))
            self._feed_end = False

    def position(self, caught_up: bool, pending: int | None) -> None:
        if self.backlog is None and pending is not None:  # CouchDB 2+: the first page tells the total
            self.backlog = self.changes_read + pending
        self._feed_end = caught_up
        self._source_pending = 0 if caught_up else pending

    def committed(self, received: int, upserts: int, deletes: int, unchanged: int) -> None:
        self.committed_changes += received
        self.upserts += upserts
        self.deletes += deletes
        self.unchanged += unchanged
        self.last_commit = self._wall()
        reads = self._reads
        while reads and reads[0][1] <= self.committed_changes:
            reads.popleft()

    def dead_lettered(self, count: int) -> None:
        self.dead_letters += count

    def retried(self, what: str, error: str) -> None:
        key = (what, error)
        self.retries[key] = self.retries.get(key, 0) + 1

    def request(self, end: str, ok: bool, method: str = "", seconds: float | None = None) -> None:
        self.up[end] = ok

    def stopped(self, error: BaseException | None) -> None:
        self._stopped = True
        self.error = error

    # -- derived ------------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Changes read but not yet committed."""
        return max(0, self.changes_read - self.committed_changes)

    @property
    def caught_up(self) -> bool:
        """The feed reached its end and everything read is committed."""
        return self._feed_end and self.in_flight == 0

    def pending(self) -> int | None:
        """Changes behind the source: not yet read (as the source said, or estimated) plus in flight."""
        if self._feed_end:
            return self.in_flight
        if self._source_pending is not None:
            return self._source_pending + self.in_flight
        if self.backlog is not None:
            return max(0, self.backlog - self.committed_changes)
        return None

    def lag(self) -> float:
        """Seconds since the oldest change not yet committed was read; 0 when there is none."""
        reads = self._reads
        if not reads or self.in_flight == 0:
            return 0.0
        try:
            oldest = reads[0][0]
        except IndexError:  # emptied by the committer meanwhile
            return 0.0
        return max(0.0, self._clock() - oldest)

    def healthy(self) -> bool:
        """Still running (not stopped, least of all on a fatal error) with every helper thread alive."""
        if self._stopped:
            return False
        return all(thread.is_alive() for thread in self._threads)

    def readiness(self) -> Readiness:
        """Ready when caught up and both ends answered the last request; else the first reason why not."""
        if self._stopped:
            return Readiness(False, "stopped")
        if self.up[SOURCE] is False:
            return Readiness(False, "source unavailable")
        if self.up[PANDA] is False:
            return Readiness(False, "PANDA unavailable")
        if self.started_at is None:
            return Readiness(False, "starting")
        if not self.caught_up:
            return Readiness(False, "backfilling")
        return Readiness(True, "ready")

    def rate(self) -> float:
        """Changes committed per second since the feed started."""
        if self.started_at is None:
            return 0.0
        return self.committed_changes / max(1e-9, self._clock() - self.started_at)
