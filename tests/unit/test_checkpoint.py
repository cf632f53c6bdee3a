"""checkpoint.py: the SQLite state store saves seq and records atomically and refuses another pipeline."""

import pytest

from bridge.errors import CheckpointMismatch
from bridge.model import Sent, Seq
from bridge.state.checkpoint import StateStore

FP = {"source": {"database": "a"}, "panda": {"dataset": "d"}, "mapping": {"columns": ["x"]}}


def test_new_store_is_claimed_and_commits_survive_reopening(tmp_path):
    path = tmp_path / "state" / "x.checkpoint"
    store = StateStore(path)
    assert store.claim(FP) is None
    store.commit({"a": Sent("a", 1), "b": Sent("b", 2)}, Seq("5-abc"))
    store.commit({"a": None}, Seq(7))
    store.close()
    store = StateStore(path)
    saved = store.claim(FP)
    assert saved is not None and saved.seq == Seq(7) and saved.documents == 1
    assert store.lookup(["a", "b", "c"]) == {"b": Sent("b", 2)}
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
    store.commit({"d1": Sent("x", 1)}, Seq(1))
    store.commit({"d1": Sent("y", 1), "d2": Sent("x", 2)}, Seq(2))
    assert store.lookup(["d1", "d2"]) == {"d1": Sent("y", 1), "d2": Sent("x", 2)}


def test_reset_forgets_everything(tmp_path):
    store = StateStore(tmp_path / "s")
    store.claim(FP)
    store.commit({"a": Sent("a", 1)}, Seq(3))
    store.reset()
    assert store.load() is None
    assert store.lookup(["a"]) == {}


@pytest.fixture(params=["json", "row by row"])
def statements(request, monkeypatch):
    """Every batch through SQLite's JSON functions, or row by row as where SQLite has none."""
    if request.param == "row by row":
        monkeypatch.setattr("bridge.state.checkpoint_sql.has_json_functions", lambda: False)
    return request.param


def test_hashes_of_earlier_versions_stored_as_bytes_still_match(tmp_path, statements):
    """Files written before row hashes were integers hold the same 8 bytes as a BLOB: they still count as sent."""
    import sqlite3

    from bridge.core.planning import row_hash

    path = tmp_path / "s"
    store = StateStore(path)
    store.claim(FP)
    store.close()
    digest = row_hash(("A", None))
    legacy = sqlite3.connect(str(path))
    legacy.execute("INSERT INTO sent VALUES (?, ?, ?)", ("d", "d", digest.to_bytes(8, "big", signed=True)))
    legacy.commit()
    legacy.close()
    store = StateStore(path)
    assert store.lookup(["d"]) == {"d": Sent("d", digest)}
    store.commit({"d": Sent("d", digest)}, Seq(2))  # rewritten as an integer
    assert store.lookup(["d"]) == {"d": Sent("d", digest)}


def test_a_whole_batch_round_trips_with_extreme_hashes_and_odd_ids(tmp_path, statements):
    store = StateStore(tmp_path / "s")
    store.claim(FP)
    odd = ["", "'", '"', "a,b", "\u00e9\u4e2d\U0001f600", "x" * 500, "_design/x"]
    records = {f"d{i}": Sent(f"e{i}", (-1) ** i * (2**63 - 1 - i)) for i in range(3000)}
    records.update({doc_id: Sent("odd" + str(n), -(2**63)) for n, doc_id in enumerate(odd)})
    store.commit(records, Seq(1))
    assert store.lookup(list(records)) == records
    assert store.owners(["e7", "odd2", "nope"]) == {"e7": "d7", "odd2": '"'}
    store.commit(dict.fromkeys(list(records)[:1500]), Seq(2))
    left = store.lookup(list(records))
    assert left == dict(list(records.items())[1500:]) and store.load().documents == len(left)


