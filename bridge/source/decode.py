"""Turns a raw `_changes` row into a Change, or raises DecodeError (pure).

A row is `{"seq", "id", "changes": [{"rev"}], "deleted"?, "doc"?}`; unknown keys are ignored
(see couchdb-changes.md 3.4). A delete is decided from `deleted`, never from what `doc` holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from bridge.errors import DecodeError
from bridge.model import Change, Seq, build

__all__ = ["decode_row", "decode_seq", "lone_surrogate_path", "UnreadableRow"]


_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) in `value` holding a lone UTF-16 surrogate, else None.

    Python strings from a JSON escape such as `"\\ud800"` hold one; they are not Unicode text, and neither
    orjson nor PANDA accepts them.
    """
    if isinstance(value, str):
        return path or "." if _SURROGATE.search(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return where
            found = lone_surrogate_path(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _escaped(value: Any) -> Any:
    """`value` as ASCII JSON text when it holds a lone surrogate (so it can be written anywhere), else as is."""
    return json.dumps(value)[1:-1] if isinstance(value, str) and _SURROGATE.search(value) else value


class UnreadableRow(dict[str, Any]):
    """A feed row holding a lone surrogate: decode_row refuses it (so the pipeline dead-letters it), and it
    keeps the row's `seq`, its `id` and the whole `row` as ASCII JSON text, so nothing is lost."""

    reason = ""

    @classmethod
    def of(cls, row: Any, path: str) -> UnreadableRow:
        fields = row if isinstance(row, Mapping) else {}
        kept = cls(seq=_escaped(fields.get("seq")), id=_escaped(fields.get("id")), row=json.dumps(row))
        kept.reason = (f"document {kept['id']!r} holds a lone UTF-16 surrogate (such as \\ud800) at '{path}': "
                       "not Unicode text, so it cannot be sent to PANDA; the row is kept as JSON text")
        return kept


def decode_seq(value: Any) -> Seq | None:
    """A seq as the server sent it: a string or an integer kept verbatim, None for `null`.

    Raises DecodeError for any other JSON type (a float, a list, a bool).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DecodeError(f"a seq must be a string or an integer, got {value!r}")
    return Seq(value)


def decode_row(row: Any, size: int = 0) -> Change:
    """Decode one parsed row of a `_changes` response; `size` is its approximate size on the wire.

    Raises DecodeError when the row is not a JSON object with a string `id` (or holds a lone surrogate).
    """
    if type(row) is dict:
        change = _decode_plain(row, size)
        if change is not None:
            return change
    return _decode_general(row, size)


def _decode_plain(row: dict[str, Any], size: int) -> Change | None:
    """The common row (exact dict, str or int seq, str id, dict doc or none) with exact type checks only,
    which cost a fraction of the ABC checks below; None hands anything else to the general path."""
    seq = row.get("seq")
    doc_id = row.get("id")
    doc = row.get("doc")
    if (type(seq) is not str and type(seq) is not int) or type(doc_id) is not str:
        return None
    if doc is not None and type(doc) is not dict:
        return None
    changes = row.get("changes")
    first = changes[0] if type(changes) is list and changes else None
    if first is not None and type(first) is not dict:
        return None
    rev = first.get("rev") if first is not None else None
    if type(rev) is not str:
        rev = None
    return build(Change, (build(Seq, (seq,)), doc_id, row.get("deleted") is True, doc, rev, size))


def _decode_general(row: Any, size: int) -> Change:
    if isinstance(row, UnreadableRow):
        raise DecodeError(row.reason, seq=decode_seq(row.get("seq")))
    if not isinstance(row, Mapping):
        raise DecodeError(f"a change row must be a JSON object, got {type(row).__name__}")
    seq = decode_seq(row.get("seq"))
    doc_id = row.get("id")
    if not isinstance(doc_id, str):
        raise DecodeError(f"a change row needs a string id, got {doc_id!r}", seq=seq)
    doc = row.get("doc")
    if doc is not None and not isinstance(doc, Mapping):
        raise DecodeError(f"change {doc_id!r} has a doc that is not an object", seq=seq)
    rev = None
    changes = row.get("changes")
    if isinstance(changes, list) and changes and isinstance(changes[0], Mapping):
        first = changes[0].get("rev")
        rev = first if isinstance(first, str) else None
    return Change(seq=seq, doc_id=doc_id, deleted=row.get("deleted") is True, doc=doc, rev=rev, size=size)
