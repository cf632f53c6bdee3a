"""Decides which documents become rows: never design documents or tombstones, then ids and a selector (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.core.selector import Selector, compile_selector
from bridge.errors import ConfigError

__all__ = ["DocFilter", "DESIGN_PREFIX", "Selector", "compile_selector"]

DESIGN_PREFIX = "_design/"
"""Design documents hold views and filters, never data: they are never rows."""


@dataclass(frozen=True, slots=True)
class DocFilter:
    """Which changes become rows: never design documents or tombstones, then the id list and the selector.

    A change that is not accepted must not leave a row behind: the planner turns it into a delete of any row
    it sent earlier for that document.
    """

    selector: Selector | None = None
    """Keep only documents the selector matches; None keeps all."""
    doc_ids: frozenset[str] | None = None
    """Keep only these document ids; None keeps all."""

    def __post_init__(self) -> None:
        if self.doc_ids is not None:
            if not isinstance(self.doc_ids, frozenset) or not all(isinstance(i, str) for i in self.doc_ids):
                raise ConfigError("doc_ids: must be a frozenset of document id strings")
            if not self.doc_ids:
                raise ConfigError("doc_ids: an empty set would accept no document; leave it unset for all")

    def accepts(self, doc_id: str, doc: Mapping[str, Any] | None) -> bool:
        """True if the document is to be a row; `doc` None, or a body with `_deleted: true`, means deleted."""
        if doc_id.startswith(DESIGN_PREFIX) or doc is None or doc.get("_deleted") is True:
            return False
        if self.doc_ids is not None and doc_id not in self.doc_ids:
            return False
        return self.selector is None or self.selector.matches(doc)