def test_swapped_external_ids_in_one_commit(tmp_path, statements):
    store = StateStore(tmp_path / "s")
    store.claim(FP)
    store.commit({"a": Sent("x", 1), "b": Sent("y", 2)}, Seq(1))
    store.commit({"a": Sent("y", 3), "b": Sent("x", 4)}, Seq(2))
    assert store.lookup(["a", "b"]) == {"a": Sent("y", 3), "b": Sent("x", 4)}
    store.commit({"b": Sent("x", 5), "a": Sent("y", 6)}, Seq(3))  # order within a commit does not matter
    assert store.lookup(["a", "b"]) == {"a": Sent("y", 6), "b": Sent("x", 5)}


def test_an_id_with_a_nul_character_takes_the_row_by_row_statements(tmp_path):
    """SQLite's JSON functions cut text at a NUL: such a batch must still be recorded and found exactly."""
    store = StateStore(tmp_path / "s")
    store.claim(FP)
    records = {"a\x00b": Sent("_a_0_b", 1), "a": Sent("a", 2), "plain": Sent("plain", 3)}
    store.commit(records, Seq(1))
    assert store.lookup(["a\x00b", "a", "plain", "a\x00"]) == records
    assert store.lookup(["a", "plain"]) == {"a": Sent("a", 2), "plain": Sent("plain", 3)}
    store.commit({"a\x00b": None}, Seq(2))
    assert store.lookup(["a\x00b", "a"]) == {"a": Sent("a", 2)}


def test_repair_records_leave_the_seq_and_the_pending_notes_alone(tmp_path):
    store = StateStore(tmp_path / "s")
    store.claim(FP, complete=False)
    store.commit({"a": Sent("a", 1), "b": Sent("b", 2)}, Seq(9))
    store.intend([("c", "c")])
    store.put_records({"a": None, "d": Sent("b", 4)})  # "b"'s external_id now belongs to "d": b's record goes
    assert store.lookup(["a", "b", "d"]) == {"d": Sent("b", 4)}
    assert store.load().seq == Seq(9)
    assert store.noted_external_ids() == {"c": "c"} and store.pending(["c"]) == {"c": ["c"]}
    assert [row for chunk in store.records(chunk=1) for row in chunk] == [("d", "b", 4)]
    assert store.load().complete is False
    store.mark_complete(True)
    assert store.load().complete is True


def test_reading_records_without_a_state_file_creates_none(tmp_path):
    store = StateStore(tmp_path / "absent")
    assert list(store.records()) == [] and store.noted_external_ids() == {}
    assert not (tmp_path / "absent").exists()


def in_file(path):
    """The state file as another process would read it (held commits are not in it)."""
    other = StateStore(path)
    try:
        saved = other.load()
        return saved, other.noted_external_ids(), dict(
            (doc_id, Sent(eid, digest)) for chunk in other.records() for doc_id, eid, digest in chunk)
    finally:
        other.close()


def test_held_commits_are_seen_by_planning_and_written_together(tmp_path, statements):
    path = tmp_path / "s"
    store = StateStore(path)
    store.claim(FP)
    store.commit({"a": Sent("a", 1), "b": Sent("b", 2)}, Seq(1))
    store.intend([("a", "a"), ("c", "c")])
    store.commit({"a": Sent("a", 3), "c": Sent("c", 4)}, Seq(2), hold=True)
    store.intend([("b", "b")])
    store.commit({"b": None}, Seq(3), hold=True)
    assert store.held == 3
    assert store.lookup(["a", "b", "c", "d"]) == {"a": Sent("a", 3), "c": Sent("c", 4)}
    assert store.owners(["a", "b", "c"]) == {"a": "a", "c": "c"}
    assert store.pending(["a", "b", "c"]) == {}  # settled in memory
    saved, notes, records = in_file(path)
    assert saved.seq == Seq(1) and records == {"a": Sent("a", 1), "b": Sent("b", 2)}
    assert notes == {"a": "a", "b": "b", "c": "c"}  # a crash now replays from 1 with these rows unsure
    assert store.flush() == (3, Seq(3))
    assert store.held == 0 and store.flush() is None
    saved, notes, records = in_file(path)
    assert saved.seq == Seq(3) and records == {"a": Sent("a", 3), "c": Sent("c", 4)} and notes == {}


