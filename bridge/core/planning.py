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
from bridge.model import Change, Delete, Refusal, Row, Sent, Upsert

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
    upserts: dict[str, Upsert] = {}
    deletes: dict[str, Delete] = {}
    refusals: list[Refusal] = []
    blocked: list[str] = []
    on_success: dict[str, Sent | None] = {}
    on_reject: dict[str, Sent | None] = {}
    claimed: dict[str, str | None] = dict.fromkeys(released)
    unchanged = 0

    def owner_of(external_id: str) -> str | None:
        if external_id in claimed:
            return claimed[external_id]
        return owners.get(external_id) if owners is not None else None

    def delete_doubtful(change: Change, doubtful: Collection[str], keep: set[str]) -> None:
        """Delete rows a crashed run may have left for this document, unless kept or now another's."""
        for external_id in doubtful:
            owner = owner_of(external_id)
            if external_id in keep or (owner is not None and owner != change.doc_id):
                continue
            deletes[external_id] = Delete(external_id, change.doc_id, change.seq)
            claimed[external_id] = None

    for change in changes:
        prev = known.get(change.doc_id)
        doubtful = unsure.get(change.doc_id, ())
        live = not change.deleted and change.doc is not None and accepts(change.doc_id, change.doc)
        if not live:
            if prev is not None:
                deletes[prev.external_id] = Delete(prev.external_id, change.doc_id, change.seq)
                on_success[change.doc_id] = None
                claimed[prev.external_id] = None
            elif delete_unknown and mapper.uses_doc_id:
                external_id = mapper.external_id(change)
                deletes[external_id] = Delete(external_id, change.doc_id, change.seq)
                on_success[change.doc_id] = None
            if doubtful:
                delete_doubtful(change, doubtful, set())
                on_success[change.doc_id] = None
            continue
        assert change.doc is not None
        try:
            external_id = mapper.external_id(change)
            row = mapper.row(change.doc)
        except MappingError as exc:
            refusals.append(Refusal(change.doc_id, change.seq, str(exc), doc=change.doc))
            continue
        owner = owner_of(external_id)
        if owner is not None and owner != change.doc_id:
            reason = f"external_id {external_id!r} already belongs to document {owner!r}"
            refusals.append(Refusal(change.doc_id, change.seq, reason, external_id, row, doc=change.doc))
            blocked.append(change.doc_id)
            continue
        digest = row_hash(row)
        if doubtful:
            delete_doubtful(change, doubtful, {external_id} | ({prev.external_id} if prev is not None else set()))
        if (prev is not None and prev.external_id == external_id and prev.row_hash == digest
                and external_id not in doubtful):
            unchanged += 1
            if doubtful:
                on_success[change.doc_id] = prev  # the outcome is known again: clears the pending notes
            continue
        if prev is not None and prev.external_id != external_id:
            deletes[prev.external_id] = Delete(prev.external_id, change.doc_id, change.seq)
            claimed[prev.external_id] = None
            on_reject[change.doc_id] = None
        else:
            on_reject[change.doc_id] = prev
        upserts[external_id] = Upsert(external_id, row, change.doc_id, change.seq)
        on_success[change.doc_id] = Sent(external_id, digest)
        claimed[external_id] = change.doc_id

    for external_id in upserts:
        deletes.pop(external_id, None)
    plan = Plan(
        upserts=tuple(upserts.values()),
        deletes=tuple(deletes.values()),
        refusals=tuple(refusals),
        on_success=on_success,
        on_reject=on_reject,
        unchanged=unchanged,
    )
    return plan, blocked
