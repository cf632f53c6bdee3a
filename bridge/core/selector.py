"""Evaluates a CouchDB Mango selector against a document, with CouchDB's semantics (pure).

The bridge evaluates selectors itself: a server-side `_selector` would hide the change that takes a
document out of the selection, PouchDB Server ignores a POSTed one, and SSE sources have no filter at all.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from bridge.errors import ConfigError

__all__ = ["Selector", "compile_selector"]

logger = logging.getLogger(__name__)

_TYPE_NAMES = ("null", "boolean", "number", "string", "array", "object")
_UNSUPPORTED = frozenset({"$text", "$where", "$geoWithin", "$geoIntersects", "$near", "$nearSphere"})


# --- CouchDB collation -------------------------------------------------------------------------------------
# null < false < true < numbers < strings < arrays < objects. Strings compare by code point, not by ICU's
# Unicode Collation Algorithm as CouchDB's views do ("B" < "a" here, "a" < "B" there); CouchDB itself
# compares `_id` by raw bytes, which is code point order, so `_id` ranges agree exactly.


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


def _collate(a: Any, b: Any) -> int:
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
                order = _collate(item_a[0], item_b[0]) or _collate(item_a[1], item_b[1])
            else:
                order = _collate(item_a, item_b)
            if order:
                return order
        return (len(a) > len(b)) - (len(a) < len(b))
    return 0


def _type_name(value: object) -> str:
    return ("null", "boolean", "boolean", "number", "string", "array", "object")[_rank(value)]


_ORDER: dict[str, Callable[[int], bool]] = {
    "$eq": lambda order: order == 0,
    "$ne": lambda order: order != 0,
    "$lt": lambda order: order < 0,
    "$lte": lambda order: order <= 0,
    "$gt": lambda order: order > 0,
    "$gte": lambda order: order >= 0,
}


# --- Evaluation tree ---------------------------------------------------------------------------------------
# Like CouchDB's normaliser, compilation binds every condition to a full field path and pushes negation down
# to the conditions (De Morgan through $and/$or). A condition is then tested only on a value that exists: a
# field missing from the document fails every condition except {"$exists": false}, even a negated one. So
# {"f": {"$ne": 1}}, {"f": {"$nin": [1]}} and {"$not": {"f": 1}} do NOT match a document without `f`
# (CouchDB's documented rule: "$ne means the specified field must exist"; MongoDB differs).


class _Absent(enum.Enum):
    MISSING = "missing"  # an object along the path lacks the key
    BAD_PATH = "bad path"  # the path runs into a scalar or past an array: fails even $exists:false


@dataclass(frozen=True, slots=True)
class _Test:
    """A condition on a value that exists: `check`, or its negation."""

    check: Callable[[Any], bool]
    negate: bool = False

    def holds(self, value: Any) -> bool:
        return self.check(value) != self.negate

    def negated(self) -> _Test | _Exists:
        return _Test(self.check, not self.negate)


@dataclass(frozen=True, slots=True)
class _Exists:
    """$exists: the one condition about absence, so negating it flips what it wants."""

    wanted: bool

    def holds(self, value: Any) -> bool:
        return self.wanted

    def negated(self) -> _Test | _Exists:
        return _Exists(not self.wanted)


@dataclass(frozen=True, slots=True)
class _Field:
    """A condition on the value at `path` in a document, array element or key; () is the value itself."""

    path: tuple[str, ...]
    test: _Test | _Exists

    def matches(self, value: Any) -> bool:
        found = _lookup(value, self.path)
        if found is _Absent.MISSING:
            return isinstance(self.test, _Exists) and not self.test.wanted
        return found is not _Absent.BAD_PATH and self.test.holds(found)

    def negated(self) -> _Node:
        return _Field(self.path, self.test.negated())


@dataclass(frozen=True, slots=True)
class _All:
    parts: tuple[_Node, ...]

    def matches(self, value: Any) -> bool:
        return all(part.matches(value) for part in self.parts)

    def negated(self) -> _Node:
        return _Any(tuple(part.negated() for part in self.parts))


@dataclass(frozen=True, slots=True)
class _Any:
    parts: tuple[_Node, ...]

    def matches(self, value: Any) -> bool:
        # CouchDB treats an empty $or (and so the negation of an empty $and) as matching everything.
        return not self.parts or any(part.matches(value) for part in self.parts)

    def negated(self) -> _Node:
        return _All(tuple(part.negated() for part in self.parts))


_Node = _Field | _All | _Any


def _lookup(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(value, Mapping):
            if part not in value:
                return _Absent.MISSING
            value = value[part]
        elif isinstance(value, list) and part.isascii() and part.isdigit() and int(part) < len(value):
            value = value[int(part)]  # CouchDB reads a numeric path part as an array index
        else:
            return _Absent.BAD_PATH
    return value


# --- Compilation -------------------------------------------------------------------------------------------


def compile_selector(selector: Mapping[str, Any]) -> Selector:
    """Validates `selector` and compiles it, so that a bad filter stops the bridge before it starts.

    The language is CouchDB's: implicit equality and implicit $and; dotted field paths ('\\.' is a literal
    dot, '\\$' a literal dollar, a numeric part indexes an array); nested objects as sub-selectors; $and,
    $or, $nor, $not; $eq, $ne, $lt, $lte, $gt, $gte in CouchDB's type order; $exists, $type, $in, $nin,
    $size, $mod, $regex, $all, $elemMatch, $allMatch, $keyMapMatch, $beginsWith. An empty selector matches
    every document. A missing field fails every condition but {"$exists": false}, negated ones included.
    Deliberate differences: strings compare by code point (not ICU); $regex uses Python's `re.search`, so
    PCRE-only syntax such as `\\Q...\\E` or `\\z` is refused here, and '.' matches a character, not a byte;
    $type names outside null/boolean/number/string/array/object are refused instead of never matching.
    Raises ConfigError naming the operator, the field and what it needs.
    """
    if not isinstance(selector, Mapping):
        raise ConfigError(f"selector: must be a JSON object, got {_show(selector)}")
    if not selector:
        return Selector(_All(()))
    return Selector(_compile_object(selector, (), nested=False))


def _compile_object(selector: Mapping[str, Any], path: tuple[str, ...], nested: bool) -> _Node:
    parts = tuple(_compile_entry(key, value, path, nested) for key, value in selector.items())
    return parts[0] if len(parts) == 1 else _All(parts)


def _compile_value(value: Any, path: tuple[str, ...], nested: bool) -> _Node:
    """A non-empty object is a sub-selector; any other value (`{}` included) means equality."""
    if isinstance(value, Mapping) and value:
        return _compile_object(value, path, nested)
    return _compile_condition("$eq", value, path, nested)


def _compile_entry(key: object, value: Any, path: tuple[str, ...], nested: bool) -> _Node:
    if not isinstance(key, str):
        raise ConfigError(f"selector: field names must be strings, got {key!r}")
    if not key.startswith("$"):
        return _compile_value(value, path + _parse_field(key), nested)
    if key in ("$and", "$or", "$nor"):
        if not isinstance(value, list):
            _fail(key, path, nested, "an array of selectors", value)
        parts = tuple(_compile_value(item, path, nested) for item in value)
        if key == "$or":
            return _Any(parts)
        return _All(parts if key == "$and" else tuple(part.negated() for part in parts))
    if key == "$not":
        if not isinstance(value, Mapping):
            _fail(key, path, nested, "a selector object", value)
        return _compile_value(value, path, nested).negated()
    return _compile_condition(key, value, path, nested)


def _compile_condition(op: str, arg: Any, path: tuple[str, ...], nested: bool) -> _Field:
    test: _Test | _Exists
    if op == "$exists":
        if not isinstance(arg, bool):
            _fail(op, path, nested, "true or false", arg)
        test = _Exists(arg)
    else:
        test = _Test(_compile_check(op, arg, path, nested))
    if not path and not nested:
        _fail(op, path, nested, "a field name", arg)
    return _Field(path, test.negated() if op == "$nin" else test)


def _compile_check(op: str, arg: Any, path: tuple[str, ...], nested: bool) -> Callable[[Any], bool]:
    """The check for a condition operator on a value that exists; `$nin` gets `$in`'s, negated."""
    if op in _ORDER:
        _check_json(op, arg, path, nested)
        order = _ORDER[op]
        return lambda value: order(_collate(value, arg))
    if op in ("$in", "$nin", "$all"):
        if not isinstance(arg, list):
            _fail(op, path, nested, "an array", arg)
        _check_json(op, arg, path, nested)
        return partial(_contains_all if op == "$all" else _is_in, tuple(arg))
    if op in ("$elemMatch", "$allMatch", "$keyMapMatch"):
        if not isinstance(arg, Mapping):
            _fail(op, path, nested, "a selector object", arg)
        return partial(_match_nested, op, _compile_value(arg, (), nested=True))
    if op == "$type":
        if arg not in _TYPE_NAMES:
            _fail(op, path, nested, "one of " + ", ".join(_TYPE_NAMES), arg)
        return lambda value: _type_name(value) == arg
    if op == "$size":
        if not _is_int(arg) or arg < 0:
            _fail(op, path, nested, "a non-negative integer", arg)
        return lambda value: isinstance(value, list) and len(value) == arg
    if op == "$mod":
        if not (isinstance(arg, list) and len(arg) == 2 and all(map(_is_int, arg)) and arg[0] != 0):
            _fail(op, path, nested, "[divisor, remainder]: integers, the divisor not 0", arg)
        return lambda value: _is_int(value) and _truncated_rem(value, arg[0]) == arg[1]
    if op in ("$regex", "$beginsWith"):
        if not isinstance(arg, str):
            _fail(op, path, nested, "a string", arg)
        if op == "$beginsWith":
            return lambda value: isinstance(value, str) and value.startswith(arg)
        try:
            pattern = re.compile(arg)
        except re.error as exc:
            where = _where(path, nested)
            raise ConfigError(f"selector: $regex on {where}: bad pattern {arg!r}: {exc}") from exc
        return lambda value: isinstance(value, str) and pattern.search(value) is not None
    if op in _UNSUPPORTED:
        raise ConfigError(f"selector: {op} is not supported when filtering locally")
    raise ConfigError(
        f"selector: unknown operator {op!r} on {_where(path, nested)}"
        " (a field name that starts with '$' is written '\\$name')"
    )