def test_a_commit_not_held_writes_every_held_one_with_it(tmp_path, statements):
    path = tmp_path / "s"
    store = StateStore(path)
    store.claim(FP)
    store.commit({"a": Sent("a", 1)}, Seq(1), hold=True)
    store.commit({}, Seq(2), hold=True)  # only the seq moves
    store.commit({"b": Sent("b", 2)}, None)  # None keeps the seq the held commits moved to
    saved, _, records = in_file(path)
    assert saved.seq == Seq(2) and records == {"a": Sent("a", 1), "b": Sent("b", 2)}


def test_external_ids_passing_between_documents_across_held_commits(tmp_path, statements):
    path = tmp_path / "s"
    store = StateStore(path)
    store.claim(FP)
    store.commit({"d1": Sent("x", 1), "d3": Sent("z", 1)}, Seq(1))
    store.commit({"d1": Sent("y", 2)}, Seq(2), hold=True)  # d1 leaves x ...
    store.commit({"d2": Sent("x", 3)}, Seq(3), hold=True)  # ... which d2 takes
    store.commit({"d3": None}, Seq(4), hold=True)  # d3 is deleted: z is free
    expected = {"d1": Sent("y", 2), "d2": Sent("x", 3)}
    assert store.lookup(["d1", "d2", "d3"]) == expected
    assert store.owners(["x", "y", "z"]) == {"x": "d2", "y": "d1"}
    store.commit({"d2": Sent("w", 4)}, Seq(5), hold=True)  # and moves on: x is nobody's
    assert store.owners(["x", "w"]) == {"w": "d2"}
    store.close()  # closing writes what is held
    store = StateStore(path)
    assert store.lookup(["d1", "d2", "d3"]) == {"d1": Sent("y", 2), "d2": Sent("w", 4)}
    assert store.owners(["x", "y", "z", "w"]) == {"y": "d1", "w": "d2"} and store.load().seq == Seq(5)


def test_a_crash_while_commits_are_held_leaves_the_older_state_whole(tmp_path):
    path = tmp_path / "s"
    store = StateStore(path)
    store.claim(FP)
    store.commit({"a": Sent("a", 1)}, Seq(1))
    store.intend([("a", "a")])
    store.commit({"a": Sent("a", 2)}, Seq(2), hold=True)
    store._conn.close()  # the process dies: nothing more reaches the file
    store._conn = None
    store._holding = False
    replay = StateStore(path)
    assert replay.load().seq == Seq(1) and replay.lookup(["a"]) == {"a": Sent("a", 1)}
    assert replay.pending(["a"]) == {"a": ["a"]}  # the replay treats the row as unsure: it is re-sent


def test_reset_forgets_held_commits_too(tmp_path):
    path = tmp_path / "s"
    store = StateStore(path)
    store.claim(FP)
    store.commit({"a": Sent("a", 1)}, Seq(1), hold=True)
    store.reset()
    assert store.held == 0 and store.lookup(["a"]) == {} and store.load() is None
    store.close()
    assert in_file(path)[0] is None


def test_a_group_larger_than_one_statement_is_written_whole(tmp_path, statements):
    path = tmp_path / "s"
    store = StateStore(path)
    store.claim(FP)
    first = {f"d{i}": Sent(f"e{i}", i) for i in range(2500)}
    store.commit(first, Seq(1), hold=True)
    store.commit(dict.fromkeys(f"d{i}" for i in range(0, 2500, 2)), Seq(2), hold=True)  # 1,250 forgotten
    store.close()
    store = StateStore(path)
    expected = {f"d{i}": Sent(f"e{i}", i) for i in range(1, 2500, 2)}
    assert store.lookup(list(first)) == expected and store.load().documents == 1250
