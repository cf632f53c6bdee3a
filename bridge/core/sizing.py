"""How many documents the next batch may gather before it is due: more while PANDA is slow (pure).

Against a real PANDA every write is a Solr commit, so while the backlog is large and the sink is the
bottleneck, fewer, bigger writes move more rows per second. Rules, applied after each batch is handed on:
- the feed was caught up: back to `base` at once, so live changes never wait behind a big batch's worth;
- a grown size is on trial until TRIAL full batches of that size have gone through: unless they moved
  documents faster than the size before did (by GAIN of the growth; by a quarter for a doubling), the sink's
  cost is in its rows, not its requests, and bigger batches would only hold more rows in memory: back to
  the size before, and no growth to the failed size again for REPROBE batches (a sink's costs can change
  over a long backfill);
- the batch filled up to the current size (a backlog), the previous write was still in flight when it
  was ready (the sink is slower than the source) and that write took at least SLOW_WRITE seconds (each
  request costs PANDA a commit): double the size, up to `cap` documents and up to what fits in
  `max_bytes` at the batch's bytes per document;
- otherwise the size stays.

The speed is documents handed on per second, timed between two full batches of one size (the time
between two hand-overs is what the slower side, source or sink, took for one batch). A write's own duration
would mislead: in a process whose threads share the GIL it includes waiting for the other threads, which
costs per request, so bigger writes look cheaper per row even where the machine's CPU, not PANDA's
commits, decides the speed (measured: over 1,000,000 documents, batches grew to 4,000 that way for no gain
in speed, and peak RSS rose from 54 MB to 75-78 MB).
"""

from __future__ import annotations

__all__ = ["BatchSizer", "GAIN", "REPROBE", "SLOW_WRITE", "TRIAL"]

SLOW_WRITE = 0.1
"""Seconds a write must take before bigger batches are worth it. A faster PANDA answers ten writes a second
or more, so its rows, not its requests, decide the speed, and bigger batches would only hold more rows in
memory: against the emulator answering at once, batches grown to 20,000 took peak RSS from 51 MB to
133 MB on a 100,000-document backfill, with no gain in speed (measured)."""

GAIN = 0.25
"""A grown size is kept when it moved documents at least 1 + GAIN x (growth - 1) times as fast as the size
before: 1.25 times for a doubling. A Solr commit per request (about 0.5 s) nearly doubles the speed with each
doubling until the batches are far bigger than the cap; a sink slow per row gives nothing."""

TRIAL = 2
"""Timed full batches of a grown size that decide whether it stays (the best of them counts)."""

REPROBE = 50
"""Batches after a growth that did not pay before the sizer may try that size again."""


class BatchSizer:
    """The document count at which the next batch is due, between `base` and `cap`."""

    def __init__(self, base: int, cap: int, max_bytes: int) -> None:
        if not 1 <= base <= cap or max_bytes < 1:
            raise ValueError("need 1 <= base <= cap and max_bytes >= 1")
        self._base = base
        self._cap = cap
        self._max_bytes = max_bytes
        self._size = base
        self._last: tuple[int, float] | None = None
        """The documents and time of the previous hand-over."""
        self._speeds: list[float] = []
        """Documents per second of the timed full batches at the current size, the latest last."""
        self._trial: tuple[int, float] | None = None
        """While a grown size is on trial: the size before and its best speed."""
        self._ceiling = cap + 1
        """Sizes at or above this did not pay; lifted after REPROBE batches."""
        self._since_ceiling = 0

    @property
    def size(self) -> int:
        """Documents at which the next batch is due."""
        return self._size

    def delivered(self, changes: int, nbytes: int, *, caught_up: bool, sink_busy: bool, write_seconds: float,
                  now: float) -> int:
        """Account for a batch of `changes` documents and `nbytes` feed bytes handed on at `now`; the next size.

        `caught_up`: the batch ended at the end of the feed. `sink_busy`: the committer had to wait for the
        sink's previous write since the last batch. `write_seconds`: how long the sink's last write took.
        """
        previous, self._last = self._last, (changes, now)
        if previous is not None and previous[0] == changes == self._size and now > previous[1]:
            self._speeds = [*self._speeds, changes / (now - previous[1])][-TRIAL:]
        if self._ceiling <= self._cap:
            self._since_ceiling += 1
            if self._since_ceiling >= REPROBE:
                self._ceiling = self._cap + 1
        if caught_up:
            self._resize(self._base)
            self._trial = None
            return self._size
        if self._trial is not None:
            if len(self._speeds) < TRIAL:
                return self._size  # still timing the grown size
            before, before_speed = self._trial
            self._trial = None
            if max(self._speeds) < before_speed * (1 + GAIN * (self._size / before - 1)):
                self._ceiling, self._since_ceiling = self._size, 0
                self._resize(before)
                self._speeds = [before_speed]
                return self._size
        if sink_busy and write_seconds >= SLOW_WRITE and changes >= self._size and self._speeds:
            fits = self._max_bytes // max(1, nbytes // max(1, changes))
            grown = max(self._base, min(self._cap, 2 * self._size, fits))
            if self._size < grown < self._ceiling:
                self._trial = (self._size, max(self._speeds))
                self._resize(grown)
        return self._size

    def _resize(self, size: int) -> None:
        if size != self._size:
            self._size = size
            self._speeds = []
