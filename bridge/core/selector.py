"""Evaluates a CouchDB Mango selector against a document, with CouchDB's semantics (pure).

The bridge evaluates selectors itself: a server-side `_selector` would hide the change that takes a
document out of the selection, PouchDB Server ignores a POSTed one, and SSE sources have no filter at all.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from bridge.core.collation import ORDER, TYPE_NAMES, collate, type_name
from bridge.core.selector_tree import AllOf, AnyOf, Exists, Field, Node, Test
from bridge.errors import ConfigError

__all__ = ["Selector", "compile_selector"]

logger = logging.getLogger(__name__)

_UNSUPPORTED = frozenset({"$text", "$where", "$geoWithin", "$geoIntersects", "$near", "$nearSphere"})


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
        return Selector(AllOf(()))
    return Selector(_compile_object(selector, (), nested=False))


def _compile_object(selector: Mapping[str, Any], path: tuple[str, ...], nested: bool) -> Node:
    parts = tuple(_compile_entry(key, value, path, nested) for key, value in selector.items())
    return parts[0] if len(parts) == 1 else AllOf(parts)


def _compile_value(value: Any, path: tuple[str, ...], nested: bool) -> Node:
    """A non-empty object is a sub-selector; any other value (`{}` included) means equality."""
    if isinstance(value, Mapping) and value:
        return _compile_object(value, path, nested)
    return _compile_condition("$eq", value, path, nested)


def _compile_entry(key: object, value: Any, path: tuple[str, ...], nested: bool) -> Node:
    if not isinstance(key, str):
        raise ConfigError(f"selector: field names must be strings, got {key!r}")
    if not key.startswith("$"):
        return _compile_value(value, path + _parse_field(key), nested)
    if key in ("$and", "$or", "$nor"):
        if not isinstance(value, list):
            _fail(key, path, nested, "an array of selectors", value)
        parts = tuple(_compile_value(item, path, nested) for item in value)
        if key == "$or":
            return AnyOf(parts)
        return AllOf(parts if key == "$and" else tuple(part.negated() for part in parts))
    if key == "$not":
        if not isinstance(value, Mapping):
            _fail(key, path, nested, "a selector object", value)
        return _compile_value(value, path, nested).negated()
    return _compile_condition(key, value, path, nested)


def _compile_condition(op: str, arg: Any, path: tuple[str, ...], nested: bool) -> Field:
    test: Test | Exists
    if op == "$exists":
        if not isinstance(arg, bool):
            _fail(op, path, nested, "true or false", arg)
        test = Exists(arg)
    else:
        test = Test(_compile_check(op, arg, path, nested))
    if not path and not nested:
        _fail(op, path, nested, "a field name", arg)
    return Field(path, test.negated() if op == "$nin" else test)


def _compile_check(op: str, arg: Any, path: tuple[str, ...], nested: bool) -> Callable[[Any], bool]:
    """The check for a condition operator on a value that exists; `$nin` gets `$in`'s, negated."""
    if op in ORDER:
        _check_json(op, arg, path, nested)
        order = ORDER[op]
        return lambda value: order(collate(value, arg))
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
        if arg not in TYPE_NAMES:
            _fail(op, path, nested, "one of " + ", ".join(TYPE_NAMES), arg)
        return lambda value: type_name(value) == arg
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
    return any(collate(item, operand) == 0 for item in values for operand in operands)


def _contains_all(operands: tuple[Any, ...], value: Any) -> bool:
    """$all: an array holding every operand; {"$all": [[1, 2]]} also matches exactly [1, 2]."""
    if not isinstance(value, list) or not operands:
        return False
    if all(any(collate(item, operand) == 0 for item in value) for operand in operands):
        return True
    return len(operands) == 1 and collate(operands[0], value) == 0


def _match_nested(op: str, selector: Node, value: Any) -> bool:
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


@dataclass(frozen=True, slots=True)
class Selector:
    """A validated Mango selector; build it with `compile_selector`."""

    tree: Node
    """The compiled conditions, negations already pushed down to the fields."""

    def matches(self, doc: Mapping[str, Any]) -> bool:
        """True when `doc`, a decoded JSON object, satisfies the selector."""
        return self.tree.matches(doc)
