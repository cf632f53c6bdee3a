"""Issue 12: `bridge check` and `--dry-run` read everything a run would and write nothing anywhere.

"Nothing" is checked at every end: the emulator's request log holds no write, no state file (or the same
one) is there, and the database has no marker document. `check`'s exit code is compared with the code
`bridge once` stops with on the same configuration, run right after it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.config.loader import load_settings
from bridge.emulator import DEFAULT_API_KEY
from tests.support.couchdb_server import free_port
from tests.support.pipeline import Pipeline, make_docs, wait_until
from tests.support.sse_server import Entry, SseServer
from tests.support.watch import Watched


def writes(panda) -> list:
    return [r for r in panda.requests if r.method != "GET"]


def marker(pipeline, couch_db):
    settings = load_settings(pipeline.config, env={"PANDA_API_KEY": DEFAULT_API_KEY})
    return couch_db.server.get_doc(couch_db.name, f"_local/bridge-{settings.fingerprint_hash()}")


def state_files(pipeline) -> list[Path]:
    return sorted(pipeline.checkpoint.parent.glob("*")) if pipeline.checkpoint.parent.exists() else []


def test_check_passes_on_a_good_configuration_and_writes_nothing(pipeline, couch_db, panda):
    couch_db.server.bulk_docs(couch_db.name, make_docs(10))
    result = pipeline.cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok    configuration", "ok    lock", "ok    checkpoint", "ok    state directory", "ok    source",
        "ok    PANDA dataset"]
    assert "a run creates it" in lines[-1]
    assert writes(panda) == [] and state_files(pipeline) == [] and marker(pipeline, couch_db) is None

    assert pipeline.once().returncode == 0
    panda.clear_requests()
    before = {path: path.read_bytes() for path in state_files(pipeline)}
    result = pipeline.cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "belongs to this configuration" in result.stdout and "ok    database marker" in result.stdout
    assert writes(panda) == []
    assert {path: path.read_bytes() for path in state_files(pipeline)} == before


BAD = {
    # case: (prepare(panda) -> extra command-line arguments, expected exit code, text of the failure)
    "unknown key": (lambda panda: ["--set", "batch.nonsense=1"], 2, "unknown key(s) in [batch]"),
    "bad value": (lambda panda: ["--set", "batch.max_changes=0"], 2, "[batch] max_changes"),
    "source unreachable": (lambda panda: ["--source-url", f"http://127.0.0.1:{free_port()}"], 2,
                           "cannot start"),
    "database missing": (lambda panda: ["--database", "no_such_db"], 4, "NotFoundError"),
    "PANDA user refused": (lambda panda: ["--panda-email", "nobody@example.com"], 3, "AuthError"),
    "dataset missing, creating off": (lambda panda: ["--set", "panda.create_dataset=false"], 4,
                                      "does not exist and creating it is off"),
    "another dataset shares row keys": (lambda panda: panda.create_dataset("contributors-2024", ["a"]) or [], 2,
                                        "shares row keys"),
    "dataset has other columns": (lambda panda: panda.create_dataset("contributors", ["a", "b"]) or [], 2,
                                  "has columns ['a', 'b']"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_check_fails_with_the_exit_code_run_would_stop_with(case, pipeline, couch_db, panda):
    couch_db.server.bulk_docs(couch_db.name, make_docs(5))
    pipeline.write_config()
    prepare, code, text = BAD[case]
    args = prepare(panda)
    panda.clear_requests()
    result = pipeline.cli("check", *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert "FAIL" in result.stdout and text in result.stdout
    assert writes(panda) == [] and state_files(pipeline) == []
    assert marker(pipeline, couch_db) is None
    assert pipeline.cli("once", *args).returncode == code  # what `run` stops with on the same configuration


def test_check_fails_like_run_on_a_checkpoint_of_another_pipeline_and_on_a_held_lock(pipeline, couch_db, panda):
    couch_db.server.bulk_docs(couch_db.name, make_docs(5))
    assert pipeline.once().returncode == 0
    before = {path: path.read_bytes() for path in state_files(pipeline)}
    panda.clear_requests()
    other = ["--dataset", "elsewhere"]
    result = pipeline.cli("check", *other)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "FAIL  checkpoint: CheckpointMismatch" in result.stdout
    assert writes(panda) == [] and {path: path.read_bytes() for path in state_files(pipeline)} == before
    assert pipeline.cli("once", *other).returncode == 5

    watched = Watched(pipeline.start())
    try:
        watched.wait_for("caught up")
        result = pipeline.cli("check")
        assert result.returncode == 7, result.stdout + result.stderr
        assert f"FAIL  lock: InstanceLocked: a running bridge (pid {watched.process.pid})" in result.stdout
    finally:
        assert watched.stop() == 0, watched.log


def test_dry_run_prints_what_it_would_send_and_writes_nothing(pipeline, couch_db, panda):
    server, db = couch_db.server, couch_db.name
    server.bulk_docs(db, make_docs(25))
    result = pipeline.once("--dry-run")
    assert result.returncode == 0, result.stderr
    shown = [json.loads(line[len("would send "):]) for line in result.stdout.splitlines()
             if line.startswith("would send ")]
    expected = pipeline.expected(server.live_docs(db))
    assert len(shown) == 10 and all(line["data"] == expected[line["upsert"]] for line in shown)  # any feed order
    assert "dry run: would send 25 upserts and 0 deletes (first 10 shown) and dead-letter 0 changes" in result.stdout
    assert writes(panda) == [] and state_files(pipeline) == [] and marker(pipeline, couch_db) is None

    # After a real run: changes since are planned against the saved record, and still nothing is written.
    assert pipeline.once().returncode == 0
    live = server.live_docs(db)
    ids = sorted(live)
    server.bulk_docs(db, [dict(live[i], last_name="Changed") for i in ids[:3]])
    server.bulk_docs(db, [{"_id": i, "_rev": live[i]["_rev"], "_deleted": True} for i in ids[-2:]])
    panda.clear_requests()
    before = {path: path.read_bytes() for path in state_files(pipeline)}
    checkpoint = pipeline.cli("checkpoint", "show").stdout
    result = pipeline.once("--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run: would send 3 upserts and 2 deletes" in result.stdout
    assert writes(panda) == []
    assert {path: path.read_bytes() for path in state_files(pipeline)} == before
    assert pipeline.cli("checkpoint", "show").stdout == checkpoint


def test_run_dry_run_follows_and_writes_nothing(pipeline, couch_db, panda):
    server, db = couch_db.server, couch_db.name
    server.bulk_docs(db, make_docs(5))
    watched = Watched(pipeline.start("--dry-run"))
    try:
        watched.wait_for("caught up")
        server.bulk_docs(db, make_docs(1, start=100))
        wait_until(lambda: "batch committed: 1 changes" in watched.log, "the new change was planned",
                   process=watched.process)
    finally:
        assert watched.stop() == 0, watched.log
    assert writes(panda) == [] and state_files(pipeline) == [] and marker(pipeline, couch_db) is None


def test_check_and_status_on_an_event_stream(tmp_path, panda):
    events = {"id_path": "key", "doc_path": "body"}
    entry = Entry(id="1", event="message", data=json.dumps({"key": "k1", "body": {"first_name": "A"}}))
    with SseServer([entry], heartbeat=0.2) as server:
        pipeline = Pipeline(source_url=server.url, database="", panda=panda, dir=tmp_path / "bridge",
                            extra={"source": {"kind": "sse", "events": events, "heartbeat": 0.5}})
        result = pipeline.cli("check")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"ok    source: event stream {server.url} answers" in result.stdout
        shown = json.loads(pipeline.cli("status", "--json").stdout)
        assert shown["pending"] is None and shown["seq"] is None and "source_error" not in shown
    # The stream is gone. `run` would retry it (an event stream has no start-up check), `check` says it fails.
    result = pipeline.cli("check")
    assert result.returncode == 2 and "FAIL  source: cannot start: SourceUnavailable" in result.stdout
    assert writes(panda) == [] and state_files(pipeline) == []
