"""How many rows the next `_changes` page asks for, so that a page stays within a byte budget (pure).

A page of 1,000 rows of 512 KB documents would be half a gigabyte, so the row limit follows the bytes:
after a page whose rows exceed the budget, the next pages ask for as many rows as the budget holds at
that page's bytes per row (at least one, so a single document larger than the budget still comes, alone);
after smaller pages the limit grows back towards `max_rows`, at most doubling per page, so one small page
after a big document does not let the next page hold a thousand big ones. Row sizes are unknown before the
first page, so it asks for FIRST_ROWS only (a first page of 1,000 rows of 512 KB would be 500 MB).
"""

from __future__ import annotations

__all__ = ["PageSizer", "FIRST_ROWS"]

FIRST_ROWS = 16
"""Rows of the first page (fewer when max_rows is lower); doubling reaches 1,000 by the seventh page."""


class PageSizer:
    """The row limit of the next page, from the size of the pages read so far."""

    def __init__(self, max_rows: int, max_bytes: int) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError("max_rows and max_bytes must be positive")
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._limit = min(max_rows, FIRST_ROWS)

    @property
    def limit(self) -> int:
        """Rows to ask for in the next page (`limit=`): 1 <= limit <= max_rows."""
        return self._limit

    def read(self, rows: int, nbytes: int) -> int:
        """Account for a page of `rows` rows and `nbytes` bytes on the wire; returns the next limit.

        An empty page says nothing about row sizes and leaves the limit as it was.
        """
        self._limit = self.after(rows, nbytes)
        return self._limit

    def after(self, rows: int, nbytes: int) -> int:
        """The limit `read(rows, nbytes)` would give, without accounting for the page."""
        if rows <= 0:
            return self._limit
        per_row = max(1, nbytes // rows)
        fits = max(1, self._max_bytes // per_row)
        return max(1, min(self._max_rows, fits, 2 * self._limit))
