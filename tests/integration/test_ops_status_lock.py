"""Issue 12: `bridge status` and the one-bridge-per-state-file lock, against real servers and processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from tests.support.couchdb_server import free_port
from tests.support.pipeline import make_docs, wait_until
from tests.support.watch import Watched


def mirrored(pipeline, couch_db) -> bool:
    return pipeline.rows() == pipeline.expected(couch_db.server.live_docs(couch_db.name))


def status(pipeline, *args: str, panda_key: bool = True) -> dict:
    """`bridge status --json`, parsed; without PANDA_API_KEY in its environment unless `panda_key`."""
    pipeline.write_config() if not pipeline.config.exists() else None
    env = pipeline.env()
    if not panda_key:
        del env["PANDA_API_KEY"]
    result = subprocess.run(pipeline.command("status", "--json", *args), env=env, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    shown: dict = json.loads(result.stdout)
    return shown


def test_status_shows_pending_writes_of_a_stopped_bridge_and_the_pid_of_a_running_one(pipeline, couch_db):
    server, db = couch_db.server, couch_db.name
    shown = status(pipeline)  # no state file yet: not an error
    assert shown["seq"] is None and shown["running"] is False and shown["pid"] is None
    assert not pipeline.checkpoint.exists()  # status created nothing

    server.bulk_docs(db, make_docs(20))
    assert pipeline.once().returncode == 0
    checkpoint = json.loads(pipeline.cli("checkpoint", "show").stdout)
    server.bulk_docs(db, make_docs(50, start=100))

    shown = status(pipeline, panda_key=False)  # needs no PANDA key
    assert {"seq", "saved_at", "documents", "dead_letters", "pending", "running", "pid"} <= set(shown)
    assert shown["pending"] == 50
    assert shown["seq"] == checkpoint["seq"] and shown["saved_at"] == checkpoint["saved_at"]
    assert shown["documents"] == 20 and shown["dead_letters"] == 0
    assert shown["running"] is False and shown["pid"] is None

    watched = Watched(pipeline.start())
    try:
        wait_until(lambda: mirrored(pipeline, couch_db), "the 50 new documents arrived", process=watched.process)
        wait_until(lambda: status(pipeline)["pending"] == 0, "status said nothing is pending",
                   process=watched.process)
        shown = status(pipeline)
        assert shown["running"] is True and shown["pid"] == watched.process.pid
        assert shown["documents"] == 70
        text = pipeline.cli("status")
        assert text.returncode == 0 and f"running, pid {watched.process.pid}" in text.stdout
    finally:
        assert watched.stop() == 0, watched.log


def test_status_with_the_source_unreachable_says_pending_null(pipeline, couch_db):
    couch_db.server.bulk_docs(couch_db.name, make_docs(5))
    assert pipeline.once().returncode == 0
    result = pipeline.cli("status", "--json", "--source-url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["pending"] is None and shown["documents"] == 5 and "SourceUnavailable" in shown["source_error"]


def test_a_second_bridge_on_the_same_state_file_exits_7_until_the_first_is_killed(pipeline, couch_db, panda):
    server, db = couch_db.server, couch_db.name
    server.bulk_docs(db, make_docs(30))
    first = Watched(pipeline.start())
    try:
        first.wait_for("caught up")
        wait_until(lambda: mirrored(pipeline, couch_db), "the backfill arrived", process=first.process)
        panda.clear_requests()
        before = pipeline.checkpoint.stat().st_mtime_ns

        for command in ("once", "run"):
            second = pipeline.cli(command, timeout=60)
            assert second.returncode == 7, second.stderr
            assert f"InstanceLocked: the state file {pipeline.checkpoint} is in use by a running bridge " \
                   f"(pid {first.process.pid})" in second.stderr
            assert "mirroring" not in second.stderr and "source: database" not in second.stderr
        assert pipeline.cli("deadletter", "retry").returncode == 7
        assert pipeline.cli("checkpoint", "reset").returncode == 7
        assert panda.requests == []  # refused before anything was read or written
        assert pipeline.checkpoint.stat().st_mtime_ns == before

        # Read-only commands still work while it runs.
        for args in (("status", "--json"), ("checkpoint", "show"), ("deadletter", "list")):
            result = pipeline.cli(*args)
            assert result.returncode == 0, (args, result.stderr)
    finally:
        os.kill(first.process.pid, signal.SIGKILL)
    assert first.wait_exit() == -signal.SIGKILL

    third = Watched(pipeline.start())  # the kernel released the lock with the process: nothing to clean up
    try:
        server.bulk_docs(db, make_docs(10, start=500))
        wait_until(lambda: mirrored(pipeline, couch_db), "the third bridge mirrored new documents",
                   process=third.process)
        assert status(pipeline)["pid"] == third.process.pid
    finally:
        assert third.stop() == 0, third.log
