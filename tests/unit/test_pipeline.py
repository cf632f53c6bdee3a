"""pipeline.py with fakes: what is acknowledged is committed, what is refused is dead-lettered, never more."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from bridge.config.settings import BatchSettings, MappingSettings
from bridge.core.filtering import DocFilter
from bridge.core.grouping import CommitGroup
from bridge.core.mapping import RowMapper
from bridge.errors import AuthError
from bridge.model import Batch, Delete, Position, Refusal, Seq, Upsert
from bridge.ops.events import Events
from bridge.run.delivery import Delivery, RunStats
from bridge.run.pipeline import run
from bridge.run.writes import Writes
from bridge.source.decode import decode_row
from bridge.state.checkpoint import StateStore
from bridge.state.deadletter import DeadLetterFile


class FakeSource:
    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.since: Seq | None = None

    def changes(self, since: Seq | None, *, follow: bool) -> Iterator[Any]:
        self.since = since
        for item in self.items:  # a raw row goes with its size on the wire, as the real sources hand it over
            yield item if isinstance(item, Position) else (item, 0)

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeSink:
    """Holds rows like PANDA; refuses rows whose name is 'BAD'; can fail fatally after N writes."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.rows: dict[str, tuple[Any, ...]] = {}
        self.writes = 0
        self.fail_after = fail_after

    def _count(self) -> None:
        if self.fail_after is not None and self.writes >= self.fail_after:
            raise AuthError("PANDA refused the credentials")
        self.writes += 1

    def upsert(self, rows: Sequence[Upsert]) -> list[Refusal]:
        self._count()
        refused = [Refusal.of(row, "bad name", 400) for row in rows if row.data[0] == "BAD"]
        for row in rows:
            if row.data[0] != "BAD":
                self.rows[row.external_id] = row.data
        return refused

    def delete(self, rows: Sequence[Delete]) -> list[Refusal]:
        self._count()
        for row in rows:
            self.rows.pop(row.external_id, None)
        return []

    def close(self) -> None:
        pass


