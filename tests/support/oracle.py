"""The rows PANDA must hold, worked out independently of the bridge's code (for end-to-end tests).

A second, deliberately plain implementation of the documented rules, written from README/the module
docstrings rather than from bridge/core: if the bridge's encoding or cell rules break, the end-to-end
tests disagree with this file instead of agreeing with the bug. It imports nothing from `bridge`.

    external_id: a document id of ASCII letters, digits and '-', not starting with '-' and not exactly
                 AND, OR or NOT, is kept; any other id becomes '_' followed by the id with each character
                 other than an ASCII letter, digit or '-' written as '_<code point in lower hex>_'.
    cell:        missing or null -> null; a string as it is; true/false -> "true"/"false"; an integer
                 -> its digits; a float -> Python's shortest round-trip text; a list or an object -> compact
                 JSON, keys in document order, non-ASCII kept.
    field path:  a top-level key equal to the whole path wins; otherwise each '.'-separated part is a key.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["expected_id", "expected_cell", "field", "expected_rows"]

_PLAIN = set(string.ascii_letters + string.digits + "-")
_ABSENT = object()


def expected_id(doc_id: str) -> str:
    """The external_id the README's encoding gives `doc_id`."""
    plain = doc_id != "" and all(c in _PLAIN for c in doc_id) and doc_id[0] != "-"
    if plain and doc_id not in {"AND", "OR", "NOT"}:
        return doc_id
    out = ["_"]
    for c in doc_id:
        out.append(c if c in _PLAIN else "_" + format(ord(c), "x") + "_")
    return "".join(out)


def field(doc: Mapping[str, Any], path: str) -> Any:
    """The value at `path`, or _ABSENT."""
    if path in doc:
        return doc[path]
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def expected_cell(value: Any) -> str | None:
    """The PANDA cell the README's table gives a document value."""
    if value is _ABSENT or value is None:
        return None
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return "%d" % value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def expected_rows(docs: Mapping[str, Mapping[str, Any]], paths: Sequence[str],
                  prefix: str = "") -> dict[str, list[str | None]]:
    """external_id -> cells for these live documents; design documents are not data."""
    return {prefix + expected_id(doc_id): [expected_cell(field(doc, path)) for path in paths]
            for doc_id, doc in docs.items() if not doc_id.startswith("_design/")}
