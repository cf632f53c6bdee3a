"""The loop: source -> decode -> batching -> planning -> sink -> checkpoint, until told to stop.

A reader thread pulls the source's raw items; the calling thread decodes, batches, plans and commits, and a
writer thread sends one planned batch at a time to the sink. So reading the next page, planning the next batch
and committing the last one all overlap the sink's write, through bounded hand-offs that keep memory flat.
A seq is committed only after the sink acknowledged every change up to it (at least once), in feed order.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.core.batching import Batcher, BatchLimits
from bridge.core.mapping import RowMapper
from bridge.core.planning import Accepts, Plan, Refusal, candidate_external_ids, plan_batch
from bridge.errors import BridgeError, RejectedError, StopRequested
from bridge.model import Batch, Change, Delete, Position, Rejection, Seq, Upsert
from bridge.ops.events import NO_EVENTS, Events
from bridge.source.decode import ROW_SIZE_KEY
from bridge.state.checkpoint import Sent, StateStore
from bridge.state.deadletter import DeadLetterFile

__all__ = ["Source", "Sink", "Decode", "Delivery", "Planned", "RunStats", "run"]

logger = logging.getLogger(__name__)

_QUEUE_CHUNKS = 4  # chunks of up to _CHUNK items in flight between reader and committer
_CHUNK = 1000
_STATS_INTERVAL = 30.0
_GC_THRESHOLDS = (10_000, 20, 10)  # see _gc_tuned


class Source(Protocol):
    def changes(self, since: Seq | None, *, follow: bool) -> Iterator[Any]: ...
    def close(self) -> None: ...


Decode = Callable[[Any], Change | None]
"""Turns one raw source item into a Change (None: it carries no change); raises DecodeError or MappingError."""


class Sink(Protocol):
    def upsert(self, rows: Sequence[Upsert]) -> list[Rejection]: ...
    def delete(self, rows: Sequence[Delete]) -> list[Rejection]: ...


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


class Delivery:
    """Delivers one batch: plan against the record, write to the sink, dead-letter refusals, commit."""

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
    ) -> None:
        self.events = events
        """Told of every refusal and commit (the metrics)."""
        self._sink = sink
        self._store = store
        self._deadletters = deadletters
        self._mapper = mapper
        self._accepts = accepts
        self._delete_unknown = delete_unknown

    def refuse(self, refusals: Sequence[Refusal]) -> int:
        """Record refusals found before planning (undecodable rows) in the dead-letter file."""
        for refusal in refusals:
            logger.error("dead-lettered %r at seq %s: %s", refusal.doc_id, refusal.seq, refusal.reason)
        dead = self._deadletters.append(refusals)
        if dead:
            self.events.dead_lettered(dead)
        return dead

    def deliver(self, batch: Batch, stats: RunStats) -> None:
        """Make PANDA hold the batch's rows, then commit the batch's position with the record of what was sent."""
        planned = self.plan(batch)
        self.record(planned, self.write(planned), stats)

    def plan(self, batch: Batch) -> Planned:
        """Decide the batch's operations against the record, and note them as pending (store only, no sink)."""
        changes = batch.changes
        doc_ids = [change.doc_id for change in changes]
        known = self._store.lookup(doc_ids) if changes else {}
        unsure = self._store.pending(doc_ids) if changes else {}
        owners = None
        if changes and not self._mapper.uses_doc_id:
            owners = self._store.owners(candidate_external_ids(changes, self._mapper))
        plan = plan_batch(changes, self._mapper, self._accepts, known, owners, delete_unknown=self._delete_unknown,
                          unsure=unsure)
        # Noted before sending: a crash after PANDA's answer but before the commit must not let the replay
        # take these rows as unchanged or forget a row that was written.
        ops: list[Upsert | Delete] = [*plan.deletes, *plan.upserts]
        self._store.intend([(op.doc_id, op.external_id) for op in ops])
        return Planned(batch, plan, known, frozenset(doc_ids))

    def write(self, planned: Planned) -> list[Rejection]:
        """Send a planned batch to the sink; returns its refusals. Touches only the sink (see _Writes)."""
        plan = planned.plan
        rejected = self._sink.delete(plan.deletes) if plan.deletes else []
        rejected += self._sink.upsert(plan.upserts) if plan.upserts else []
        return rejected

    def record(self, planned: Planned, rejected: list[Rejection], stats: RunStats) -> None:
        """Dead-letter what was refused and commit the batch's records and position (store only)."""
        batch, plan, known = planned.batch, planned.plan, planned.known
        changes = batch.changes
        records: dict[str, Sent | None] = dict(plan.on_success)
        refusals = list(plan.refusals)
        for rejection in rejected:
            doc_id = rejection.op.doc_id
            records[doc_id] = plan.on_reject.get(doc_id, known.get(doc_id))
            row = rejection.op.data if isinstance(rejection.op, Upsert) else None
            doc = next((c.doc for c in changes if c.doc_id == doc_id), None)
            refusals.append(Refusal(doc_id, rejection.op.seq, rejection.reason, rejection.op.external_id, row,
                                    rejection.status, doc))
        dead = self.refuse(refusals)
        self._store.commit(records, batch.position)
        upserted = len(plan.upserts) - sum(isinstance(r.op, Upsert) for r in rejected)
        deleted = len(plan.deletes) - sum(isinstance(r.op, Delete) for r in rejected)
        stats.batches += 1
        stats.received += batch.received
        stats.upserted += upserted
        stats.deleted += deleted
        stats.unchanged += plan.unchanged
        self.events.committed(batch.received, upserted, deleted, plan.unchanged)
        stats.dead_lettered += dead
        if batch.position is not None:
            stats.position = batch.position
        if changes or dead:
            logger.info(
                "batch committed: %d changes, %d upserts, %d deletes, %d unchanged, %d dead-lettered; seq %s",
                len(changes), len(plan.upserts), len(plan.deletes), plan.unchanged, dead, batch.position,
                extra={"seq": str(batch.position) if batch.position is not None else None},
            )

    def independent(self, planned: Planned, batch: Batch) -> bool:
        """True when `batch` can be planned before `planned` is recorded (no document or row in common)."""
        return self._mapper.uses_doc_id and planned.doc_ids.isdisjoint(change.doc_id for change in batch.changes)


