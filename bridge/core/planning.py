"""Decides which upserts and deletes a batch needs, given what PANDA last acknowledged (pure).

Rules, in feed order, one change per document:
- a tombstone, or a document the filter no longer accepts, deletes the row last sent for it;
  a document never sent needs no delete (unless the record is incomplete, see `delete_unknown`);
- a document whose row and external_id equal what was last sent sends nothing (replays cost PANDA nothing);
- a document whose external_id changed deletes its old row and upserts the new one;
- an external_id already owned by another document is refused, never overwritten;
- a document that cannot be mapped is refused with the reason (it goes to the dead-letter file);
- rows a crashed run may have changed unrecorded (`unsure`) are never taken as unchanged: the document's
  current row is sent again and any other of them it no longer owns is deleted.
Deletes are applied before upserts, and a delete of an external_id upserted in the same batch is dropped.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bridge.core.mapping import RowMapper
from bridge.errors import MappingError
from bridge.model import Change, Delete, Refusal, Row, Sent, Upsert, build

__all__ = ["Accepts", "Plan", "plan_batch", "row_hash", "candidate_external_ids"]

Accepts = Callable[[str, Mapping[str, Any] | None], bool]


@dataclass(frozen=True)
class Plan:
    """What to send for one batch, and what to record once PANDA acknowledged it."""

    upserts: tuple[Upsert, ...] = ()
    deletes: tuple[Delete, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    on_success: dict[str, Sent | None] = field(default_factory=dict)
    """Per document, the record to save once its operations are acknowledged (None: it has no row)."""
    on_reject: dict[str, Sent | None] = field(default_factory=dict)
    """Per upserted document, the record to save if PANDA refuses the upsert."""
    unchanged: int = 0
    """Changes whose row PANDA already holds."""


_SIGNED_64 = struct.Struct(">q")


def row_hash(row: Row) -> int:
    """A 64-bit digest of a row's cells, as a signed integer (what SQLite stores natively)."""
    digest: int = _SIGNED_64.unpack(hashlib.blake2b(orjson.dumps(row), digest_size=8).digest())[0]
    return digest


def candidate_external_ids(changes: Iterable[Change], mapper: RowMapper) -> list[str]:
    """The external_ids the live documents of a batch would take (for looking up their owners)."""
    found = []
    for change in changes:
        if change.deleted or change.doc is None:
            continue
        try:
            found.append(mapper.external_id(change))
        except MappingError:
            continue
    return found


def plan_batch(
    changes: Sequence[Change],
    mapper: RowMapper,
    accepts: Accepts,
    known: Mapping[str, Sent],
    owners: Mapping[str, str] | None = None,
    *,
    delete_unknown: bool = False,
    unsure: Mapping[str, Collection[str]] | None = None,
) -> Plan:
    """Plan one batch.

    `known` holds what was last acknowledged for the batch's documents; `owners` maps external_ids to the
    documents that own them (None when external_ids are encoded document ids, which cannot collide).
    With `delete_unknown`, a tombstone of a document the record does not know still sends a delete, for
    datasets that held rows before the record began. `unsure` maps documents to external_ids whose PANDA
    row may differ from the record (a run stopped between sending and committing, see StateStore.pending).

    External_ids that documents of the batch move away from are free for the others in the same batch (two
    documents may swap codes), unless the move is refused: then the plan is made again without freeing it.
    """
    released = _released(changes, mapper, accepts, known)
    while True:
        plan, blocked = _plan(changes, mapper, accepts, known, owners, delete_unknown, unsure or {}, released)
        kept = {known[doc_id].external_id for doc_id in blocked if doc_id in known} & released
        if not kept:
            return plan
        released -= kept


def _released(changes: Sequence[Change], mapper: RowMapper, accepts: Accepts, known: Mapping[str, Sent]) -> set[str]:
    """External_ids the batch's documents leave: deleted, filtered out, or moved to another external_id."""
    released = set()
    for change in changes:
        prev = known.get(change.doc_id)
        if prev is None:
            continue
        if change.deleted or change.doc is None or not accepts(change.doc_id, change.doc):
            released.add(prev.external_id)
            continue
        try:
            if mapper.external_id(change) != prev.external_id:
                released.add(prev.external_id)
        except MappingError:
            continue  # the document keeps its old row while it cannot be mapped
    return released


def _plan(
    changes: Sequence[Change],
    mapper: RowMapper,
    accepts: Accepts,
    known: Mapping[str, Sent],
    owners: Mapping[str, str] | None,
    delete_unknown: bool,
    unsure: Mapping[str, Collection[str]],
    released: set[str],
) -> tuple[Plan, list[str]]:
    """One planning pass with `released` external_ids free from the start; also returns the documents
    refused because another document owns their external_id."""
    planning = _Pass(mapper, owners, released)
    for change in changes:
        prev = known.get(change.doc_id)
        doubtful = unsure.get(change.doc_id, ())
        if change.deleted or change.doc is None or not accepts(change.doc_id, change.doc):
            planning.gone(change, prev, doubtful, delete_unknown=delete_unknown)
        else:
            planning.live(change, change.doc, prev, doubtful)
    return planning.result(), planning.blocked


