"""batching.py: last change per document, due on count, bytes, age or catch-up; positions never skip."""

from bridge.config.settings import BatchSettings
from bridge.core.batching import Batcher
from bridge.model import Change, Position, Seq


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def change(doc_id: str, seq: int | None, size: int = 10, deleted: bool = False) -> Change:
    return Change(Seq(seq) if seq is not None else None, doc_id, deleted, None if deleted else {"_id": doc_id},
                  size=size)


def test_last_change_per_document_wins_in_order_of_last_change():
    batcher = Batcher(BatchSettings(), Clock())
    for item in [change("a", 1), change("b", 2), change("a", 3), change("c", 4, deleted=True)]:
        batcher.add(item)
    batch = batcher.take()
    assert batch is not None
    assert [(c.doc_id, c.seq) for c in batch.changes] == [("b", Seq(2)), ("a", Seq(3)), ("c", Seq(4))]
    assert batch.position == Seq(4)
    assert batch.received == 4
    assert batcher.take() is None


def test_due_on_count_bytes_and_age():
    clock = Clock()
    by_count = Batcher(BatchSettings(max_changes=2, max_bytes=10**9, max_age=60), clock)
    by_count.add(change("a", 1))
    assert not by_count.due()
    by_count.add(change("a", 2))  # same document: still one change
    assert not by_count.due()
    by_count.add(change("b", 3))
    assert by_count.due()

    by_bytes = Batcher(BatchSettings(max_changes=100, max_bytes=25, max_age=60), clock)
    by_bytes.add(change("a", 1, size=20))
    assert not by_bytes.due()
    by_bytes.add(change("b", 2, size=20))
    assert by_bytes.due()

    by_age = Batcher(BatchSettings(max_changes=100, max_bytes=10**9, max_age=1.0), clock)
    assert by_age.seconds_until_due() is None
    by_age.add(change("a", 1))
    assert by_age.seconds_until_due() == 1.0
    clock.now = 0.5
    assert not by_age.due()
    clock.now = 1.0
    assert by_age.due()
    assert by_age.seconds_until_due() == 0.0


def test_caught_up_makes_pending_changes_due_at_once():
    batcher = Batcher(BatchSettings(max_age=60), Clock())
    batcher.advance(Position(Seq(1), caught_up=True))
    assert not batcher.due()  # a position alone waits for its age
    batcher.add(change("a", 2))
    batcher.advance(Position(Seq(3), caught_up=True))
    assert batcher.due()
    batch = batcher.take()
    assert batch is not None and batch.caught_up and batch.position == Seq(3)


def test_position_only_batches_and_seqless_changes():
    batcher = Batcher(BatchSettings(), Clock())
    batcher.advance(Position(Seq("9-x")))
    batch = batcher.take()
    assert batch is not None and batch.changes == () and batch.position == Seq("9-x")
    # a change without a seq keeps the last position: recording it can only re-read, never skip
    batcher.add(change("a", 10))
    batcher.add(change("b", None))
    batch = batcher.take()
    assert batch is not None and batch.position == Seq(10)
    assert batcher.empty


def test_caught_up_waits_for_items_already_at_hand_but_not_past_its_limits():
    clock = Clock()
    batcher = Batcher(BatchSettings(max_changes=3, max_bytes=10**9, max_age=1.0), clock)
    batcher.add(change("a", 1))
    batcher.advance(Position(Seq(1), caught_up=True))
    assert batcher.due() and not batcher.due(more_waiting=True)
    batcher.add(change("b", 2))
    batcher.add(change("c", 3))
    assert batcher.due(more_waiting=True)  # the count limit still holds
    batcher.take()
    batcher.add(change("d", 4))
    batcher.advance(Position(Seq(4), caught_up=True))
    clock.now += 1.0
    assert batcher.due(more_waiting=True)  # and the age limit


def test_max_changes_is_set_between_batches():
    batcher = Batcher(BatchSettings(max_changes=2, max_bytes=10**9, max_age=60), Clock())
    batcher.max_changes = 3
    for n, doc in enumerate("abc"):
        assert not batcher.due()
        batcher.add(change(doc, n))
    assert batcher.due()