def row(seq: int, doc_id: str, name: str | None = None, deleted: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {"seq": seq, "id": doc_id, "changes": [{"rev": f"{seq}-x"}]}
    if deleted:
        item["deleted"] = True
    else:
        item["doc"] = {"_id": doc_id, "name": name}
    return item


@pytest.fixture
def parts(tmp_path):
    store = StateStore(tmp_path / "state")
    store.claim({"test": True})
    letters = DeadLetterFile(tmp_path / "dead.jsonl")
    yield store, letters
    store.close()


TWO_PER_BATCH = BatchSettings(max_changes=2)


def mirror(items, sink, store, letters, limits=TWO_PER_BATCH):
    mapper = RowMapper(MappingSettings(columns=["name"]))
    delivery = Delivery(sink, store, letters, mapper, DocFilter().accepts, delete_unknown=False)
    return run(FakeSource(items), decode_row, delivery, limits, since=None, follow=False,
               stop=threading.Event())


def test_rows_arrive_and_the_last_position_is_committed(parts):
    store, letters = parts
    sink = FakeSink()
    items = [row(1, "a", "A"), row(2, "b", "B"), row(3, "a", "A2"), Position(Seq(3)),
             row(4, "b", deleted=True), row(5, "c", "C"), Position(Seq(7), caught_up=True)]
    stats = mirror(items, sink, store, letters)
    assert sink.rows == {"a": ("A2",), "c": ("C",)}
    assert store.load().seq == Seq(7)
    assert stats.received == 5 and stats.deleted == 1
    assert list(letters.entries()) == []


def test_refused_and_undecodable_items_are_dead_lettered_and_passed(parts):
    store, letters = parts
    sink = FakeSink()
    items = [row(1, "a", "A"), row(2, "b", "BAD"), {"seq": 3, "changes": []}, row(4, "c", "C"),
             Position(Seq(4), caught_up=True)]
    mirror(items, sink, store, letters)
    assert sink.rows == {"a": ("A",), "c": ("C",)}
    entries = list(letters.entries())
    assert [(e.doc_id, e.seq, e.reason) for e in entries] == [
        ("", 3, "not a change: a change row needs a string id, got None"),
        ("b", 2, "bad name"),
    ]
    assert entries[1].row == ["BAD"] and entries[1].doc == {"_id": "b", "name": "BAD"}
    assert entries[0].doc == {"seq": 3, "changes": []}  # the raw item is kept
    assert store.load().seq == Seq(4)
    assert store.lookup(["b"]) == {}  # a refused row is not recorded as sent


def test_a_fatal_sink_error_stops_without_committing_past_the_acknowledged_batch(parts):
    store, letters = parts
    sink = FakeSink(fail_after=1)
    items = [row(1, "a", "A"), row(2, "b", "B"), row(3, "c", "C"), row(4, "d", "D"),
             Position(Seq(4), caught_up=True)]
    with pytest.raises(AuthError):
        mirror(items, sink, store, letters)
    assert sink.rows == {"a": ("A",), "b": ("B",)}
    assert store.load().seq == Seq(2)  # the first batch (a, b), never more


def test_replays_send_nothing(parts):
    store, letters = parts
    sink = FakeSink()
    items = [row(1, "a", "A"), row(2, "b", "B"), Position(Seq(2), caught_up=True)]
    mirror(items, sink, store, letters)
    writes = sink.writes
    stats = mirror(items, sink, store, letters)
    assert sink.writes == writes and stats.unchanged == 2


class BlockingSource(FakeSource):
    """Hands over its items, then stays inside a "request" until interrupted (like a longpoll that waits)."""

    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self.unblocked = threading.Event()
        self.reading = False
        self.closed: list[tuple[str, bool]] = []  # (thread, was a read in progress)

    def changes(self, since: Seq | None, *, follow: bool) -> Iterator[Any]:
        yield from super().changes(since, follow=follow)
        self.reading = True
        self.unblocked.wait(10)  # bounded: a run that never interrupts fails below instead of hanging
        self.reading = False

    def interrupt(self) -> None:
        self.unblocked.set()

    def close(self) -> None:
        self.closed.append((threading.current_thread().name, self.reading))
        self.unblocked.set()


class ClosingSink(FakeSink):
    """Asks the run to stop once it wrote; notes which thread closes it."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop
        self.closed: list[str] = []

    def upsert(self, rows: Sequence[Upsert]) -> list[Refusal]:
        refused = super().upsert(rows)
        self.stop.set()
        return refused

    def close(self) -> None:
        self.closed.append(threading.current_thread().name)


def test_each_session_is_closed_by_the_thread_that_uses_it(parts):
    store, letters = parts
    stop = threading.Event()
    sink = ClosingSink(stop)
    source = BlockingSource([row(1, "a", "A"), Position(Seq(1), caught_up=True)])
    delivery = Delivery(sink, store, letters, RowMapper(MappingSettings(columns=["name"])), DocFilter().accepts,
                        delete_unknown=False)
    run(source, decode_row, delivery, TWO_PER_BATCH, since=None, follow=True, stop=stop)
    assert sink.rows == {"a": ("A",)}
    assert source.closed == [("bridge-reader", False)]  # never while the reader is inside a request
    assert sink.closed == ["bridge-writer"]  # after its last write, by the thread that wrote
    assert store.load().seq == Seq(1)


class HeldSink(FakeSink):
    """Holds its first write until the test releases it, so a later batch is handled while it is in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.release = threading.Event()

    def upsert(self, rows: Sequence[Upsert]) -> list[Refusal]:
        self.writing.set()
        assert self.release.wait(10)  # bounded
        return super().upsert(rows)


def test_a_batch_without_writes_is_committed_only_after_the_write_in_flight_before_it(parts):
    store, letters = parts
    sink = HeldSink()
    delivery = Delivery(sink, store, letters, RowMapper(MappingSettings(columns=["name"])), DocFilter().accepts,
                        delete_unknown=False)
    stats = RunStats()
    writes = Writes(delivery, stats)
    try:
        writes.deliver(Batch((decode_row(row(1, "a", "A")),), Seq(1)))
        assert sink.writing.wait(10)
        writes.deliver(Batch((), Seq(2)))  # nothing to write: settled at once, but behind batch 1
        assert store.load().seq is None and stats.batches == 0  # not committed past the write in flight
        sink.release.set()
        writes.finish()
    finally:
        writes.close(timeout=5)
    assert store.load().seq == Seq(2) and stats.batches == 2
    assert sink.rows == {"a": ("A",)} and store.lookup(["a"]).keys() == {"a"}


class SeenPositions(Events):
    """Counts the positions the committer has handled."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def position(self, caught_up: bool, pending: int | None) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_for(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout=10)  # bounded


class GatedSource(FakeSource):
    """Hands over its first two items, then the rest once `gate` is set (bounded wait)."""

    def __init__(self, items: list[Any], gate: threading.Event) -> None:
        super().__init__(items)
        self.gate = gate

    def changes(self, since: Seq | None, *, follow: bool) -> Iterator[Any]:
        for index, item in enumerate(super().changes(since, follow=follow)):
            if index == 2:
                assert self.gate.wait(10)
            yield item


class HeldUntilSeen(FakeSink):
    """Holds its first write until the committer has handled `positions` positions (or 10 s passed)."""

    def __init__(self, seen: SeenPositions, positions: int) -> None:
        super().__init__()
        self.seen = seen
        self.positions = positions
        self.batches: list[list[str]] = []
        self.writing = threading.Event()
        self.seen_in_flight = False
        """True when the committer handled those positions while the first write was in flight."""

    def upsert(self, rows: Sequence[Upsert]) -> list[Refusal]:
        if not self.batches:
            self.writing.set()
            self.seen_in_flight = self.seen.wait_for(self.positions)
        self.batches.append([r.external_id for r in rows])
        return super().upsert(rows)


def test_live_changes_read_while_a_write_is_in_flight_go_out_together_when_it_returns(parts):
    # Following a caught-up feed, each change comes with its own caught-up position (one longpoll answer
    # each). Those read during a write must wait for it, and all of them join the next write: handing on
    # a batch of the first alone would make the others wait for one more write.
    store, letters = parts
    seen = SeenPositions()
    sink = HeldUntilSeen(seen, positions=4)
    items: list[Any] = []
    for seq, doc_id in enumerate("abcd", start=1):
        items += [row(seq, doc_id, doc_id.upper()), Position(Seq(seq), caught_up=True)]
    delivery = Delivery(sink, store, letters, RowMapper(MappingSettings(columns=["name"])), DocFilter().accepts,
                        delete_unknown=False, events=seen)
    run(GatedSource(items, sink.writing), decode_row, delivery, BatchSettings(max_changes=100), since=None,
        follow=False, stop=threading.Event())
    assert sink.seen_in_flight  # the committer went on reading while the write was in flight
    assert sink.batches == [["a"], ["b", "c", "d"]]
    assert store.load().seq == Seq(4)


class FileWatchingSink(FakeSink):
    """Notes the seq the state file holds (as another process would read it) at every write."""

    def __init__(self, path: Any, fail_after: int | None = None) -> None:
        super().__init__(fail_after)
        self.path = path
        self.file_seqs: list[Seq | None] = []

    def upsert(self, rows: Sequence[Upsert]) -> list[Refusal]:
        other = StateStore(self.path)
        try:
            saved = other.load()
            self.file_seqs.append(saved.seq if saved is not None else None)
        finally:
            other.close()
        return super().upsert(rows)


def grouped(sink, store, letters, group):
    return Delivery(sink, store, letters, RowMapper(MappingSettings(columns=["name"])), DocFilter().accepts,
                    delete_unknown=False, group=group)


def test_a_backfill_holds_its_commits_and_saves_them_together_once_caught_up(parts, tmp_path, caplog):
    store, letters = parts
    sink = FileWatchingSink(tmp_path / "state")
    items = [row(seq, f"d{seq}", f"N{seq}") for seq in range(1, 8)] + [Position(Seq(7), caught_up=True)]
    delivery = grouped(sink, store, letters, CommitGroup(max_records=100, max_seconds=60))
    with caplog.at_level("INFO", logger="bridge.run.delivery"):
        run(FakeSource(items), decode_row, delivery, TWO_PER_BATCH, since=None, follow=False,
            stop=threading.Event())
    # Batches 1-3 (d1..d6) were held: the file kept no seq while they were written; the caught-up batch (d7)
    # saved them with its own commit.
    assert sink.file_seqs == [None, None, None, None] and len(sink.rows) == 7
    messages = [record.getMessage() for record in caplog.records if record.name == "bridge.run.delivery"]
    assert [m.split(":")[0] for m in messages] == ["batch acknowledged"] * 3 + ["batch committed"]
    assert messages[0].endswith("seq 2 (saved with the next checkpoint write)") and messages[3].endswith("seq 7")
    other = StateStore(tmp_path / "state")
    assert other.load().seq == Seq(7) and other.load().documents == 7
    other.close()


def test_a_run_that_ends_before_catching_up_saves_what_it_holds(parts, tmp_path, caplog):
    store, letters = parts
    items = [row(seq, f"d{seq}", f"N{seq}") for seq in range(1, 6)]
    delivery = grouped(FakeSink(), store, letters, CommitGroup(max_records=100, max_seconds=60))
    with caplog.at_level("INFO", logger="bridge.run.delivery"):
        run(FakeSource(items), decode_row, delivery, TWO_PER_BATCH, since=None, follow=False,
            stop=threading.Event())
    delivered = [record.getMessage() for record in caplog.records if record.name == "bridge.run.delivery"]
    assert delivered[-1] == "checkpoint saved: seq 5, with the records of 5 documents"
    other = StateStore(tmp_path / "state")
    assert other.load().seq == Seq(5) and other.load().documents == 5
    other.close()


def test_held_commits_are_saved_when_a_write_fails_fatally(parts, tmp_path):
    store, letters = parts
    sink = FileWatchingSink(tmp_path / "state", fail_after=2)
    items = [row(seq, f"d{seq}", f"N{seq}") for seq in range(1, 7)] + [Position(Seq(6))]
    delivery = grouped(sink, store, letters, CommitGroup(max_records=100, max_seconds=60))
    with pytest.raises(AuthError):
        run(FakeSource(items), decode_row, delivery, TWO_PER_BATCH, since=None, follow=False,
            stop=threading.Event())
    other = StateStore(tmp_path / "state")
    assert other.load().seq == Seq(4) and other.load().documents == 4  # the two acknowledged batches
    other.close()


def test_commits_held_while_no_batch_comes_are_saved_once_overdue(parts, tmp_path):
    store, letters = parts
    now = [100.0]
    delivery = Delivery(FakeSink(), store, letters, RowMapper(MappingSettings(columns=["name"])),
                        DocFilter().accepts, delete_unknown=False, group=CommitGroup(100, 1.0), clock=lambda: now[0])
    delivery.deliver(Batch((decode_row(row(1, "a", "A")),), Seq(1)), RunStats())
    assert store.held == 1
    now[0] = 100.9
    delivery.flush(overdue_only=True)
    assert store.held == 1
    now[0] = 101.0
    delivery.flush(overdue_only=True)
    assert store.held == 0
    other = StateStore(tmp_path / "state")
    assert other.load().seq == Seq(1)
    other.close()
