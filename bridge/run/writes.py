"""One long-lived writer thread per run, at most one batch's write in flight, records committed in feed order.

The calling thread (the committer) plans and notes the next batch while the writer thread sends the last
one, then records each batch that `core.commits.CommitOrder` releases. So the store and the dead-letter
file are used by the committer only, and the sink by the writer only, which closes it when it ends.
A batch is planned ahead of unrecorded ones only when their documents are disjoint and external_ids are
document ids (`Delivery.plans_ahead`), so a plan never misses a record that a write in flight will change.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from bridge.core.commits import CommitOrder, Ready
from bridge.model import Batch, Refusal
from bridge.ops import logcontext
from bridge.run.delivery import Delivery, Planned, RunStats

__all__ = ["Writes"]

logger = logging.getLogger(__name__)

_END = None
"""Put in the writer's inbox to end its thread."""

_Outcome = tuple[int, list[Refusal] | BaseException, float]
"""A write's ticket, its refusals (or what it raised), and the seconds it took."""


class _WriterThread:
    """Sends planned batches to the sink one at a time, in the order given, until told to end.

    Each outcome (the refusals, or what the write raised, and how long it took) goes back through
    `outcomes`, and then `on_written` is called (it wakes the committer). The sink is closed by this thread
    when it ends, so its session is never closed while a request is in flight on it.
    """

    def __init__(self, delivery: Delivery, on_written: Callable[[], None]) -> None:
        self._delivery = delivery
        self._on_written = on_written
        self._inbox: queue.SimpleQueue[tuple[int, Planned] | None] = queue.SimpleQueue()
        self.outcomes: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._ending = threading.Event()
        self.thread = logcontext.thread(self._loop, name="bridge-writer")
        self.thread.start()

    def _loop(self) -> None:
        try:
            while True:
                job = self._inbox.get()
                if job is _END or self._ending.is_set():
                    return
                ticket, planned = job
                began = time.monotonic()
                try:
                    outcome: list[Refusal] | BaseException = self._delivery.write(planned)
                except BaseException as exc:  # handed to the committer, which raises it in its own thread
                    outcome = exc
                self.outcomes.put((ticket, outcome, time.monotonic() - began))
                self._on_written()
        finally:
            self._delivery.close()

    def send(self, ticket: int, planned: Planned) -> None:
        self._inbox.put((ticket, planned))

    def end(self, timeout: float) -> None:
        """Let the thread finish the write in hand (bounded wait) and end; a batch not yet started is dropped."""
        self._ending.set()
        self._inbox.put(_END)
        self.thread.join(timeout)
        if self.thread.is_alive():
            logger.warning("a PANDA write is still in flight after %.0fs; it is left to finish on its own", timeout)


class Writes:
    """Plans batches as they come, keeps one write in flight, records what CommitOrder releases."""

    def __init__(self, delivery: Delivery, stats: RunStats, on_written: Callable[[], None] = lambda: None) -> None:
        self._delivery = delivery
        self._stats = stats
        self._order: CommitOrder[Planned] = CommitOrder()
        self._writer = _WriterThread(delivery, on_written)
        self._in_flight: int | None = None
        """The ticket of the batch the writer is sending, if any."""
        self._unrecorded: set[str] = set()
        """Documents of batches planned and not yet recorded."""
        self._waited = False
        """True once the committer had to wait for a write still in flight (see sink_was_busy)."""
        self.last_write_seconds = 0.0
        """How long the last write that returned took."""

    @property
    def busy(self) -> bool:
        """True while a write is in flight and has not returned: a batch handed on now would wait for it."""
        return self._in_flight is not None and self._writer.outcomes.empty()

    def sink_was_busy(self) -> bool:
        """True when the committer had to wait for the sink since the last call (the sink is the bottleneck)."""
        waited, self._waited = self._waited, False
        return waited

    @property
    def thread(self) -> threading.Thread:
        """The writer thread (for health checks)."""
        return self._writer.thread

    def deliver(self, batch: Batch) -> None:
        """Plan and note `batch`, hand it to the writer once the previous write returned, record what is released.

        Raises what a write raised (after recording every batch acknowledged before it).
        """
        if self._unrecorded and not (self._delivery.plans_ahead
                                     and self._unrecorded.isdisjoint(c.doc_id for c in batch.changes)):
            self.finish()
        planned = self._delivery.plan(batch)
        self._unrecorded |= planned.doc_ids
        if not planned.writes:  # settled at once; released when every earlier batch is
            self._record(self._order.acknowledged(self._order.sent(planned, batch.position)))
            return
        self._delivery.note(planned)
        done = self._wait()
        ticket = self._order.sent(planned, batch.position)
        self._writer.send(ticket, planned)
        self._in_flight = ticket
        self._record(done)

    def finish(self) -> None:
        """Wait for the write in flight and record everything released."""
        self._record(self._wait())

    def _wait(self) -> list[Ready[Planned]]:
        """Wait for the write in flight (if any); the batches its outcome releases. Raises what it raised."""
        if self._in_flight is None:
            return []
        if self._writer.outcomes.empty():
            self._waited = True
        ticket, outcome, self.last_write_seconds = self._writer.outcomes.get()
        self._in_flight = None
        if isinstance(outcome, BaseException):
            self._order.failed(ticket)
            raise outcome
        return self._order.acknowledged(ticket, outcome)

    def _record(self, released: list[Ready[Planned]]) -> None:
        for ready in released:
            self._delivery.record(ready, self._stats)
            self._unrecorded -= ready.batch.doc_ids

    def close(self, timeout: float) -> None:
        """End the writer thread (bounded wait for a write still in flight after a failure or a stop)."""
        left = self._order.stopped()
        if left:
            logger.info("%d batch(es) not acknowledged are left unrecorded; they are read again on restart", left)
        self._writer.end(timeout)
