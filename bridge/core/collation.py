"""CouchDB's collation of JSON values, for a selector's comparisons (pure).

null < false < true < numbers < strings < arrays < objects. Strings compare by code point, not by ICU's
Unicode Collation Algorithm as CouchDB's views do ("B" < "a" here, "a" < "B" there); CouchDB itself
compares `_id` by raw bytes, which is code point order, so `_id` ranges agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["collate", "type_name", "ORDER", "TYPE_NAMES"]

TYPE_NAMES = ("null", "boolean", "number", "string", "array", "object")
"""The names `$type` accepts."""


def _rank(value: object) -> int:
    if value is None:
        return 0
    if value is False:
        return 1
    if value is True:
        return 2
    if isinstance(value, (int, float)):
        return 3
    if isinstance(value, str):
        return 4
    if isinstance(value, (list, tuple)):
        return 5
    if isinstance(value, Mapping):
        return 6
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def collate(a: Any, b: Any) -> int:
    """-1, 0 or 1 as `a` sorts before, with or after `b`; 1 and 1.0 are equal, true and 1 are not."""
    rank_a, rank_b = _rank(a), _rank(b)
    if rank_a != rank_b:
        return -1 if rank_a < rank_b else 1
    if rank_a in (3, 4):
        return int(a > b) - int(a < b)
    if rank_a == 6:
        a, b = list(a.items()), list(b.items())  # objects compare key, value, key, value, ... in order
    if rank_a in (5, 6):
        for item_a, item_b in zip(a, b, strict=False):
            if rank_a == 6:
                order = collate(item_a[0], item_b[0]) or collate(item_a[1], item_b[1])
            else:
                order = collate(item_a, item_b)
            if order:
                return order
        return (len(a) > len(b)) - (len(a) < len(b))
    return 0


def type_name(value: object) -> str:
    """The `$type` name of a JSON value."""
    return ("null", "boolean", "boolean", "number", "string", "array", "object")[_rank(value)]


ORDER: dict[str, Callable[[int], bool]] = {  # each comparison operator's test of collate()'s result
    "$eq": lambda order: order == 0,
    "$ne": lambda order: order != 0,
    "$lt": lambda order: order < 0,
    "$lte": lambda order: order <= 0,
    "$gt": lambda order: order > 0,
    "$gte": lambda order: order >= 0,
}
