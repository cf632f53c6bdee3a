"""How many documents the next batch may gather before it is due: more while PANDA is slow (pure).

Against a real PANDA every write is a Solr commit, so while the backlog is large and the sink is the
bottleneck, fewer, bigger writes move more rows per second. Rules, applied after each batch is handed on:
- the feed was caught up: back to `base` at once, so live changes never wait behind a big batch's worth;
- the batch filled up to the current size (a backlog), the previous write was still in flight when it
  was ready (the sink is slower than the source) and that write took at least SLOW_WRITE seconds (each
  request costs PANDA a commit): double the size, up to `cap` documents and up to what fits in
  `max_bytes` at the batch's bytes per document;
- otherwise the size stays.
"""

from __future__ import annotations

__all__ = ["BatchSizer", "SLOW_WRITE"]

SLOW_WRITE = 0.1
"""Seconds a write must take before bigger batches are worth it. A faster PANDA answers ten writes a second
or more, so its rows, not its requests, decide the speed, and bigger batches would only hold more rows in
memory: against the emulator answering at once, batches grown to 20,000 took peak RSS from 51 MB to
133 MB on a 100,000-document backfill, with no gain in speed (measured)."""


class BatchSizer:
    """The document count at which the next batch is due, between `base` and `cap`."""

    def __init__(self, base: int, cap: int, max_bytes: int) -> None:
        if not 1 <= base <= cap or max_bytes < 1:
            raise ValueError("need 1 <= base <= cap and max_bytes >= 1")
        self._base = base
        self._cap = cap
        self._max_bytes = max_bytes
        self._size = base

    @property
    def size(self) -> int:
        """Documents at which the next batch is due."""
        return self._size

    def delivered(self, changes: int, nbytes: int, *, caught_up: bool, sink_busy: bool, write_seconds: float) -> int:
        """Account for a batch of `changes` documents and `nbytes` feed bytes just handed on; the next size.

        `caught_up`: the batch ended at the end of the feed. `sink_busy`: the committer had to wait for the
        sink's previous write since the last batch. `write_seconds`: how long the sink's last write took.
        """
        if caught_up:
            self._size = self._base
        elif sink_busy and write_seconds >= SLOW_WRITE and changes >= self._size:
            fits = self._max_bytes // max(1, nbytes // max(1, changes))
            self._size = max(self._base, min(self._cap, 2 * self._size, fits))
        return self._size
