"""SIGKILLs that provably land in each dangerous window of a batch, then `bridge once` converges.

test_crash.py kills at random moments; these kill at known points, shown by evidence before the restart:
- PANDA recorded the write, its answer not yet back (a slow reply holds it): the record lags PANDA;
- the write in flight, held by emulator latency, the kill at its arrival (the watch_writes hook): PANDA
  completes it after the client died, as PANDA behind nginx does;
- after the pending note, before any write was made (every write refused before it happens);
- inside the commit's transaction (tests/support/crashpoint.py pauses there): SQLite rolls it back;
- while acknowledged batches of a backfill are held to be saved together (core/grouping.py): the file still
  has the older seq and their pending notes.
Each workload mixes new documents, an update back to content PANDA held before, and a delete.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bridge.emulator import PandaEmulator
from tests.support.couchdb_server import CouchDatabase
from tests.support.pipeline import Pipeline, bulk_update, make_docs, wait_until


def pending_notes(pipeline: Pipeline) -> int:
    """Rows of the state file's pending notes (read as the file holds them, committed data only)."""
    conn = sqlite3.connect(f"file:{pipeline.checkpoint}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT count(*) FROM pending_batches").fetchone()
    finally:
        conn.close()
    return int(count)


def saved_seq(pipeline: Pipeline) -> object:
    """The seq the state file holds (committed data only); None before the first save."""
    conn = sqlite3.connect(f"file:{pipeline.checkpoint}?mode=ro", uri=True)
    try:
        found = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    finally:
        conn.close()
    return None if found is None else found[0]


def writes(panda: PandaEmulator) -> int:
    return sum(r.method in ("PUT", "DELETE") for r in panda.requests)


def start_backfilled(couch_db: CouchDatabase, pipeline: Pipeline, panda: PandaEmulator,
                     command: list[str] | None = None) -> subprocess.Popen[str]:
    """`bridge run` with 20 documents mirrored and committed."""
    pipeline.extra = {"panda": {"timeout": 120.0}, "batch": {"max_age": 0.05}}
    pipeline.write_config()
    couch_db.server.bulk_docs(couch_db.name, make_docs(20))
    process = pipeline.spawn(command or pipeline.command("run"))
    if command is None:
        wait_until(lambda: len(pipeline.rows()) == 20 and pending_notes(pipeline) == 0,
                   "the backfill was committed", process=process)
    return process


def churn(couch_db: CouchDatabase) -> None:
    """New documents, one updated away and back (content PANDA held), one deleted: one batch or two."""
    server, db = couch_db.server, couch_db.name
    live = server.live_docs(db)
    server.bulk_docs(db, make_docs(5, start=100))
    moved = bulk_update(server, db, [live["doc-00001"]], last_name="Away")
    bulk_update(server, db, moved, last_name=live["doc-00001"]["last_name"])
    server.delete_doc(db, "doc-00002")


def kill(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.communicate(timeout=30)
    assert process.returncode == -9


def converges(couch_db: CouchDatabase, pipeline: Pipeline, panda: PandaEmulator) -> None:
    panda.faults.reset()
    panda.watch_writes(None)
    result = pipeline.once()
    assert result.returncode == 0, result.stderr
    assert pipeline.rows() == pipeline.expected(couch_db.server.live_docs(couch_db.name))
    assert not pipeline.deadletter.exists()
    assert pending_notes(pipeline) == 0


def test_kill_after_panda_recorded_the_write_before_the_answer(couch_db, pipeline, panda):
    process = start_backfilled(couch_db, pipeline, panda)
    before = writes(panda)
    panda.slow_replies(90.0, count=1)  # the next answer (of a write already carried out) is held back
    churn(couch_db)
    wait_until(lambda: writes(panda) > before, "PANDA recorded the next write", process=process)
    assert pending_notes(pipeline) > 0  # noted, not committed: the record lags PANDA
    kill(process)
    converges(couch_db, pipeline, panda)


def test_kill_while_the_write_is_in_flight(couch_db, pipeline, panda):
    process = start_backfilled(couch_db, pipeline, panda)
    before = writes(panda)  # the emulator records a write once it is carried out
    arrived = threading.Event()
    panda.set_latency(2.0)  # each write is held this long before PANDA carries it out
    panda.watch_writes(lambda _method, _path: arrived.set())
    churn(couch_db)
    assert arrived.wait(30), "no write arrived"
    kill(process)
    assert writes(panda) == before  # the kill landed while the write was held: PANDA finishes it after
    wait_until(lambda: writes(panda) > before, "PANDA completed the orphaned write")
    converges(couch_db, pipeline, panda)


def test_kill_after_the_pending_note_before_any_write(couch_db, pipeline, panda):
    process = start_backfilled(couch_db, pipeline, panda)
    rows = pipeline.rows()
    panda.fail_writes(503, count=10**6)  # refused before anything is written, every time
    churn(couch_db)
    wait_until(lambda: any(r.status == 503 for r in panda.requests), "a write was refused", process=process)
    assert pending_notes(pipeline) > 0 and pipeline.rows() == rows
    kill(process)
    converges(couch_db, pipeline, panda)


def test_kill_inside_the_commit(couch_db, pipeline, panda, tmp_path: Path):
    flag = tmp_path / "in-commit"
    pipeline.write_config()
    command = [sys.executable, "-m", "tests.support.crashpoint", str(flag), "run", "--config", str(pipeline.config)]
    process = start_backfilled(couch_db, pipeline, panda, command)
    wait_until(flag.exists, "the bridge paused inside its first commit", process=process)
    assert len(pipeline.rows()) == 20 and pending_notes(pipeline) > 0  # PANDA has them; the commit is open
    kill(process)
    churn(couch_db)
    converges(couch_db, pipeline, panda)


def test_kill_while_acknowledged_batches_are_held(couch_db, pipeline, panda):
    # Fixed batches of 5 and 0.3 s per write: a backfill of 100 documents is 20 batches, and none of them is
    # caught up but the last, so their commits are held (for up to a minute, by this configuration).
    pipeline.extra = {"batch": {"max_changes": 5, "grow_to": 5, "max_age": 0.05},
                      "checkpoint": {"group_records": 10**6, "group_seconds": 60.0}}
    pipeline.write_config()
    couch_db.server.bulk_docs(couch_db.name, make_docs(100))
    panda.set_latency(0.3)
    process = pipeline.spawn(pipeline.command("run"))
    wait_until(lambda: len(pipeline.rows()) >= 30, "several batches were acknowledged", process=process)
    assert saved_seq(pipeline) is None and pending_notes(pipeline) > 0  # PANDA has them; the file does not
    kill(process)
    churn(couch_db)
    converges(couch_db, pipeline, panda)


@pytest.fixture(autouse=True)
def _no_latency_left(panda: PandaEmulator):
    yield
    panda.faults.reset()
