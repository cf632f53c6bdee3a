"""Turns a document into a PANDA row and an external_id (pure).

Cell values, as PANDA's UI, search and CSV export expect text (contract 9):

    document value          PANDA cell
    missing field, null     null
    string                  the string, unchanged
    true / false            "true" / "false"
    integer                 its digits, e.g. "42"
    float                   Python's shortest round-trip text, e.g. "3.5", "1e+20"
    list, object            compact JSON text, keys in document order, non-ASCII kept
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.config.settings import MappingSettings
from bridge.core import external_id as ids
from bridge.core.values import MISSING, lookup, to_cell
from bridge.errors import MappingError
from bridge.model import Change, Row

__all__ = ["RowMapper", "to_cell", "lookup", "MISSING"]

class RowMapper:
    """Maps documents to rows for one dataset's columns."""

    def __init__(self, settings: MappingSettings) -> None:
        self.columns: tuple[str, ...] = tuple(settings.columns)
        self._paths = settings.field_paths()
        self._plain = not any("." in path for path in self._paths)
        """True when every column reads a top-level field, so `row` can skip the dotted walk."""
        self._template = ids.compile_template(settings.external_id_template) if settings.external_id_template else None
        self._id_path = settings.external_id
        self.id_prefix = settings.external_id_prefix
        """Put before every encoded id; fixed, so the ids stay injective and keep their key space apart."""
        self.uses_doc_id = self._template is None and self._id_path == "_id"
        """True when the external_id is the encoded document id, which no two documents share."""

    def row(self, doc: Mapping[str, Any]) -> Row:
        """The document's cells in column order; every column gets a cell, so the count always matches."""
        if self._plain:
            # The common case, made cheap: top-level fields, and a string (most cells) taken as it is.
            return tuple([cell if type(cell) is str else to_cell(cell) for cell in map(doc.get, self._paths)])
        return tuple(to_cell(lookup(doc, path)) for path in self._paths)

    def external_id(self, change: Change) -> str:
        """The change's external_id, encoded so PANDA accepts and can delete it.

        Raises MappingError when it cannot be formed (the field is missing, null, a list or an object, or
        the id would be empty: an empty code names no record, and every such document would share one row).
        """
        if self.uses_doc_id:
            return self.id_prefix + ids.encode(change.doc_id)
        if change.doc is None:
            raise MappingError(f"document {change.doc_id!r} has no body to read its external_id from")
        try:
            if self._template is not None:
                raw = self._template.render(change.doc)
            else:
                raw = ids.field_value(change.doc, self._id_path)
        except MappingError as exc:
            raise MappingError(f"document {change.doc_id!r}: no external_id: {exc.message}") from None
        if not raw:
            source = f"template {self._template.pattern!r}" if self._template else f"field {self._id_path!r}"
            raise MappingError(f"document {change.doc_id!r}: no external_id: {source} gives an empty string")
        return self.id_prefix + ids.encode(raw)