def _is_in(operands: tuple[Any, ...], value: Any) -> bool:
    """$in: an array value matches when any of its elements equals an operand."""
    values = value if isinstance(value, list) else [value]
    return any(_collate(item, operand) == 0 for item in values for operand in operands)


def _contains_all(operands: tuple[Any, ...], value: Any) -> bool:
    """$all: an array holding every operand; {"$all": [[1, 2]]} also matches exactly [1, 2]."""
    if not isinstance(value, list) or not operands:
        return False
    if all(any(_collate(item, operand) == 0 for item in value) for operand in operands):
        return True
    return len(operands) == 1 and _collate(operands[0], value) == 0


def _match_nested(op: str, selector: _Node, value: Any) -> bool:
    """$elemMatch: any element; $allMatch: every element of a non-empty array; $keyMapMatch: any key."""
    if op == "$keyMapMatch":
        return isinstance(value, Mapping) and any(selector.matches(key) for key in value)
    if not isinstance(value, list):
        return False
    if op == "$allMatch":
        return bool(value) and all(selector.matches(item) for item in value)
    return any(selector.matches(item) for item in value)


def _parse_field(name: str) -> tuple[str, ...]:
    """Splits a field name on unescaped dots; a backslash makes the next character literal."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(name)
    for char in chars:
        if char == "\\":
            current.append(next(chars, "\\"))
        elif char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    if "" in parts:
        raise ConfigError(f"selector: field name {name!r} is empty or has an empty part")
    return tuple(parts)


def _check_json(op: str, arg: Any, path: tuple[str, ...], nested: bool) -> None:
    try:
        json.dumps(arg, allow_nan=False)
    except (TypeError, ValueError):
        _fail(op, path, nested, "a JSON value", arg)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _truncated_rem(value: int, divisor: int) -> int:
    """Erlang's `rem`, as CouchDB uses: the remainder takes the dividend's sign (-5 rem 3 == -2)."""
    rem = abs(value) % abs(divisor)
    return -rem if value < 0 else rem


def _where(path: tuple[str, ...], nested: bool) -> str:
    if path:
        return f"field {'.'.join(path)!r}"
    return "the element" if nested else "the top level"


def _show(value: object) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _fail(op: str, path: tuple[str, ...], nested: bool, need: str, arg: object) -> NoReturn:
    raise ConfigError(f"selector: {op} on {_where(path, nested)} needs {need}, got {_show(arg)}")


# --- Public types ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selector:
    """A validated Mango selector; build it with `compile_selector`."""

    tree: _Node
    """The compiled conditions, negations already pushed down to the fields."""

    def matches(self, doc: Mapping[str, Any]) -> bool:
        """True when `doc`, a decoded JSON object, satisfies the selector."""
        return self.tree.matches(doc)
