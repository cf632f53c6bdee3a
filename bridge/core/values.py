"""JSON values read from documents by dotted path, and written as PANDA text (pure).

Shared by mapping.py (row cells) and external_id.py (ids from fields), so both read and write alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bridge.model import Cell

__all__ = ["MISSING", "lookup", "to_cell"]

MISSING: Any = object()
"""What `lookup` returns for a field the document does not have."""


def lookup(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted field path, or MISSING.

    An exact top-level key wins over a dotted walk, so a field literally named `a.b` can be read.
    """
    value = doc.get(path, MISSING)
    if value is not MISSING or "." not in path:
        return value
    current: Any = doc
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return MISSING
        current = current.get(part, MISSING)
        if current is MISSING:
            return MISSING
    return current


def to_cell(value: Any) -> Cell:
    """One document value as a PANDA cell (see the table above)."""
    if value is None or value is MISSING:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return orjson.dumps(value).decode()
