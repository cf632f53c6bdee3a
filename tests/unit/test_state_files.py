"""The bridge's own files fail with StateError (exit 8), count what they hold, and make renames durable."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from bridge.core.planning import Refusal
from bridge.errors import StateError
from bridge.model import Seq
from bridge.state.checkpoint import StateStore
from bridge.state.deadletter import DeadLetterFile

# Exit codes as the README lists them ("Exit codes"), not read from the classes under test.
STATE_EXIT = 8


def refusal(doc_id: str) -> Refusal:
    return Refusal(doc_id, Seq(1), "refused")


def test_a_torn_last_line_is_not_counted_as_a_dead_letter(tmp_path: Path) -> None:
    letters = DeadLetterFile(tmp_path / "dead.jsonl")
    letters.append([refusal("a")])
    with letters.path.open("ab") as handle:
        handle.write(b'{"time": "2026-')  # a crash in the middle of an append
    assert letters.append([refusal("b"), refusal("c")]) == 2
    assert [entry.doc_id for entry in letters.entries()] == ["a", "b", "c"]


@pytest.mark.parametrize("line", [b'{"doc_id": "a"}', b"[1, 2]", b'"text"',
                                  b'{"time": 1, "doc_id": "a", "seq": 1, "external_id": null, "row": null, '
                                  b'"reason": "r", "status": null, "doc": null}'])
def test_a_line_that_is_not_a_dead_letter_is_a_state_error_naming_the_file(tmp_path: Path, line: bytes) -> None:
    letters = DeadLetterFile(tmp_path / "dead.jsonl")
    letters.append([refusal("a")])
    with letters.path.open("ab") as handle:
        handle.write(line + b"\n")
    with pytest.raises(StateError) as caught:
        list(letters.entries())
    assert str(letters.path) in str(caught.value) and "line 2" in str(caught.value)
    assert caught.value.exit_code == STATE_EXIT


def test_an_unwritable_dead_letter_file_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(StateError) as caught:
        DeadLetterFile(blocker / "dead.jsonl").append([refusal("a")])
    assert caught.value.exit_code == STATE_EXIT


def _directory_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_the_rewrite_of_the_dead_letter_file_fsyncs_its_directory(tmp_path: Path, monkeypatch) -> None:
    letters = DeadLetterFile(tmp_path / "dead.jsonl")
    letters.append([refusal("a"), refusal("b")])
    kept = list(letters.entries())[1:]
    synced = _directory_fsyncs(monkeypatch)
    letters.replace(kept)
    assert synced, "os.replace is durable only once the directory is fsynced"
    assert [entry.doc_id for entry in letters.entries()] == ["b"]


def test_creating_the_dead_letter_file_fsyncs_its_directory(tmp_path: Path, monkeypatch) -> None:
    synced = _directory_fsyncs(monkeypatch)
    DeadLetterFile(tmp_path / "dead.jsonl").append([refusal("a")])
    assert synced


def test_a_file_that_is_not_a_state_file_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StateError) as caught:
        StateStore(path)
    assert str(path) in str(caught.value) and caught.value.exit_code == STATE_EXIT


def _foreign_state(path: Path, meta_value: str = '"x"') -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (meta_value,))
    conn.execute("CREATE TABLE sent (doc_id TEXT PRIMARY KEY)")  # not the bridge's columns
    conn.commit()
    conn.close()


def test_sqlite_errors_while_reading_become_state_errors(tmp_path: Path) -> None:
    path = tmp_path / "state"
    _foreign_state(path)
    store = StateStore(path)
    try:
        with pytest.raises(StateError) as caught:
            store.lookup(["a"])
        assert str(path) in str(caught.value) and caught.value.exit_code == STATE_EXIT
        with pytest.raises(StateError):
            store.owners(["a"])
    finally:
        store.close()


def test_a_damaged_meta_value_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state"
    _foreign_state(path, meta_value="{not json")
    store = StateStore(path)
    try:
        with pytest.raises(StateError):
            store.load()
    finally:
        store.close()
