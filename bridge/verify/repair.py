"""`bridge repair`: makes the dataset equal to the source for the differences a verify found.

Missing and stale rows are upserted from each document as it is now; extra rows the bridge wrote are
deleted; rows it never wrote are listed, and deleted only when asked. The record is updated for every row
written or deleted, so the next run does not send them again; the checkpoint's seq is never moved.

Beside a running bridge (the periodic repair inside `bridge run`), a document may change between being
read here and being written: after writing, each document is read again and written once more when its
revision moved, so the row never ends older than a change the feed has already delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.core.planning import row_hash
from bridge.errors import MappingError
from bridge.model import Change, Delete, Sent, Upsert
from bridge.verify.compare import EXTRA_OWNED, EXTRA_UNOWNED, MISSING, STALE
from bridge.verify.verify import Verifier

__all__ = ["RepairOutcome", "repair"]

logger = logging.getLogger(__name__)

_REWRITES = 3  # times a document that keeps changing under the repair is written again


@dataclass
class RepairOutcome:
    """What a repair did (or, dry, would do)."""

    dry_run: bool
    upserted: list[str] = field(default_factory=list)
    """External_ids written from their documents (missing and stale rows)."""
    deleted: list[str] = field(default_factory=list)
    """Extra rows deleted (the bridge's, and with --delete-unowned the others)."""
    unowned_kept: list[str] = field(default_factory=list)
    """Rows the bridge never wrote, left in place (delete them with --delete-unowned)."""
    refused: list[dict[str, Any]] = field(default_factory=list)
    """Operations PANDA refused, with its reason."""
    skipped: list[str] = field(default_factory=list)
    """Differences that resolved themselves before they were repaired (the document changed or went)."""

    @property
    def complete(self) -> bool:
        """True when nothing is left different: no unowned row kept, nothing refused, not a dry run."""
        return not (self.dry_run or self.unowned_kept or self.refused)

    def as_json(self, limit: int) -> dict[str, Any]:
        def part(items: list[Any]) -> dict[str, Any]:
            return {"count": len(items), "examples": items[:limit]}

        return {"dry_run": self.dry_run, "upserted": part(self.upserted), "deleted": part(self.deleted),
                "unowned_kept": part(self.unowned_kept), "refused": part(self.refused),
                "skipped": part(self.skipped), "complete": self.complete}


def repair(verifier: Verifier, *, delete_unowned: bool, dry_run: bool) -> RepairOutcome:
    """Repair what `verifier` (after run) found; the record is updated only when a state file exists."""
    outcome = RepairOutcome(dry_run)
    for chunk in verifier.differences((MISSING, STALE)):
        _rewrite(verifier, [(eid, doc_id) for eid, _kind, doc_id, _h in chunk if doc_id], outcome)
    for chunk in verifier.differences((EXTRA_OWNED, EXTRA_UNOWNED)):
        deletes = []
        for eid, kind, doc_id, _hash in chunk:
            if kind == EXTRA_UNOWNED and not delete_unowned:
                outcome.unowned_kept.append(eid)
            else:
                deletes.append(Delete(eid, doc_id or ""))
        _delete(verifier, deletes, outcome)
    logger.info("repair%s: %d upserted, %d deleted, %d unowned kept, %d refused, %d resolved by themselves",
                " (dry run)" if dry_run else "", len(outcome.upserted), len(outcome.deleted),
                len(outcome.unowned_kept), len(outcome.refused), len(outcome.skipped))
    return outcome


def _rewrite(verifier: Verifier, wanted: list[tuple[str, str]], outcome: RepairOutcome) -> None:
    """Upsert each (external_id, doc_id) from the document as it is now; write again while it moves."""
    docs = verifier.couch.get_docs([doc_id for _eid, doc_id in wanted])
    for attempt in range(_REWRITES):
        first = attempt == 0
        upserts = _upserts(verifier, wanted, docs, outcome if first else RepairOutcome(outcome.dry_run))
        if not upserts or outcome.dry_run:
            outcome.upserted += [op.external_id for op in upserts]
            return
        refused = {str(r.external_id): r for r in verifier.sink.upsert(upserts)}
        outcome.refused += [{"external_id": eid, "reason": r.reason} for eid, r in refused.items()]
        written = [op for op in upserts if op.external_id not in refused]
        _record(verifier, {op.doc_id: Sent(op.external_id, row_hash(op.data)) for op in written})
        if first:
            outcome.upserted += [op.external_id for op in written]
        again = verifier.couch.get_docs([op.doc_id for op in written])
        moved = [(op.external_id, op.doc_id) for op in written
                 if _rev(again.get(op.doc_id)) != _rev(docs.get(op.doc_id))]
        if not moved:
            return
        wanted, docs = moved, again


def _upserts(verifier: Verifier, wanted: list[tuple[str, str]], docs: Mapping[str, Mapping[str, Any] | None],
             outcome: RepairOutcome) -> list[Upsert]:
    upserts = []
    for eid, doc_id in wanted:
        doc = docs.get(doc_id)
        if doc is None or not verifier.filter.accepts(doc_id, doc):
            outcome.skipped.append(eid)  # deleted or filtered out since: the feed delivers that
            continue
        try:
            external_id = verifier.mapper.external_id(Change(seq=None, doc_id=doc_id, deleted=False, doc=doc))
            row = verifier.mapper.row(doc)
        except MappingError:
            outcome.skipped.append(eid)
            continue
        if external_id != eid:
            outcome.skipped.append(eid)  # its external_id changed since: the feed delivers that
            continue
        upserts.append(Upsert(eid, row, doc_id))
    return upserts


def _delete(verifier: Verifier, deletes: list[Delete], outcome: RepairOutcome) -> None:
    if not deletes:
        return
    if outcome.dry_run:
        outcome.deleted += [op.external_id for op in deletes]
        return
    refused = {str(r.external_id): r for r in verifier.sink.delete(deletes)}
    outcome.refused += [{"external_id": eid, "reason": r.reason} for eid, r in refused.items()]
    done = [op.external_id for op in deletes if op.external_id not in refused]
    outcome.deleted += done
    if verifier.store is not None and done:
        owners = verifier.store.owners(done)
        _record(verifier, {doc_id: None for doc_id in owners.values()})


def _record(verifier: Verifier, records: Mapping[str, Sent | None]) -> None:
    """Update the record (never the seq) when there is a claimed state file."""
    store = verifier.store
    if store is None or not records or store.load() is None:
        return
    store.put_records(records)


def _rev(doc: Mapping[str, Any] | None) -> Any:
    return None if doc is None else doc.get("_rev")
