"""One batch's way to PANDA in four steps: plan (decide), note (durable pending notes), write (sink), record.

Planning reads the record and decides with the pure `core.planning`; it writes nothing. Noting, writing
and recording are the doing, each touching one adapter: the store, the sink, then the dead-letter file
and the store. `pipeline.run` overlaps them across batches (see writes.py); `deliver` runs them in a row.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bridge.core.commits import Ready
from bridge.core.grouping import CommitGroup
from bridge.core.mapping import RowMapper
from bridge.core.planning import Accepts, Plan, candidate_external_ids, plan_batch
from bridge.model import Batch, Delete, Refusal, Sent, Seq, Upsert
from bridge.ops.events import NO_EVENTS, Events
from bridge.state.checkpoint import StateStore
from bridge.state.deadletter import DeadLetterFile

__all__ = ["Sink", "RunStats", "Planned", "Delivery"]

logger = logging.getLogger(__name__)


class Sink(Protocol):
    """Where rows go (PandaSink). Used by one thread at a time; closed by the last thread that used it."""

    def upsert(self, rows: Sequence[Upsert]) -> list[Refusal]: ...
    def delete(self, rows: Sequence[Delete]) -> list[Refusal]: ...
    def close(self) -> None: ...


@dataclass
class RunStats:
    """Counters for one run, logged on an interval and at the end."""

    received: int = 0
    upserted: int = 0
    deleted: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    batches: int = 0
    position: Seq | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Planned:
    """A batch with its plan, between planning and recording."""

    batch: Batch
    plan: Plan
    known: dict[str, Sent]
    """The records the plan was made against."""
    doc_ids: frozenset[str]
    """The batch's documents: a later batch sharing none of them may be planned before this one is recorded."""

    @property
    def writes(self) -> bool:
        """True when the sink has something to do for this batch."""
        return bool(self.plan.upserts or self.plan.deletes)


class Delivery:
    """Plans, notes, writes and records batches over one sink, state store and dead-letter file."""

    def __init__(
        self,
        sink: Sink,
        store: StateStore,
        deadletters: DeadLetterFile,
        mapper: RowMapper,
        accepts: Accepts,
        *,
        delete_unknown: bool,
        events: Events = NO_EVENTS,
        group: CommitGroup | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`group` holds the commits of a backfill's batches to write them together (None writes each)."""
        self.events = events
        """Told of every refusal and commit (the metrics)."""
        self._sink = sink
        self._store = store
        self._deadletters = deadletters
        self._mapper = mapper
        self._accepts = accepts
        self._delete_unknown = delete_unknown
        self._group = group
        self._clock = clock

    @property
    def plans_ahead(self) -> bool:
        """True when a batch may be planned before an earlier one with other documents is recorded.

        Only when external_ids are document ids: then a plan never misses a record (or an owner) that an
        earlier batch's write is about to change.
        """
        return self._mapper.uses_doc_id

    def deliver(self, batch: Batch, stats: RunStats) -> None:
        """Make PANDA hold the batch's rows, then commit its position with the record of what was sent."""
        planned = self.plan(batch)
        self.note(planned)
        refused = self.write(planned) if planned.writes else []
        self.record(Ready(planned, batch.position, tuple(refused)), stats)

    def plan(self, batch: Batch) -> Planned:
        """Decide the batch's operations against the record (reads the store, writes nothing)."""
        changes = batch.changes
        doc_ids = [change.doc_id for change in changes]
        known = self._store.lookup(doc_ids) if changes else {}
        unsure = self._store.pending(doc_ids) if changes else {}
        owners = None
        if changes and not self._mapper.uses_doc_id:
            owners = self._store.owners(candidate_external_ids(changes, self._mapper))
        plan = plan_batch(changes, self._mapper, self._accepts, known, owners, delete_unknown=self._delete_unknown,
                          unsure=unsure)
        return Planned(batch, plan, known, frozenset(doc_ids))

    def note(self, planned: Planned) -> None:
        """Durably note the rows the write is about to change, before it is sent (store only).

        A crash after PANDA's answer but before the commit must not let the replay take these rows as
        unchanged or forget a row that was written (StateStore.pending).
        """
        plan = planned.plan
        ops: list[Upsert | Delete] = [*plan.deletes, *plan.upserts]
        self._store.intend([(op.doc_id, op.external_id) for op in ops])

    def write(self, planned: Planned) -> list[Refusal]:
        """Send a planned batch to the sink; returns what it refused. Touches only the sink."""
        plan = planned.plan
        refused = self._sink.delete(plan.deletes) if plan.deletes else []
        refused += self._sink.upsert(plan.upserts) if plan.upserts else []
        return refused

    def refuse(self, refusals: Sequence[Refusal]) -> int:
        """Write refusals to the dead-letter file (durably); returns how many."""
        for refusal in refusals:
            logger.error("dead-lettered %r at seq %s: %s", refusal.doc_id, refusal.seq, refusal.reason)
        dead = self._deadletters.append(refusals)
        if dead:
            self.events.dead_lettered(dead)
        return dead

    def record(self, ready: Ready[Planned], stats: RunStats) -> None:
        """Dead-letter what was refused, then commit the batch's records and position (dead-letter file, store)."""
        batch, plan, known = ready.batch.batch, ready.batch.plan, ready.batch.known
        changes = batch.changes
        records: dict[str, Sent | None] = dict(plan.on_success)
        refusals = list(plan.refusals)
        for refusal in ready.refused:
            doc_id = refusal.doc_id
            records[doc_id] = plan.on_reject.get(doc_id, known.get(doc_id))
            doc = next((c.doc for c in changes if c.doc_id == doc_id), None)
            refusals.append(dataclasses.replace(refusal, doc=doc))
        dead = self.refuse(refusals)
        group = self._group
        hold = group is not None and group.hold(len(records), caught_up=batch.caught_up, now=self._clock())
        self._store.commit(records, ready.position, hold=hold)
        refused_upserts = sum(refusal.row is not None for refusal in ready.refused)
        upserted = len(plan.upserts) - refused_upserts
        deleted = len(plan.deletes) - (len(ready.refused) - refused_upserts)
        stats.batches += 1
        stats.received += batch.received
        stats.upserted += upserted
        stats.deleted += deleted
        stats.unchanged += plan.unchanged
        self.events.committed(batch.received, upserted, deleted, plan.unchanged)
        stats.dead_lettered += dead
        if ready.position is not None:
            stats.position = ready.position
        if changes or dead:
            logger.info(
                "batch %s: %d changes, %d upserts, %d deletes, %d unchanged, %d dead-lettered; seq %s%s",
                "acknowledged" if hold else "committed", len(changes), len(plan.upserts), len(plan.deletes),
                plan.unchanged, dead, ready.position, " (saved with the next checkpoint write)" if hold else "",
                extra={"seq": str(ready.position) if ready.position is not None else None},
            )

    def flush(self, *, overdue_only: bool = False) -> None:
        """Write the held commits to the state file (with `overdue_only`, only once held for long enough)."""
        group = self._group
        if group is None or (overdue_only and not group.overdue(self._clock())):
            return
        written = self._store.flush()
        group.written()
        if written is not None:
            documents, seq = written
            logger.info("checkpoint saved: seq %s, with the records of %d documents", seq, documents,
                        extra={"seq": str(seq) if seq is not None else None})

    def close(self) -> None:
        """Close the sink: by the thread that wrote last (the writer thread, in a run)."""
        self._sink.close()
