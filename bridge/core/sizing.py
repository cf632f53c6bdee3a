"""How many documents the next batch may gather before it is due: more while PANDA is slow (pure).

Against a real PANDA every write is a Solr commit, so while the backlog is large and the sink is the
bottleneck, fewer, bigger writes move more rows per second. Rules, applied after each batch is handed on:
- the feed was caught up: back to `base` at once, so live changes never wait behind a big batch's worth;
- a grown size is on trial until TRIAL full batches of that size have been timed: unless they moved
  documents clearly faster than the size before did (by GAIN of the growth, a quarter for a doubling, and
  with no overlap between the two sizes' timed batches), the sink's cost is in its rows, not its requests,
  and bigger batches would only hold more rows in memory: back to the size before, and no growth to the
  failed size again for REPROBE batches;
- a grown size that was kept is checked again after RECHECK batches, because a sink's costs change over a
  long backfill and one trial can be won by a noisy minute: the size before is timed for TRIAL batches, and
  the grown size comes back only if it still beats that by GAIN;
- the batch filled up to the current size (a backlog), the previous write was still in flight when it
  was ready (the sink is slower than the source) and that write took at least SLOW_WRITE seconds (each
  request costs PANDA a commit): double the size, up to `cap` documents and up to what fits in
  `max_bytes` at the batch's bytes per document;
- otherwise the size stays.

The speed is documents handed on per second in the median of the last WINDOW full batches of one size,
timed between hand-overs (the time between two hand-overs is what the slower side, source or sink, took for
one batch). Not the best single batch nor the mean: hand-overs come in bursts when the reader has pages
queued, and the machine or the source stalls now and then (measured at 1,000,000 documents: 1,000-row
batches 12 ms to 1.25 s apart, median 56 ms), and the best or the mean of a few such gaps flatters or
spoils whichever size is timed.
A write's own duration would mislead too: in a process whose threads share the GIL it includes waiting for
the other threads, which costs per request, so bigger writes look cheaper per row even where the machine's
CPU, not PANDA's commits, decides the speed (measured: over 1,000,000 documents, batches grew to 4,000 that
way for no gain in speed, and peak RSS rose from 54 MB to 75-78 MB).
"""

from __future__ import annotations

import statistics

__all__ = ["BatchSizer", "GAIN", "RECHECK", "REPROBE", "SLOW_WRITE", "TRIAL", "WINDOW"]

SLOW_WRITE = 0.1
"""Seconds a write must take before bigger batches are worth it. A faster PANDA answers ten writes a second
or more, so its rows, not its requests, decide the speed, and bigger batches would only hold more rows in
memory: against the emulator answering at once, batches grown to 20,000 took peak RSS from 51 MB to
133 MB on a 100,000-document backfill, with no gain in speed (measured)."""

GAIN = 0.25
"""A grown size is kept when it moved documents at least 1 + GAIN x (growth - 1) times as fast as the size
before: 1.25 times for a doubling. A Solr commit per request (about 0.5 s) nearly doubles the speed with each
doubling until the batches are far bigger than the cap; a sink slow per row gives nothing."""

TRIAL = 3
"""Full batches of a grown size, or of the size before it at a check, timed to decide whether it stays."""

WINDOW = 7
"""Latest full batches of the current size whose timing gives its speed."""

REPROBE = 50
"""Batches after a growth that did not pay before the sizer may try that size again."""

RECHECK = 50
"""Batches a grown size is kept before it is checked against the size before again."""

_Interval = tuple[int, float]
"""Documents of a full batch and the seconds since the hand-over before it."""


def _gain_needed(grown: int, before: int) -> float:
    return 1 + GAIN * (grown / before - 1)


def _pace(interval: _Interval) -> float:
    """Seconds per document of one timed batch."""
    changes, seconds = interval
    return seconds / changes


def _paid(grown: list[_Interval], before: list[_Interval], needed: float) -> bool:
    """Whether the timed batches of a grown size moved documents `needed` times as fast as those of the size
    before, and clearly so: the two sets do not overlap (the slowest grown batch beat the median of the size
    before, and the fastest batch of the size before did not reach the grown size's median). A sink that
    costs per request (a Solr commit) passes at once; hand-over gaps scattered by the machine's CPU rarely
    do, where medians alone are fooled in one trial of five (measured gaps of a 1,000,000-document run)."""
    grown_pace, before_pace = statistics.median(map(_pace, grown)), statistics.median(map(_pace, before))
    return (before_pace >= grown_pace * needed and max(map(_pace, grown)) < before_pace
            and min(map(_pace, before)) > grown_pace)


class BatchSizer:
    """The document count at which the next batch is due, between `base` and `cap`."""

    def __init__(self, base: int, cap: int, max_bytes: int) -> None:
        if not 1 <= base <= cap or max_bytes < 1:
            raise ValueError("need 1 <= base <= cap and max_bytes >= 1")
        self._base = base
        self._cap = cap
        self._max_bytes = max_bytes
        self._size = base
        self._last: _Interval | None = None
        """The documents and time of the previous hand-over."""
        self._timed: list[_Interval] = []
        """The latest WINDOW timed full batches at the current size."""
        self._below: list[int] = []
        """The kept sizes this one grew from, the latest last: where a check steps back to."""
        self._trial: tuple[int, list[_Interval]] | None = None
        """While a grown size is on trial: the size before and its timed batches."""
        self._check: tuple[int, list[_Interval]] | None = None
        """While the size before a kept one is timed again: the kept size and its timed batches."""
        self._kept = 0
        """Batches since the current grown size was kept or last checked."""
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
            self._timed = [*self._timed, (changes, now - previous[1])][-WINDOW:]
        if self._ceiling <= self._cap:
            self._since_ceiling += 1
            if self._since_ceiling >= REPROBE:
                self._ceiling = self._cap + 1
        if caught_up:
            self._resize(self._base)
            self._below, self._trial, self._check = [], None, None
            return self._size
        if self._trial is not None or self._check is not None:
            if len(self._timed) < TRIAL or not self._decide():
                return self._size
        if self._below:
            self._kept += 1
            if self._kept >= RECHECK and len(self._timed) >= TRIAL:
                self._check = (self._size, self._timed)
                self._resize(self._below.pop())
                return self._size
        if sink_busy and write_seconds >= SLOW_WRITE and changes >= self._size and len(self._timed) >= TRIAL:
            fits = self._max_bytes // max(1, nbytes // max(1, changes))
            grown = max(self._base, min(self._cap, 2 * self._size, fits))
            if self._size < grown < self._ceiling:
                self._trial = (self._size, self._timed)
                self._resize(grown)
        return self._size

    def _decide(self) -> bool:
        """End a trial or a check, both timed: keep the grown size only where it paid. True when a trial
        passed (the size may grow again at once)."""
        if self._trial is not None:
            before, before_timed = self._trial
            self._trial = None
            if not _paid(self._timed, before_timed, _gain_needed(self._size, before)):
                self._fail(self._size)
                self._resize(before)
                return False
            self._below.append(before)
            self._kept = 0
            return True
        if self._check is not None:
            grown, grown_timed = self._check
            self._check = None
            if not _paid(grown_timed, self._timed, _gain_needed(grown, self._size)):
                self._fail(grown)
            else:
                self._below.append(self._size)
                self._resize(grown)
                self._timed, self._kept = grown_timed, 0
        return False

    def _fail(self, size: int) -> None:
        self._ceiling, self._since_ceiling = size, 0

    def _resize(self, size: int) -> None:
        if size != self._size:
            self._size = size
            self._timed = []
