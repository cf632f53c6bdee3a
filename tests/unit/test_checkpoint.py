"""checkpoint.py: the SQLite state store saves seq and records atomically and refuses another pipeline."""

import pytest

from bridge.checkpoint import Sent, StateStore
from bridge.errors import CheckpointMismatch
from bridge.model import Seq

FP = {"source": {"database": "a"}, "panda": {"dataset": "d"}, "mapping": {"columns": ["x"]}}


def test_new_store_is_claimed_and_commits_survive_reopening(tmp_path):
    path = tmp_path / "state" / "x.checkpoint"
    store = StateStore(path)
    assert store.claim(FP) is None
    store.commit({"a": Sent("a", b"1"), "b": Sent("b", b"2")}, Seq("5-abc"))
    store.commit({"a": None}, Seq(7))
    store.close()
    store = StateStore(path)
    saved = store.claim(FP)
    assert saved is not None and saved.seq == Seq(7) and saved.documents == 1
    assert store.lookup(["a", "b", "c"]) == {"b": Sent("b", b"2")}
    assert store.owners(["b", "zz"]) == {"b": "b"}


def test_seq_types_are_kept(tmp_path):
    store = StateStore(tmp_path / "s")
    store.claim(FP)
    store.commit({}, Seq("12-g1AAAA"))
    assert store.load().seq == Seq("12-g1AAAA")
    store.commit({}, Seq(12))
    assert store.load().seq.value == 12
    store.commit({}, None)  # None keeps the saved seq
    assert store.load().seq.value == 12


def test_another_pipeline_is_refused_with_what_differs(tmp_path):
    store = StateStore(tmp_path / "s")
    store.claim(FP)
    other = dict(FP, panda={"dataset": "e"})
    with pytest.raises(CheckpointMismatch, match="panda.*checkpoint reset"):
        store.claim(other)


def test_external_id_can_pass_between_documents_in_one_commit(tmp_path):
    store = StateStore(tmp_path / "s")
    store.claim(FP)
    store.commit({"d1": Sent("x", b"1")}, Seq(1))
    store.commit({"d1": Sent("y", b"1"), "d2": Sent("x", b"2")}, Seq(2))
    assert store.lookup(["d1", "d2"]) == {"d1": Sent("y", b"1"), "d2": Sent("x", b"2")}


def test_reset_forgets_everything(tmp_path):
    store = StateStore(tmp_path / "s")
    store.claim(FP)
    store.commit({"a": Sent("a", b"1")}, Seq(3))
    store.reset()
    assert store.load() is None
    assert store.lookup(["a"]) == {}
