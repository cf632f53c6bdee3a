"""Value types every stage shares: Raw, Seq, Change, Position, Upsert, Delete, Batch, Sent and Refusal.

Raw JSON stops at `source/decode.py`; everything that crosses a stage after that is one of these immutable
values. The ones made for every feed row (Seq, Change, Upsert, Delete, Sent) are NamedTuples: a frozen
dataclass sets each field through `object.__setattr__`, which made building them a tenth of the bridge's
CPU per row (measured: 2.0 µs against 0.7 µs for a six-field Change). Compare them only with their own
kind: as tuples, a Seq(5) also equals (5,). This module imports nothing that does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["Raw", "Seq", "Change", "Position", "Upsert", "Delete", "Batch", "Sent", "Refusal", "Cell", "Row",
           "build"]

build = tuple.__new__
"""`build(Change, (seq, doc_id, deleted, doc, rev, size))` makes the same value as `Change(...)` in a third of
the time: a NamedTuple's constructor is a Python function, this is the C one. For the places that make one
per feed row only; every field must be given, in order (no defaults, no keywords)."""

Cell = str | None
"""One PANDA cell as the bridge sends it: text, or null for a missing value (see core/mapping.py)."""

Row = tuple[Cell, ...]
"""One PANDA row's cells, in the dataset's column order."""

Raw = tuple[Any, int]
"""One feed item as the source read it (a parsed `_changes` row, an SSE event) and its approximate size in
bytes on the wire, for byte-sized batches. A plain tuple: one is made for every row on the hot path."""


class Seq(NamedTuple):
    """An opaque resume token exactly as the source gave it: never compared, sorted or parsed.

    CouchDB 2+ sends strings, CouchDB 1.x and PouchDB integers, SSE sources a text event id.
    """

    value: str | int
    """The decoded JSON value (or SSE event id), stored and sent back verbatim."""

    def as_param(self) -> str:
        """The token as text for a `since=` parameter or a `Last-Event-ID` header."""
        return self.value if isinstance(self.value, str) else str(self.value)

    def __str__(self) -> str:
        return self.as_param()


class Change(NamedTuple):
    """One row of the feed: a document that was written or deleted."""

    seq: Seq | None
    """Resume token of this row; None where the source gave none (CouchDB `seq_interval`)."""
    doc_id: str
    """The source document id, any Unicode."""
    deleted: bool
    """True for a tombstone; decided from the feed's `deleted` flag, never from the body."""
    doc: Mapping[str, Any] | None = None
    """The document body (`include_docs=true`); None for tombstones without a body."""
    rev: str | None = None
    """The winning revision, when the source names one."""
    size: int = 0
    """Approximate bytes the change took on the wire, for byte-sized batches."""


@dataclass(frozen=True, slots=True)
class Position:
    """The source reached `seq` and has handed over every change before it."""

    seq: Seq
    """A resume token that is safe to record once everything before it is acknowledged."""
    caught_up: bool = False
    """True when this is the current end of the feed (nothing was pending when it was read)."""
    pending: int | None = None
    """Changes the source said were left after this position (CouchDB's `pending`); None when it did not."""


class Upsert(NamedTuple):
    """Create or replace one PANDA row."""

    external_id: str
    """A valid PANDA external_id (see core/external_id.py)."""
    data: Row
    """The row's cells in column order."""
    doc_id: str = ""
    """The source document it came from, for logs and the dead-letter file."""
    seq: Seq | None = None
    """The seq of the change that produced it, for logs and the dead-letter file."""


class Delete(NamedTuple):
    """Remove one PANDA row; deleting a row PANDA does not have succeeds."""

    external_id: str
    """A valid PANDA external_id (see core/external_id.py)."""
    doc_id: str = ""
    """The source document it came from, for logs."""
    seq: Seq | None = None
    """The seq of the change that produced it, for logs."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes due for delivery together, at most one per document, in feed order."""

    changes: tuple[Change, ...]
    """The last change of each document seen since the previous batch."""
    position: Seq | None
    """The seq to record once every change in this and earlier batches is acknowledged."""
    caught_up: bool = False
    """True when the batch ends at the current end of the feed."""
    received: int = field(default=0)
    """How many feed rows were folded into this batch (before keeping the last per document)."""


class Sent(NamedTuple):
    """What PANDA last acknowledged for one document (the checkpoint's record, what planning compares with)."""

    external_id: str
    """The row's external_id."""
    row_hash: int
    """A 64-bit digest of the row's cells (core.planning.row_hash), to skip sending an identical row again."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A change that cannot be delivered, for a reason retrying cannot fix: it goes to the dead-letter file.

    The same value whoever refused it: decoding (a feed item that is not a change), planning (a document
    that cannot be mapped, an external_id another document owns) or the sink (PANDA refused the row).
    """

    doc_id: str
    """The source document id ("" when the feed item had none)."""
    seq: Seq | None
    """The seq of the change, when known."""
    reason: str
    """Why, in the refuser's own words (PANDA's error body for the sink)."""
    external_id: str | None = None
    """The external_id the row would have had, when it got that far."""
    row: Row | None = None
    """The refused row's cells; None for a delete, or a change that never became a row."""
    status: int | None = None
    """The HTTP status of the refusal, if any."""
    doc: Mapping[str, Any] | None = None
    """The document (or the raw feed item), so that nothing is lost."""

    @classmethod
    def of(cls, op: Upsert | Delete, reason: str, status: int | None = None) -> Refusal:
        """The refusal of one operation the sink would not apply."""
        row = op.data if isinstance(op, Upsert) else None
        return cls(op.doc_id, op.seq, reason, op.external_id, row, status)
