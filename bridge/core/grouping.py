"""Decides when the records of acknowledged batches are written to the state file (pure).

Writing a batch's records costs the state file a transaction whose size is set by how many pages of its
indexes the records touch. With document ids in feed order that is a few pages per batch; with random ids
(CouchDB's default) nearly every batch touches every page, so one transaction per batch rewrites the whole
index each time. During a backfill the records of several batches are therefore held in memory and written
in one transaction: at most `max_records` of them, for at most `max_seconds`, and never once the feed is
caught up (a live change is written at once, as before).

Holding loses nothing. Only batches PANDA acknowledged are held; their rows' pending notes stay in the
file until their records are written, so a crash before that replays them from the saved seq.
"""

from __future__ import annotations

__all__ = ["CommitGroup"]


class CommitGroup:
    """Counts the records held since the last write and says when they are due. One per run, one thread."""

    def __init__(self, max_records: int, max_seconds: float) -> None:
        """`max_records` 0 holds nothing: every batch is written at once."""
        self.max_records = max_records
        self.max_seconds = max_seconds
        self._held = 0
        """Records held since the last write."""
        self._since: float | None = None
        """When the first commit of them was held (the caller's clock); None while none is."""

    def hold(self, records: int, *, caught_up: bool, now: float) -> bool:
        """Count a batch's `records`; True to hold its commit, False to write it now with everything held.

        Written now when the feed is caught up, when the records held would reach `max_records`, or when
        the first of them has been held for `max_seconds`.
        """
        if self._since is None:
            self._since = now
        self._held += records
        if caught_up or self._held >= self.max_records or now - self._since >= self.max_seconds:
            self.written()
            return False
        return True

    def overdue(self, now: float) -> bool:
        """True when something has been held for `max_seconds`: write it now (asked while no batch comes)."""
        return self._since is not None and now - self._since >= self.max_seconds

    def written(self) -> None:
        """Everything held was written (after `hold` said so, or by a flush the caller made on its own)."""
        self._held = 0
        self._since = None
