"""The test-server fixtures themselves, on PouchDB Server and real CouchDB: databases, documents, the feed,
restart and kill."""

from __future__ import annotations

import os

import requests

from tests.support.clock import ManualClock
from tests.support.couch_api import CouchDatabase, CouchServer, seq_number
from tests.support.real_couchdb import ENV_URL

IDENTITY = {"Accept-Encoding": "identity"}


def test_server_answers_on_loopback(couch_server: CouchServer, server_kind: str) -> None:
    if not os.environ.get(ENV_URL):
        assert couch_server.base_url.startswith("http://127.0.0.1:")
    body = requests.get(couch_server.url, headers=IDENTITY, timeout=5).json()
    if server_kind == "pouchdb":
        assert body["version"] == "4.2.0"
        assert body["pouchdb-adapters"] == ["memory"]
    else:
        assert body["couchdb"] == "Welcome" and body["version"].startswith("3.")


def test_each_test_gets_a_fresh_empty_database(couch_db: CouchDatabase) -> None:
    info = requests.get(couch_db.url, headers=IDENTITY, timeout=5).json()
    assert info["db_name"] == couch_db.name
    assert info["doc_count"] == 0
    assert couch_db.server.changes_all(couch_db.name)["results"] == []


def test_documents_written_appear_in_the_feed(couch_db: CouchDatabase) -> None:
    server, db = couch_db.server, couch_db.name
    results = server.bulk_docs(db, [{"_id": "a", "n": 1}, {"_id": "b", "n": 2}, {"_id": "ĉapelo", "n": 3}])
    assert [r["id"] for r in results] == ["a", "b", "ĉapelo"]
    assert all("rev" in r for r in results)
    server.put_doc(db, {"_id": "_design/app", "views": {}})
    created = server.put_doc(db, {"n": 4})  # server-assigned id
    server.delete_doc(db, "b")

    feed = server.changes_all(db)
    assert len(feed["results"]) == 5
    assert seq_number(feed["last_seq"]) == 6  # six writes (an opaque string on CouchDB: only a hint)
    deleted = {row["id"] for row in feed["results"] if row.get("deleted")}
    assert deleted == {"b"}
    live = server.live_docs(db)
    assert set(live) == {"a", "ĉapelo", "_design/app", created["id"]}  # _all_docs would miss "ĉapelo"
    assert live["ĉapelo"]["n"] == 3
    assert server.get_doc(db, "b") is None
    assert server.get_doc(db, "_design/app") is not None


def test_persistent_server_keeps_data_across_restart(persistent_couch: CouchServer) -> None:
    persistent_couch.create_db("kept")
    persistent_couch.bulk_docs("kept", [{"_id": "x%d" % i} for i in range(10)])
    port = persistent_couch.port

    persistent_couch.restart()

    assert persistent_couch.port == port
    assert set(persistent_couch.live_docs("kept")) == {"x%d" % i for i in range(10)}
    persistent_couch.put_doc("kept", {"_id": "after"})
    assert len(persistent_couch.changes_all("kept")["results"]) == 11


def test_kill_makes_the_server_unreachable_and_restart_brings_it_back(persistent_couch: CouchServer) -> None:
    persistent_couch.create_db("crash")
    persistent_couch.put_doc("crash", {"_id": "before"})

    persistent_couch.kill()

    assert not persistent_couch.running
    try:
        requests.get(persistent_couch.url, headers=IDENTITY, timeout=2)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError("a killed server still answered")
    persistent_couch.restart()
    assert persistent_couch.get_doc("crash", "before") is not None


def test_manual_clock_moves_only_when_told(manual_clock: ManualClock) -> None:
    assert manual_clock.now() == 0.0
    manual_clock.advance(2.5)
    assert manual_clock() == 2.5
