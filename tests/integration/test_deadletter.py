"""Issue 3: rows that cannot be delivered are set aside in the dead-letter file, the rest arrive, and
`bridge deadletter list|retry` show and deliver them once they are fixed.

PANDA never refuses a row the bridge builds (it pre-validates ids and cell counts), so the emulator's
`reject_rows` switch stands in for a PANDA that does: its own validation answers with PANDA's real 400s.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

import pytest

from tests.support.couch_api import seq_number
from tests.support.pipeline import COLUMNS, Pipeline, make_docs, wait_until
from tests.support.watch import Watched


def row_seq(server, seq, pouchdb_seq):
    """The seq of the row: exactly `pouchdb_seq` on PouchDB; on CouchDB an opaque "N-..." string, whose N
    depends on how the two shards' rows interleave, so only its range is known."""
    if server.kind == "pouchdb":
        return seq == pouchdb_seq
    return isinstance(seq, str) and 1 <= seq_number(seq) <= 30


def by_code(pipeline: Pipeline, docs: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Expected rows when the external_id is the `code` field (documents without one have no row)."""
    return pipeline.expected({doc["code"]: doc for doc in docs.values() if "code" in doc})


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pipeline.command(*args), env=pipeline.env(), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def letters(pipeline: Pipeline) -> list[dict[str, Any]]:
    if not pipeline.deadletter.exists():
        return []
    return [json.loads(line) for line in pipeline.deadletter.read_text().splitlines() if line.strip()]


def test_rejected_rows_are_set_aside_listed_and_retried(couch_db, pipeline, panda):
    server, db = couch_db.server, couch_db.name
    pipeline.extra["mapping"] = {"external_id": "code"}
    docs = make_docs(30)
    for doc in docs:
        doc["code"] = f"c{doc['n']}"
    docs[3]["code"], docs[17]["code"] = "forbidden-1", "forbidden-2"  # an external_id PANDA forbids
    docs[8]["code"], docs[25]["code"] = "short-1", "short-2"  # rows PANDA counts the wrong cells of
    del docs[12]["code"]  # no external_id at all: the mapping refuses it
    server.bulk_docs(db, docs)
    panda.reject_rows(r"^forbidden", "external_id")
    panda.reject_rows(r"^short", "data")

    watched = Watched(pipeline.start())
    good = {doc_id: doc for doc_id, doc in server.live_docs(db).items()
            if not doc.get("code", "x").startswith(("forbidden", "short"))}
    wait_until(lambda: pipeline.rows() == by_code(pipeline, good) and len(letters(pipeline)) == 5,
               "the good rows arrived and the bad ones were set aside", process=watched.process)
    entries = {entry["doc_id"]: entry for entry in letters(pipeline)}
    assert sorted(entries) == sorted(docs[i]["_id"] for i in (3, 8, 12, 17, 25))
    forbidden, short, unmapped = entries[docs[3]["_id"]], entries[docs[8]["_id"]], entries[docs[12]["_id"]]
    assert "external_id can only contain letters, numbers, underscores and dashes" in forbidden["reason"]
    assert forbidden["status"] == 400 and forbidden["external_id"] == "forbidden-1"
    assert forbidden["row"] == ["First3", "Last3", "Employer 3"] and row_seq(server, forbidden["seq"], 4)
    assert "Got 2 data fields. Expected 3." in short["reason"] and short["row"] == ["First8", "Last8", "Employer 8"]
    assert "no external_id" in unmapped["reason"] and "code" in unmapped["reason"]
    assert row_seq(server, unmapped["seq"], 13) and unmapped["doc"]["_id"] == docs[12]["_id"]
    assert all(entry["time"] for entry in entries.values())

    # The bridge keeps running: a later document still arrives.
    server.put_doc(db, {"_id": "late", "code": "late-1", "first_name": "Late"})
    wait_until(lambda: "late-1" in pipeline.rows(), "a later document arrived", process=watched.process)
    assert watched.stop(signal.SIGTERM) == 0, watched.log
    assert "dead-lettered" in watched.log

    listed = cli(pipeline, "deadletter", "list")
    assert listed.returncode == 0, listed.stderr
    shown = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(line["doc_id"] for line in shown) == sorted(entries)
    assert all(line["reason"] for line in shown)

    # Fix the documents in CouchDB, then retry: they are delivered and the file empties.
    live = server.live_docs(db)
    fixed = []
    for n, i in enumerate((3, 8, 12, 17, 25)):
        doc = dict(live[docs[i]["_id"]], code=f"fixed-{n}")
        fixed.append(doc)
    server.bulk_docs(db, fixed)
    retried = cli(pipeline, "deadletter", "retry")
    assert retried.returncode == 0, retried.stderr
    assert "5 delivered, 0 still refused" in retried.stderr
    assert letters(pipeline) == []
    live = server.live_docs(db)
    assert pipeline.rows() == by_code(pipeline, live)

    result = pipeline.once()  # the fixes also come through the feed: nothing left to do, nothing refused
    assert result.returncode == 0, result.stderr
    assert pipeline.rows() == by_code(pipeline, server.live_docs(db))
    assert letters(pipeline) == []


def test_a_refusal_that_persists_stays_in_the_file(couch_db, pipeline, panda):
    server, db = couch_db.server, couch_db.name
    server.bulk_docs(db, make_docs(10))
    panda.reject_rows(r"^doc-0000[12]$")
    result = pipeline.once()
    assert result.returncode == 0, result.stderr
    assert sorted(entry["doc_id"] for entry in letters(pipeline)) == ["doc-00001", "doc-00002"]

    retried = cli(pipeline, "deadletter", "retry")  # PANDA still refuses them
    assert retried.returncode == 1, retried.stderr
    assert sorted(entry["doc_id"] for entry in letters(pipeline)) == ["doc-00001", "doc-00002"]

    panda.reject_rows(None)  # PANDA's rule relaxed
    retried = cli(pipeline, "deadletter", "retry")
    assert retried.returncode == 0, retried.stderr
    assert letters(pipeline) == []
    assert pipeline.rows() == pipeline.expected(server.live_docs(db))


def test_a_dataset_whose_columns_changed_under_the_bridge_stops_it(couch_db, pipeline, panda):
    server, db = couch_db.server, couch_db.name
    server.bulk_docs(db, make_docs(10))
    watched = Watched(pipeline.start())
    wait_until(lambda: len(pipeline.rows()) == 10, "the backfill arrived", process=watched.process)
    wait_until(lambda: seq_number(json.loads(cli(pipeline, "checkpoint", "show").stdout).get("seq") or 0) == 10,
               "the backfill was committed")
    before = json.loads(cli(pipeline, "checkpoint", "show").stdout)["seq"]

    panda.create_dataset(pipeline.dataset, [*COLUMNS, "extra"])  # recreated by someone else, wider
    server.bulk_docs(db, make_docs(5, start=100))
    wait_until(lambda: watched.process.poll() is not None or letters(pipeline) != [], "the bridge reacted")
    if watched.process.poll() is None:
        watched.kill()
        pytest.fail("the bridge dead-lettered rows instead of stopping:\n" + watched.log[-2000:])
    assert watched.wait_exit() == 2, watched.log
    assert "ConfigError" in watched.log and "now expects 4 cells per row, not the 3 columns" in watched.log
    assert letters(pipeline) == []  # not a reason to dead-letter every row
    assert json.loads(cli(pipeline, "checkpoint", "show").stdout)["seq"] == before

    panda.create_dataset(pipeline.dataset, COLUMNS)  # what the message asks for
    assert cli(pipeline, "checkpoint", "reset").returncode == 0
    result = pipeline.once()
    assert result.returncode == 0, result.stderr
    assert pipeline.rows() == pipeline.expected(server.live_docs(db))