@dataclass(frozen=True)
class Planned:
    """A batch with its plan, between planning and recording."""

    batch: Batch
    plan: Plan
    known: dict[str, Sent]
    """The records the plan was made against."""
    doc_ids: frozenset[str]


class _Writes:
    """At most one batch's sink writes in flight, in a helper thread, while the caller plans the next batch.

    Recording (dead letters, commit) stays in the caller's thread, in batch order, once the write returned:
    the store and the dead-letter file are used by one thread only, and the sink by one thread at a time.
    A batch is planned ahead of the write in flight only when their documents are disjoint and external_ids
    are document ids, so the plan never misses a record that the write in flight is about to change.
    """

    def __init__(self, delivery: Delivery, stats: RunStats) -> None:
        self._delivery = delivery
        self._stats = stats
        self._current: Planned | None = None
        self._thread: threading.Thread | None = None
        self._outcome: list[Rejection] | BaseException = []

    def _write(self, planned: Planned) -> None:
        try:
            self._outcome = self._delivery.write(planned)
        except BaseException as exc:  # re-raised in the caller's thread by _join
            self._outcome = exc

    def _join(self) -> tuple[Planned, list[Rejection]] | None:
        """Wait for the write in flight; its batch and refusals, or None. Raises what the write raised."""
        planned, thread = self._current, self._thread
        if planned is None or thread is None:
            return None
        thread.join()
        self._current = self._thread = None
        outcome = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return planned, outcome

    def finish(self) -> None:
        """Wait for the write in flight and record it."""
        done = self._join()
        if done is not None:
            self._delivery.record(*done, self._stats)

    def deliver(self, batch: Batch) -> None:
        """Plan `batch`, start its write once the previous one returned, then record the previous one."""
        current = self._current
        if current is not None and (not self._delivery.independent(current, batch)):
            self.finish()
        planned = self._delivery.plan(batch)
        done = self._join()
        self._current = planned
        self._thread = threading.Thread(target=self._write, args=(planned,), name="bridge-writer", daemon=True)
        self._thread.start()
        if done is not None:
            self._delivery.record(*done, self._stats)

    def close(self, timeout: float) -> None:
        """Wait (bounded) for a write still in flight after a failure; its outcome is dropped."""
        if self._thread is not None:
            self._thread.join(timeout)


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


def _read(
    source: Source,
    since: Seq | None,
    follow: bool,
    out: queue.Queue[Any],
    stop: threading.Event,
) -> None:
    """Reader thread: pull the source's raw items and hand them over in chunks, ending with _END.

    It does nothing else, so it asks for the next page as soon as the last one is parsed: the source keeps
    working on it while the committer decodes, plans and commits (decoding here would leave CouchDB idle
    between pages for as long as the rows take to decode).
    """

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    chunk: list[Any] = []
    try:
        for raw in source.changes(since, follow=follow):
            chunk.append(raw)
            if isinstance(raw, Position) or len(chunk) >= _CHUNK:
                put(chunk)
                chunk = []
                if stop.is_set():
                    break
        if chunk:
            put(chunk)
    except StopRequested:
        pass
    except BaseException as exc:  # handed to the committer, which raises it in the main thread
        if chunk:
            put(chunk)
        put(_Failed(exc))
    finally:
        put(_END)  # unless stopped: a full queue must not hold this thread past the committer's end


