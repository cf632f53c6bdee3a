"""The kinds of difference between the source, PANDA and the record, and how one external_id is judged (pure)."""

from __future__ import annotations

from typing import Any

import orjson

from bridge.core.planning import row_hash

__all__ = ["MISSING", "STALE", "EXTRA_OWNED", "EXTRA_UNOWNED", "KINDS", "judge", "panda_row_hash"]

MISSING = "missing"
"""The source has a live, accepted document for this row; PANDA has no row."""
STALE = "stale"
"""PANDA's row differs from what the document maps to now."""
EXTRA_OWNED = "extra_owned"
"""PANDA has a row the bridge wrote, whose document is gone from the source or no longer passes the filter."""
EXTRA_UNOWNED = "extra_unowned"
"""PANDA has a row the bridge never wrote (another tool, a hand edit, a colliding dataset slug)."""
KINDS = (MISSING, STALE, EXTRA_OWNED, EXTRA_UNOWNED)


def judge(expected: int | None, found: int | None, owned: bool) -> str | None:
    """The difference for one external_id, or None when both sides agree.

    `expected` is the digest of the row the source maps to (None: the source wants no row), `found` the
    digest of PANDA's row (None: PANDA has none), `owned` whether the bridge wrote that row.
    """
    if expected is None:
        if found is None:
            return None
        return EXTRA_OWNED if owned else EXTRA_UNOWNED
    if found is None:
        return MISSING
    return None if found == expected else STALE


def panda_row_hash(data: Any) -> int:
    """The digest of a row's `data` as PANDA returns it, comparable with planning.row_hash of a mapped row.

    PANDA gives the cells back exactly as sent (contract 9), so a list of the bridge's cells hashes as the
    row it came from; anything else PANDA may hold (a string or object, contract 8) can never match one.
    """
    if isinstance(data, list):
        return row_hash(tuple(data))
    return row_hash(("\x00not a row", orjson.dumps(data).decode()))
