"""A run killed after PANDA acknowledged a batch but before the commit: the replay still converges.

The record then lags PANDA. Without the pending notes, a replay would skip a row whose content went back
to the recorded one, and would never delete a row written for a document the record does not know.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from bridge.config.settings import MappingSettings
from bridge.core.filtering import DocFilter
from bridge.core.mapping import RowMapper
from bridge.core.planning import plan_batch, row_hash
from bridge.model import Batch, Change, Delete, Refusal, Sent, Seq, Upsert
from bridge.run.delivery import Delivery, RunStats
from bridge.state.checkpoint import StateStore
from bridge.state.deadletter import DeadLetterFile

MAPPER = RowMapper(MappingSettings(columns=["name"]))
BY_CODE = RowMapper(MappingSettings(columns=["name"], external_id="code"))
ALL = DocFilter().accepts


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


class Panda:
    """A sink holding rows like PANDA."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[Any, ...]] = {}
        self.writes = 0

    def upsert(self, rows: Sequence[Upsert]) -> list[Refusal]:
        self.writes += 1
        self.rows.update((row.external_id, row.data) for row in rows)
        return []

    def delete(self, rows: Sequence[Delete]) -> list[Refusal]:
        self.writes += 1
        for row in rows:
            self.rows.pop(row.external_id, None)
        return []


class KilledAtCommit(StateStore):
    def commit(self, records: Any, seq: Any, *, hold: bool = False) -> None:
        raise Killed


def live(doc_id: str, seq: int, name: str, **fields: Any) -> Change:
    return Change(Seq(seq), doc_id, False, {"_id": doc_id, "name": name, **fields})


def tomb(doc_id: str, seq: int) -> Change:
    return Change(Seq(seq), doc_id, True, None)


def deliver(store: StateStore, panda: Panda, tmp_path: Any, *changes: Change, mapper: RowMapper = MAPPER) -> None:
    delivery = Delivery(panda, store, DeadLetterFile(tmp_path / "dead.jsonl"), mapper, ALL, delete_unknown=False)
    seqs = [change.seq for change in changes if change.seq is not None]
    delivery.deliver(Batch(changes=tuple(changes), position=seqs[-1] if seqs else None), RunStats())


def crash(path: Any, panda: Panda, tmp_path: Any, *changes: Change, mapper: RowMapper = MAPPER) -> None:
    """Deliver, and die where the commit would be; the state file is what the disk holds then."""
    store = KilledAtCommit(path)
    with pytest.raises(Killed):
        deliver(store, panda, tmp_path, *changes, mapper=mapper)
    store.close()


@pytest.fixture
def path(tmp_path: Any) -> Any:
    path = tmp_path / "state"
    store = StateStore(path)
    store.claim({"test": True})
    store.close()
    return path


def test_a_row_written_unrecorded_is_deleted_when_its_document_is(path, tmp_path):
    panda = Panda()
    crash(path, panda, tmp_path, live("a", 1, "A"))
    assert panda.rows == {"a": ("A",)}
    store = StateStore(path)
    assert store.lookup(["a"]) == {} and store.pending(["a"]) == {"a": ["a"]}
    deliver(store, panda, tmp_path, tomb("a", 2))
    assert panda.rows == {}
    assert store.pending(["a"]) == {}  # settled by the commit


def test_content_reverted_to_the_recorded_row_is_sent_again(path, tmp_path):
    panda = Panda()
    store = StateStore(path)
    deliver(store, panda, tmp_path, live("a", 1, "v1"))
    store.close()
    crash(path, panda, tmp_path, live("a", 2, "v2"))
    assert panda.rows == {"a": ("v2",)}
    store = StateStore(path)
    deliver(store, panda, tmp_path, live("a", 3, "v1"))  # same row as the record: still re-sent
    assert panda.rows == {"a": ("v1",)}
    writes = panda.writes
    deliver(store, panda, tmp_path, live("a", 4, "v1"))  # settled: a true repeat sends nothing
    assert panda.writes == writes


def test_a_row_deleted_unrecorded_comes_back_with_its_document(path, tmp_path):
    panda = Panda()
    store = StateStore(path)
    deliver(store, panda, tmp_path, live("a", 1, "A"))
    store.close()
    crash(path, panda, tmp_path, tomb("a", 2))
    assert panda.rows == {}
    store = StateStore(path)
    deliver(store, panda, tmp_path, live("a", 3, "A"))  # recreated exactly as recorded
    assert panda.rows == {"a": ("A",)}


def test_an_external_id_changed_unrecorded_leaves_no_ghost(path, tmp_path):
    panda = Panda()
    store = StateStore(path)
    deliver(store, panda, tmp_path, live("d", 1, "A", code="x"), mapper=BY_CODE)
    store.close()
    crash(path, panda, tmp_path, live("d", 2, "A", code="y"), mapper=BY_CODE)
    assert panda.rows == {"y": ("A",)}
    store = StateStore(path)
    deliver(store, panda, tmp_path, live("d", 3, "A", code="z"), mapper=BY_CODE)
    assert panda.rows == {"z": ("A",)}
    assert store.lookup(["d"]) == {"d": Sent("z", row_hash(("A",)))}


def test_a_doubtful_row_now_owned_by_another_document_is_kept():
    plan = plan_batch([live("a", 5, "A", code="z")], BY_CODE, ALL, {}, {"y": "b"}, unsure={"a": ["y"]})
    assert plan.deletes == ()  # y was a's once, unrecorded; it is b's now
    assert [u.external_id for u in plan.upserts] == ["z"]
    plan = plan_batch([tomb("a", 6)], BY_CODE, ALL, {}, {"y": "b"}, unsure={"a": ["y"]})
    assert plan.deletes == () and plan.on_success == {"a": None}


def test_plan_without_doubts_is_unchanged():
    sent = {"a": Sent("a", row_hash(("A",)))}
    assert plan_batch([live("a", 1, "A")], MAPPER, ALL, sent).unchanged == 1
    plan = plan_batch([live("a", 1, "A")], MAPPER, ALL, sent, unsure={"a": ["a"]})
    assert plan.unchanged == 0 and [u.external_id for u in plan.upserts] == ["a"]
