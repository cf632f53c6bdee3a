"""`bridge checkpoint rebuild`: a lost state file's record of sent rows, rebuilt from PANDA's rows.

Each row becomes a record: its document id decoded from the external_id where external_ids are encoded
document ids (external_id.py is reversible), else taken from the source document that maps to it now; its
digest computed from the cells PANDA holds. The seq starts from 0, so the next run reads the whole feed and
sends only what differs. What cannot be rebuilt: the seq (the replay reads everything once), which rows the
bridge wrote rather than another tool (every decodable row is taken as the bridge's), the pending notes of
a crashed batch (the replay sends any such row again), and rows whose document is gone when external_ids
come from fields (no document says which one it was: they stay out of the record, and the record is
marked incomplete so that tombstones still send deletes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError
from bridge.model import Sent
from bridge.state.checkpoint import StateStore
from bridge.verify.verify import Verifier

__all__ = ["RebuildOutcome", "rebuild"]

logger = logging.getLogger(__name__)

_EXAMPLES = 100


@dataclass
class RebuildOutcome:
    """What the rebuilt record holds."""

    rows: int = 0
    """Distinct rows PANDA listed."""
    recorded: int = 0
    """Rows given a record."""
    unattributed: int = 0
    """Rows no document id could be found for (left out of the record)."""
    examples: list[str] = field(default_factory=list)
    """The first of those external_ids."""

    def as_json(self, limit: int) -> dict[str, Any]:
        return {"rows": self.rows, "recorded": self.recorded,
                "unattributed": {"count": self.unattributed, "examples": self.examples[:limit]},
                "complete": not self.unattributed}


def rebuild(verifier: Verifier) -> RebuildOutcome:
    """Write a new record into the pipeline's state file from PANDA's rows; the seq is left unset (from 0).

    Refuses (ConfigError) when the state file already holds a checkpoint: `bridge checkpoint reset` first.
    A rebuild cut short leaves a record marked incomplete, which the next run treats as such (safe).
    """
    settings = verifier.settings
    store = verifier.store or StateStore(Path(settings.checkpoint.path))
    verifier.store = store
    if store.load() is not None:
        raise ConfigError(f"the state file {store.path} already holds a checkpoint; rebuild only replaces a lost "
                          "one: run `bridge checkpoint reset` first (or move the file away)")
    verifier.sink.ensure_dataset(settings.mapping.columns, create=False)
    if not verifier.mapper.uses_doc_id:
        verifier.read_source(verifier.couch, None)  # field-derived ids: which document maps to each row
    verifier.read_panda()
    marker = verifier.couch.ensure_marker(settings.fingerprint_hash(), None)
    store.claim(settings.fingerprint(), marker=marker, complete=False)
    outcome = RebuildOutcome()
    records: dict[str, Sent | None] = {}
    for chunk in verifier.scratch.panda_rows():
        for eid, digest, doc_id in chunk:
            outcome.rows += 1
            owner = doc_id if doc_id is not None else verifier.decoded(eid)
            if owner is None:
                outcome.unattributed += 1
                if len(outcome.examples) < _EXAMPLES:
                    outcome.examples.append(eid)
                continue
            records[owner] = Sent(eid, digest)
        store.put_records(records)
        outcome.recorded += len(records)
        records.clear()
    store.mark_complete(not outcome.unattributed)
    logger.info("rebuilt the record in %s: %d of %d rows recorded, %d without a document id; the next run "
                "reads the feed from 0 and sends only what differs", store.path, outcome.recorded,
                outcome.rows, outcome.unattributed)
    return outcome
