"""A compiled Mango selector: conditions bound to field paths, negations pushed down to them (pure).

Like CouchDB's normaliser, compilation (selector.py) binds every condition to a full field path and pushes
negation down to the conditions (De Morgan through $and/$or). A condition is then tested only on a value
that exists: a field missing from the document fails every condition except {"$exists": false}, even a
negated one. So {"f": {"$ne": 1}}, {"f": {"$nin": [1]}} and {"$not": {"f": 1}} do NOT match a document
without `f` (CouchDB's documented rule: "$ne means the specified field must exist"; MongoDB differs).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Test", "Exists", "Field", "AllOf", "AnyOf", "Node", "lookup"]


class Absent(enum.Enum):
    """Why a path has no value."""

    MISSING = "missing"  # an object along the path lacks the key
    BAD_PATH = "bad path"  # the path runs into a scalar or past an array: fails even $exists:false


@dataclass(frozen=True, slots=True)
class Test:
    """A condition on a value that exists: `check`, or its negation."""

    check: Callable[[Any], bool]
    negate: bool = False

    def holds(self, value: Any) -> bool:
        return self.check(value) != self.negate

    def negated(self) -> Test | Exists:
        return Test(self.check, not self.negate)


@dataclass(frozen=True, slots=True)
class Exists:
    """$exists: the one condition about absence, so negating it flips what it wants."""

    wanted: bool

    def holds(self, value: Any) -> bool:
        return self.wanted

    def negated(self) -> Test | Exists:
        return Exists(not self.wanted)


@dataclass(frozen=True, slots=True)
class Field:
    """A condition on the value at `path` in a document, array element or key; () is the value itself."""

    path: tuple[str, ...]
    test: Test | Exists

    def matches(self, value: Any) -> bool:
        found = lookup(value, self.path)
        if found is Absent.MISSING:
            return isinstance(self.test, Exists) and not self.test.wanted
        return found is not Absent.BAD_PATH and self.test.holds(found)

    def negated(self) -> Node:
        return Field(self.path, self.test.negated())


@dataclass(frozen=True, slots=True)
class AllOf:
    """$and: every part matches."""

    parts: tuple[Node, ...]

    def matches(self, value: Any) -> bool:
        return all(part.matches(value) for part in self.parts)

    def negated(self) -> Node:
        return AnyOf(tuple(part.negated() for part in self.parts))


@dataclass(frozen=True, slots=True)
class AnyOf:
    """$or: some part matches."""

    parts: tuple[Node, ...]

    def matches(self, value: Any) -> bool:
        # CouchDB treats an empty $or (and so the negation of an empty $and) as matching everything.
        return not self.parts or any(part.matches(value) for part in self.parts)

    def negated(self) -> Node:
        return AllOf(tuple(part.negated() for part in self.parts))


Node = Field | AllOf | AnyOf


def lookup(value: Any, path: tuple[str, ...]) -> Any:
    """The value at `path`, or an Absent saying why there is none."""
    for part in path:
        if isinstance(value, Mapping):
            if part not in value:
                return Absent.MISSING
            value = value[part]
        elif isinstance(value, list) and part.isascii() and part.isdigit() and int(part) < len(value):
            value = value[int(part)]  # CouchDB reads a numeric path part as an array index
        else:
            return Absent.BAD_PATH
    return value
