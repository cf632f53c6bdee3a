"""The loop: source -> decode -> batching -> planning -> sink -> checkpoint, until told to stop.

Three threads, each with its own adapter: the reader pulls the source's raw items (reader.py); the calling
thread, the committer, decodes, batches, plans and records; one writer thread sends one planned batch at a
time to the sink (writes.py). So reading the next page, planning the next batch and committing the last one
all overlap the sink's write, through bounded hand-offs that keep memory flat. A seq is committed only
after the sink acknowledged every change up to it (at least once), in feed order (core/commits.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from bridge.config.settings import BatchSettings
from bridge.core.batching import Batcher
from bridge.core.sizing import BatchSizer
from bridge.errors import BridgeError, StopRequested
from bridge.model import Change, Position, Seq
from bridge.ops import logcontext
from bridge.run import collector
from bridge.run.delivery import Delivery, RunStats
from bridge.run.reader import END, Decode, Failed, Source, decoded, read
from bridge.run.writes import Writes

__all__ = ["run"]

logger = logging.getLogger(__name__)

_QUEUE_CHUNKS = 4  # chunks of up to reader.CHUNK items in flight between reader and committer
_STATS_INTERVAL = 30.0
_JOIN_TIMEOUT = 5.0  # seconds to wait for the reader and the writer to end

_WRITTEN = object()
"""Put in the hand-off by the writer thread when a write returns, to wake the committer."""


@collector.paused()
def run(
    source: Source,
    decode: Decode,
    delivery: Delivery,
    limits: BatchSettings,
    *,
    since: Seq | None,
    follow: bool,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> RunStats:
    """Mirror the source from `since` until caught up (follow False) or until `stop` is set.

    On stop, the batch in hand is delivered and committed (unless the sink is failing, in which case the
    checkpoint stays at the last acknowledged batch). Raises the first fatal BridgeError from either side
    after committing what was already acknowledged. The run owns the source and the sink: the reader
    thread closes the source and the writer thread the sink, each once it is done with it.
    """
    stats = RunStats()
    batcher = Batcher(limits, clock)
    sizer = BatchSizer(limits.max_changes, max(limits.max_changes, limits.grow_to), limits.max_request_bytes)
    handoff: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    reader = logcontext.thread(read, args=(source, since, follow, handoff, stop), name="bridge-reader")
    reader.start()

    def wake() -> None:
        try:
            handoff.put_nowait(_WRITTEN)
        except queue.Full:
            pass  # the committer has chunks at hand, and sees the write's outcome after the next one

    writes = Writes(delivery, stats, on_written=wake)
    events = delivery.events
    events.started([reader, writes.thread])
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
                if item is _WRITTEN:
                    item = None
                if item is END:
                    break
                if isinstance(item, Failed):
                    failure = item.error
                    break
                if item is not None:
                    entries, refusals = decoded(item, decode)
                    positions = sum(isinstance(raw, Position) for raw in item[-1:])  # only a chunk's last item
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
                        # Inside the chunk no batch outgrows its limits; more items are at hand (the rest of
                        # the chunk: a chunk ends at a Position), so being caught up is judged after it.
                        if batcher.due(True):
                            _deliver(batcher, writes, sizer, clock)
                # While a write is in flight, changes that arrive join the next batch, which goes out as
                # soon as the write returns (the writer wakes this loop): handed on earlier, it would wait
                # for the write anyway, and changes read meanwhile would wait for one more write.
                if batcher.due(not handoff.empty() or writes.busy):
                    _deliver(batcher, writes, sizer, clock)
                if handoff.empty() and not writes.busy:  # nothing to plan meanwhile: record what returned
                    writes.finish()
                delivery.flush(overdue_only=True)  # commits held while no batch came (core/grouping.py)
                collector.collect_if_due()
                if clock() - last_stats >= _STATS_INTERVAL:
                    last_stats = clock()
                    _log_stats(stats)
            if failure is None or isinstance(failure, BridgeError):
                # The batch in hand was read correctly: deliver it before stopping or raising.
                _deliver(batcher, writes, sizer, clock)
            writes.finish()
        except StopRequested:  # a stop while PANDA was failing: nothing past the last acknowledged batch is saved
            logger.warning("stopped before PANDA acknowledged the batch in hand; it will be re-read on restart")
    finally:
        stop.set()
        writes.close(timeout=_JOIN_TIMEOUT)
        source.interrupt()
        reader.join(timeout=_JOIN_TIMEOUT)
        delivery.flush()  # every held commit was acknowledged: save it, whatever ended the run
    if failure is not None:
        raise failure
    _log_stats(stats)
    return stats


def _deliver(batcher: Batcher, writes: Writes, sizer: BatchSizer, clock: Callable[[], float]) -> None:
    """Hand the pending batch on, then size the next one: bigger while the sink is slow and a backlog waits."""
    batch = batcher.take()
    if batch is not None:
        writes.deliver(batch)
        nbytes = sum(change.size for change in batch.changes)
        batcher.max_changes = sizer.delivered(len(batch.changes), nbytes, caught_up=batch.caught_up,
                                              sink_busy=writes.sink_was_busy(),
                                              write_seconds=writes.last_write_seconds, now=clock())


def _log_stats(stats: RunStats) -> None:
    elapsed = max(1e-9, time.monotonic() - stats.started)
    logger.info(
        "progress: %d changes read (%.0f/s), %d upserted, %d deleted, %d unchanged, %d dead-lettered, seq %s",
        stats.received, stats.received / elapsed, stats.upserted, stats.deleted, stats.unchanged,
        stats.dead_lettered, stats.position,
    )