class _Pass:
    """The state of one planning pass: operations so far, and who claims which external_id."""

    def __init__(self, mapper: RowMapper, owners: Mapping[str, str] | None, released: set[str]) -> None:
        self._mapper = mapper
        self._owners = owners
        self._upserts: dict[str, Upsert] = {}
        self._deletes: dict[str, Delete] = {}
        self._refusals: list[Refusal] = []
        self._on_success: dict[str, Sent | None] = {}
        self._on_reject: dict[str, Sent | None] = {}
        self._claimed: dict[str, str | None] = dict.fromkeys(released)
        """External_ids taken (by the document named) or freed (None) earlier in this batch."""
        self._unchanged = 0
        self.blocked: list[str] = []
        """Documents refused because another document owns their external_id."""

    def owner_of(self, external_id: str) -> str | None:
        """The document that owns `external_id` now: as this batch left it, else as the record says."""
        if external_id in self._claimed:
            return self._claimed[external_id]
        return self._owners.get(external_id) if self._owners is not None else None

    def gone(self, change: Change, prev: Sent | None, doubtful: Collection[str], *, delete_unknown: bool) -> None:
        """A tombstone, or a document the filter no longer accepts: delete whatever row it has."""
        if prev is not None:
            self._delete(prev.external_id, change)
            self._on_success[change.doc_id] = None
        elif delete_unknown and self._mapper.uses_doc_id:
            external_id = self._mapper.external_id(change)
            self._deletes[external_id] = Delete(external_id, change.doc_id, change.seq)
            self._on_success[change.doc_id] = None
        if doubtful:
            self._delete_doubtful(change, doubtful, set())
            self._on_success[change.doc_id] = None

    def live(self, change: Change, doc: Mapping[str, Any], prev: Sent | None, doubtful: Collection[str]) -> None:
        """A document to mirror: refuse it, skip it (PANDA holds its row), or upsert it (moving its row)."""
        try:
            external_id = self._mapper.external_id(change)
            row = self._mapper.row(doc)
        except MappingError as exc:
            self._refusals.append(Refusal(change.doc_id, change.seq, str(exc), doc=doc))
            return
        owner = self.owner_of(external_id)
        if owner is not None and owner != change.doc_id:
            reason = f"external_id {external_id!r} already belongs to document {owner!r}"
            self._refusals.append(Refusal(change.doc_id, change.seq, reason, external_id, row, doc=doc))
            self.blocked.append(change.doc_id)
            return
        digest = row_hash(row)
        if doubtful:
            keep = {external_id} | ({prev.external_id} if prev is not None else set())
            self._delete_doubtful(change, doubtful, keep)
        if (prev is not None and prev.external_id == external_id and prev.row_hash == digest
                and external_id not in doubtful):
            self._unchanged += 1
            if doubtful:
                self._on_success[change.doc_id] = prev  # the outcome is known again: clears the pending notes
            return
        if prev is not None and prev.external_id != external_id:
            self._delete(prev.external_id, change)
            self._on_reject[change.doc_id] = None
        else:
            self._on_reject[change.doc_id] = prev
        self._upserts[external_id] = build(Upsert, (external_id, row, change.doc_id, change.seq))
        self._on_success[change.doc_id] = build(Sent, (external_id, digest))
        self._claimed[external_id] = change.doc_id

    def result(self) -> Plan:
        """The plan; a delete of an external_id upserted in the same batch is dropped."""
        for external_id in self._upserts:
            self._deletes.pop(external_id, None)
        return Plan(
            upserts=tuple(self._upserts.values()),
            deletes=tuple(self._deletes.values()),
            refusals=tuple(self._refusals),
            on_success=self._on_success,
            on_reject=self._on_reject,
            unchanged=self._unchanged,
        )

    def _delete(self, external_id: str, change: Change) -> None:
        """Delete a row the document leaves, freeing its external_id for the rest of the batch."""
        self._deletes[external_id] = Delete(external_id, change.doc_id, change.seq)
        self._claimed[external_id] = None

    def _delete_doubtful(self, change: Change, doubtful: Collection[str], keep: set[str]) -> None:
        """Delete rows a crashed run may have left for this document, unless kept or now another's."""
        for external_id in doubtful:
            owner = self.owner_of(external_id)
            if external_id in keep or (owner is not None and owner != change.doc_id):
                continue
            self._delete(external_id, change)
