"""Turns any document id into a valid, delete-safe PANDA external_id, injectively and reversibly (pure).

    document id                                       external_id                      examples
    ASCII letters, digits and '-' only; not starting  unchanged                        user-42 -> user-42
      with '-'; not exactly AND, OR or NOT                                             and -> and
    anything else, "" included                        '_' + the id, with each          user:42 -> _user_3a_42
                                                      character other than an ASCII    Zürich -> _Z_fc_rich
                                                      letter, digit or '-' written     AND -> _AND
                                                      '_<code point in lower hex>_'    -x -> _-x, "" -> _

Why it is injective: an unchanged id never contains '_' and an escaped one always starts with it, so the two
sets are disjoint; inside an escaped id every '_' opens a hex code point that runs to the next '_', so it
decodes one way only, and `decode` accepts nothing but `encode`'s own output. Length: at most 1 + 8
characters per code point (U+10FFFF becomes `_10ffff_`). Ids rendered by `compile_template` are plain
strings: the caller passes `render`'s result to `encode`.

Reserved words: PANDA deletes through Solr's delete-by-query, read by the standard Lucene query parser,
where only the upper-case words AND, OR and NOT are operators (lower-case `and` is an ordinary term) and a
leading '-' is the prohibit operator; such ids pass PANDA's `^[\\w\\d_-]+$` check but make DELETE answer 500.
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.core.values import MISSING, lookup, to_cell
from bridge.errors import ConfigError, MappingError

__all__ = [
    "RESERVED",
    "encode",
    "decode",
    "is_valid",
    "is_unchanged",
    "IdTemplate",
    "compile_template",
    "field_value",
]

logger = logging.getLogger(__name__)

RESERVED = frozenset({"AND", "OR", "NOT"})
"""Ids that pass PANDA's bulk check but break its DELETE (Lucene operators, upper case only)."""

_KEPT = frozenset(string.ascii_letters + string.digits + "-")
_UNCHANGED = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALID = re.compile(r"[A-Za-z0-9_-]+")
_HEX = re.compile(r"[0-9a-f]{1,6}")
_ESCAPE = "_"


def is_unchanged(doc_id: str) -> bool:
    """True when `encode` keeps `doc_id`: ASCII letters, digits and '-' only, no leading '-', not reserved."""
    return _UNCHANGED.fullmatch(doc_id) is not None and doc_id not in RESERVED


def is_valid(external_id: str) -> bool:
    """True when PANDA's bulk write accepts `external_id` and its DELETE can remove the row again.

    Stricter than PANDA's own `re.match('^[\\w\\d_-]+$')`: a trailing newline is refused, and so are a leading
    '-' and the words AND, OR and NOT.
    """
    return (
        _VALID.fullmatch(external_id) is not None
        and not external_id.startswith("-")
        and external_id not in RESERVED
    )


def encode(doc_id: str) -> str:
    """The external_id for `doc_id`; total, deterministic and injective over every Python str."""
    if is_unchanged(doc_id):
        return doc_id
    return _ESCAPE + "".join(c if c in _KEPT else f"_{ord(c):x}_" for c in doc_id)


def decode(external_id: str) -> str:
    """The document id that `encode` turned into `external_id`.

    Raises ValueError for any string `encode` never produces (bad hex, upper-case hex, leading zeros, an
    escaped character that needs no escaping, or an escaped id that would have stayed unchanged).
    """
    if not external_id.startswith(_ESCAPE):
        if is_unchanged(external_id):
            return external_id
        raise ValueError(f"not an encoded external_id: {external_id!r}")
    chars: list[str] = []
    pos = 1
    while pos < len(external_id):
        char = external_id[pos]
        if char in _KEPT:
            chars.append(char)
            pos += 1
            continue
        end = external_id.find(_ESCAPE, pos + 1) if char == _ESCAPE else -1
        digits = external_id[pos + 1 : end]
        if end < 0 or _HEX.fullmatch(digits) is None or int(digits, 16) > 0x10FFFF:
            raise ValueError(f"bad escape at offset {pos} in external_id {external_id!r}")
        chars.append(chr(int(digits, 16)))
        pos = end + 1
    doc_id = "".join(chars)
    if encode(doc_id) != external_id:
        raise ValueError(f"not the canonical encoding of {doc_id!r}: {external_id!r}")
    return doc_id


def field_value(doc: Mapping[str, object], path: str) -> str:
    """The text of the scalar field `path` of `doc`, as an id template renders it.

    Lookup: an exact top-level key wins (so `_id`, or a key that itself contains dots); otherwise `path` is
    split on every '.' and each part is a key of a nested object. Strings are returned as they are, numbers
    and booleans as their JSON text (7 -> "7", 1.5 -> "1.5", True -> "true").
    Raises MappingError when the field is missing, null, an object, an array or a non-finite number.
    """
    value = lookup(doc, path)
    if value is MISSING:
        raise MappingError(f"field {path!r} is missing")
    if isinstance(value, float) and not math.isfinite(value):
        raise MappingError(f"field {path!r} is {value!r}, not a finite number")
    if isinstance(value, (str, bool, int, float)):
        text = to_cell(value)
        assert text is not None
        return text
    if value is None:
        what = "null"
    elif isinstance(value, Mapping):
        what = "an object"
    elif isinstance(value, (list, tuple)):
        what = "an array"
    else:
        what = f"a {type(value).__name__}"
    raise MappingError(f"field {path!r} is {what}, not a string, number or boolean")


@dataclass(frozen=True, slots=True)
class IdTemplate:
    """An external_id pattern such as "{type}-{number}", compiled once from the configuration.

    `render` gives the raw id; the caller passes it through `encode`. The template does not make ids unique:
    "{a}-{b}" renders a="x-y", b="z" and a="x", b="y-z" alike, so choose fields that identify a document.
    """

    pattern: str
    """The template text as configured."""
    parts: tuple[tuple[bool, str], ...]
    """(is_field, text) pairs: literal text, or a field path to look up with `field_value`."""

    @property
    def fields(self) -> tuple[str, ...]:
        """The field paths the template reads, in order."""
        return tuple(text for is_field, text in self.parts if is_field)

    def render(self, doc: Mapping[str, object]) -> str:
        """The id for `doc`. Raises MappingError naming the template and the field that is unusable."""
        try:
            return "".join(field_value(doc, text) if is_field else text for is_field, text in self.parts)
        except MappingError as exc:
            raise MappingError(f"external_id template {self.pattern!r}: {exc.message}") from None


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def compile_template(pattern: str) -> IdTemplate:
    """Parses `pattern`: `{path}` inserts a field (dotted paths allowed), `{{` and `}}` are literal braces.

    Raises ConfigError for an empty `{}`, an unmatched brace, or a pattern that names no field.
    """
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    last = 0
    for match in _PLACEHOLDER.finditer(pattern):
        literal.append(pattern[last : match.start()])
        last = match.end()
        token, at = match.group(0), match.start()
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif match.group(1) is None:
            raise ConfigError(f"external_id template {pattern!r}: unmatched {token!r} at offset {at}")
        elif not match.group(1).strip():
            raise ConfigError(f"external_id template {pattern!r}: empty field name at offset {at}")
        else:
            if "".join(literal):
                parts.append((False, "".join(literal)))
            literal = []
            parts.append((True, match.group(1)))
    literal.append(pattern[last:])
    if "".join(literal):
        parts.append((False, "".join(literal)))
    template = IdTemplate(pattern, tuple(parts))
    if not template.fields:
        raise ConfigError(f"external_id template {pattern!r} names no field: every document would get one id")
    return template