def _decoded(chunk: list[Any], decode: Decode) -> tuple[list[Change | Position], list[Refusal]]:
    """A chunk's changes and positions in feed order, and a dead letter for each item that is not a change."""
    entries: list[Change | Position] = []
    refusals: list[Refusal] = []
    for raw in chunk:
        if isinstance(raw, Position):
            entries.append(raw)
            continue
        try:
            change = decode(raw)
        except RejectedError as exc:  # DecodeError, or MappingError from an event's payload
            refusals.append(_undecodable(raw, exc))
            continue
        if change is not None:
            entries.append(change)
    return entries, refusals


def _undecodable(raw: Any, exc: RejectedError) -> Refusal:
    """A dead letter for a feed item that is not a change, keeping the item itself so nothing is lost."""
    if isinstance(raw, Mapping):
        doc_id, kept = str(raw.get("id", "")), {key: value for key, value in raw.items() if key != ROW_SIZE_KEY}
    else:
        doc_id, kept = "", {"raw": repr(raw)}
    seq = exc.seq if isinstance(exc.seq, Seq) else None
    return Refusal(doc_id, seq, f"not a change: {exc}", doc=kept)


@contextmanager
def _gc_tuned() -> Iterator[None]:
    """Run with a larger young generation for the cyclic GC, restoring the thresholds after.

    Every feed row becomes several dicts and lists that live until their batch is committed. With the
    default threshold (700 allocations) a young collection runs every few rows, the rows waiting in the
    hand-off and the batch survive into the older generations, and full collections become frequent:
    about 0.3 s of CPU per 100,000 rows (measured), a tenth of the bridge's work. Rows hold no reference
    cycles, so collecting less often only delays freeing the rare cycles (memory stays flat: a run keeps a
    bounded number of batches).
    """
    saved = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


@_gc_tuned()
def run(
    source: Source,
    decode: Decode,
    delivery: Delivery,
    limits: BatchLimits,
    *,
    since: Seq | None,
    follow: bool,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> RunStats:
    """Mirror the source from `since` until caught up (follow False) or until `stop` is set.

    On stop, the batch in hand is delivered and committed (unless the sink is failing, in which case the
    checkpoint stays at the last acknowledged batch). Raises the first fatal BridgeError from either side
    after committing what was already acknowledged.
    """
    stats = RunStats()
    batcher = Batcher(limits, clock)
    handoff: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    reader = threading.Thread(target=_read, args=(source, since, follow, handoff, stop),
                              name="bridge-reader", daemon=True)
    reader.start()
    writes = _Writes(delivery, stats)
    events = delivery.events
    events.started([reader])
    caught_up = False
    last_stats = clock()
    failure: BaseException | None = None
    try:
        try:
            while not stop.is_set():
                wait = batcher.seconds_until_due()
                try:
                    item = handoff.get(timeout=min(0.2, wait) if wait is not None else 0.2)
                except queue.Empty:
                    item = None
                if item is _END:
                    break
                if isinstance(item, _Failed):
                    failure = item.error
                    break
                if item is not None:
                    entries, refusals = _decoded(item, decode)
                    positions = sum(isinstance(raw, Position) for raw in item[-1:])  # the reader ends a chunk there
                    events.read(len(item) - positions, len(entries) - positions)
                    if refusals:
                        stats.dead_lettered += delivery.refuse(refusals)
                    for entry in entries:
                        if isinstance(entry, Change):
                            batcher.add(entry)
                        else:
                            batcher.advance(entry)
                            events.position(entry.caught_up, entry.pending)
                            if entry.caught_up and not caught_up:
                                logger.info("caught up at seq %s", entry.seq, extra={"seq": str(entry.seq)})
                            caught_up = entry.caught_up
                        if batcher.due():  # inside the chunk, so no batch outgrows its limits
                            _deliver(batcher, writes)
                if batcher.due():
                    _deliver(batcher, writes)
                if handoff.empty():  # nothing to plan meanwhile: record the write in flight now
                    writes.finish()
                if clock() - last_stats >= _STATS_INTERVAL:
                    last_stats = clock()
                    _log_stats(stats)
            if failure is None or isinstance(failure, BridgeError):
                # The batch in hand was read correctly: deliver it before stopping or raising.
                _deliver(batcher, writes)
            writes.finish()
        except StopRequested:  # a stop while PANDA was failing: nothing past the last acknowledged batch is saved
            logger.warning("stopped before PANDA acknowledged the batch in hand; it will be re-read on restart")
    finally:
        stop.set()
        writes.close(timeout=5)
        source.close()
        reader.join(timeout=5)
    if failure is not None:
        raise failure
    _log_stats(stats)
    return stats


def _deliver(batcher: Batcher, writes: _Writes) -> None:
    batch = batcher.take()
    if batch is not None:
        writes.deliver(batch)


def _log_stats(stats: RunStats) -> None:
    elapsed = max(1e-9, time.monotonic() - stats.started)
    logger.info(
        "progress: %d changes read (%.0f/s), %d upserted, %d deleted, %d unchanged, %d dead-lettered, seq %s",
        stats.received, stats.received / elapsed, stats.upserted, stats.deleted, stats.unchanged,
        stats.dead_lettered, stats.position,
    )
