"""Issue 11: what real CouchDB 3 does that PouchDB Server does not, end to end with the `bridge` process.

String seqs, `feed=eventsource`, heartbeats that keep a longpoll open, a database deleted under an open
feed, `_security` members, a marker the account cannot write, wrong passwords, partitioned databases and
lone surrogates. Every test runs on both servers unless marked; where PouchDB Server lacks the feature,
the mark says so. Deleted-and-recreated databases (exit 5) are in test_faults.py and conflicts in
test_identity.py, both on both servers.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge.config.loader import load_settings
from tests.conftest import fresh_database
from tests.integration.test_identity import dead_letters, delete, once, person, rows_for, save
from tests.support.couch_api import CouchDatabase, CouchServer, with_credentials
from tests.support.fault_proxy import FaultProxy
from tests.support.pipeline import Pipeline, make_docs, wait_until, written_ids
from tests.support.real_couchdb import RUN_PREFIX
from tests.support.watch import Watched

QUICK = {"heartbeat": 0.3, "read_timeout": 1.0, "marker_interval": 0.3}
"""Heartbeats three times a read timeout, and a marker check as often: quiet spells of seconds are long."""
NO_EVENTSOURCE = "PouchDB Server has no feed=eventsource"


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    pipeline.write_config() if not pipeline.config.exists() else None
    return subprocess.run(pipeline.command(*args), env=pipeline.env(), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def saved_seq(pipeline: Pipeline) -> Any:
    result = cli(pipeline, "checkpoint", "show")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["seq"]


def mirrored(pipeline: Pipeline, db: CouchDatabase) -> bool:
    return pipeline.rows() == rows_for(pipeline, db.live_docs())


def following(pipeline: Pipeline, *args: str) -> Watched:
    watched = Watched(pipeline.start(*args))
    watched.wait_for("caught up")
    return watched


def marker_id(pipeline: Pipeline) -> str:
    """The bridge's `_local` marker document: named for the pipeline (PouchDB Server lists no _local_docs)."""
    settings = load_settings(pipeline.config, env=pipeline.env())
    return f"_local/bridge-{settings.fingerprint_hash()}"


@pytest.fixture
def proxy(couch_db: CouchDatabase) -> Iterator[FaultProxy]:
    with FaultProxy(couch_db.server.base_url) as fault_proxy:
        yield fault_proxy


# -- string seqs --------------------------------------------------------------------------------------------


def test_string_seqs_end_to_end(couch_db, pipeline, panda, server_kind):
    """`once`, `run`, `--since last`, `--since now` and `--since SEQ` copied from `checkpoint show`."""
    pipeline.extra = {"source": dict(QUICK)}
    save(couch_db.server, couch_db.name, make_docs(20))
    once(pipeline)
    assert mirrored(pipeline, couch_db)
    first = saved_seq(pipeline)
    if server_kind == "couchdb":
        assert isinstance(first, str) and first.split("-", 1)[0] == "20"  # kept verbatim, opaque

    save(couch_db.server, couch_db.name, make_docs(5, start=100))
    watched = following(pipeline)  # `run`, --since last by default
    assert f"resuming after seq {first}" in watched.log
    wait_until(lambda: mirrored(pipeline, couch_db), "run mirrored the new documents", process=watched.process)
    couch_db.put_doc(person("live", "Live"))
    wait_until(lambda: mirrored(pipeline, couch_db), "a live change arrived", process=watched.process)
    assert watched.stop() == 0, watched.log
    copied = saved_seq(pipeline)

    skipped = save(couch_db.server, couch_db.name, make_docs(3, start=200))
    stderr = once(pipeline, "--since", "now")
    assert "starting at the current end of the feed" in stderr
    assert not set(pipeline.rows()) & {doc["_id"] for doc in skipped}  # now: what was before is skipped

    stderr = once(pipeline, "--since", str(copied))
    assert f"starting after seq {copied}" in stderr
    assert mirrored(pipeline, couch_db)  # the three skipped documents, read again from the copied seq
    assert sorted(written_ids(panda, pipeline.dataset)[-3:]) == sorted(doc["_id"] for doc in skipped)


@pytest.mark.only_on("couchdb", reason="PouchDB Server reads any since; after a failed _changes it crashes")
@pytest.mark.parametrize("seq", ["99", "garbage", "20-g1AAAABjeJzLYWBg-not-a-seq"])
def test_a_malformed_seq_stops_with_exit_6(couch_db, pipeline, panda, seq):
    save(couch_db.server, couch_db.name, make_docs(3))
    result = pipeline.once("--since", seq)
    assert result.returncode == 6, result.stderr
    assert "ProtocolError: CouchDB rejected the request (400: Malformed sequence supplied" in result.stderr
    assert "run `bridge checkpoint reset`" in result.stderr
    assert "retrying" not in result.stderr and "Traceback" not in result.stderr
    assert pipeline.rows() == {}


# -- eventsource ------------------------------------------------------------------------------------------


@pytest.mark.only_on("couchdb", reason=NO_EVENTSOURCE)
def test_eventsource_follows_writes_and_deletes_and_resumes(couch_db, pipeline, panda):
    pipeline.extra = {"source": dict(QUICK, feed="eventsource")}
    docs = save(couch_db.server, couch_db.name, make_docs(10))
    watched = following(pipeline)
    wait_until(lambda: mirrored(pipeline, couch_db), "the backfill arrived", process=watched.process)

    written = save(couch_db.server, couch_db.name, [person("es:1", "Streamed")])
    wait_until(lambda: "_es_3a_1" in pipeline.rows(), "a write appeared", process=watched.process)
    delete(couch_db.server, couch_db.name, [docs[0], written[0]])
    wait_until(lambda: mirrored(pipeline, couch_db), "the deletes disappeared", process=watched.process)
    # Quiet for several read timeouts: CouchDB's `event: heartbeat` keeps the stream alive.
    time.sleep(4 * QUICK["read_timeout"])
    assert "stalled" not in watched.log and "reconnecting" not in watched.log, watched.log
    couch_db.put_doc(person("es:2", "After the quiet"))
    wait_until(lambda: mirrored(pipeline, couch_db), "a write after the quiet spell", process=watched.process)
    assert watched.stop() == 0, watched.log
    assert "following event stream" in watched.log
    stopped_at = saved_seq(pipeline)
    assert isinstance(stopped_at, str)

    save(couch_db.server, couch_db.name, make_docs(4, start=300))
    panda.clear_requests()
    watched = following(pipeline, "--since", "last")
    assert f"resuming after seq {stopped_at}" in watched.log
    wait_until(lambda: mirrored(pipeline, couch_db), "the changes made while stopped", process=watched.process)
    assert sorted(written_ids(panda, pipeline.dataset)) == [f"doc-{n:05d}" for n in range(300, 304)]
    assert watched.stop() == 0, watched.log
    assert "Traceback" not in watched.log


@pytest.mark.only_on("couchdb", reason=NO_EVENTSOURCE)
def test_eventsource_survives_a_server_restart(persistent_couch, panda, tmp_path):
    db = CouchDatabase(persistent_couch, "restarted")
    db.create()
    pipeline = Pipeline(source_url=persistent_couch.url, database=db.name, panda=panda, dir=tmp_path / "bridge",
                        extra={"source": dict(QUICK, feed="eventsource"), "retry": {"initial_delay": 0.1,
                                                                                   "max_delay": 0.5}})
    save(persistent_couch, db.name, make_docs(10))
    watched = following(pipeline)
    wait_until(lambda: mirrored(pipeline, db), "the backfill arrived", process=watched.process)

    persistent_couch.restart()  # same port, same data: the open stream breaks, reconnects are refused a while
    save(persistent_couch, db.name, [person("after:1", "After restart")])
    wait_until(lambda: mirrored(pipeline, db), "the write after the restart arrived", timeout=60,
               process=watched.process)
    assert "reconnecting to" in watched.log
    assert watched.stop() == 0, watched.log


# -- quiet feeds -------------------------------------------------------------------------------------------


def test_a_quiet_longpoll_kept_open_by_heartbeats_is_no_stall_and_no_busy_loop(couch_db, proxy, panda, tmp_path):
    pipeline = Pipeline(source_url=couch_db.server.url_via(proxy.url), database=couch_db.name, panda=panda,
                        dir=tmp_path / "bridge", extra={"source": dict(QUICK, marker_interval=30.0)})
    save(couch_db.server, couch_db.name, make_docs(5))
    watched = following(pipeline)
    wait_until(lambda: mirrored(pipeline, couch_db), "the backfill arrived", process=watched.process)
    proxy.clear_seen()
    time.sleep(5 * QUICK["read_timeout"])  # quiet for five read timeouts
    assert len(proxy.seen_paths("/_changes")) <= 1  # at most the one longpoll still open: not re-asked
    assert "FeedInterrupted" not in watched.log and "retrying" not in watched.log, watched.log
    couch_db.put_doc(person("late", "Late"))
    wait_until(lambda: mirrored(pipeline, couch_db), "the open longpoll delivered a change", process=watched.process)
    assert watched.stop() == 0, watched.log


# -- the database going away under the bridge ----------------------------------------------------------------


FEEDS = ["longpoll", pytest.param("eventsource", marks=pytest.mark.only_on("couchdb", reason=NO_EVENTSOURCE))]


@pytest.mark.parametrize("feed", FEEDS)
def test_database_deleted_under_a_quiet_feed_stops_the_bridge(feed, couch_server, panda, tmp_path):
    """Real CouchDB closes open feeds on a delete; PouchDB Server keeps its longpoll open (the marker
    check on a timer finds the marker gone)."""
    db = fresh_database(couch_server)
    pipeline = Pipeline(source_url=couch_server.url, database=db.name, panda=panda, dir=tmp_path / "bridge",
                        extra={"source": dict(QUICK, feed=feed)})
    try:
        save(couch_server, db.name, make_docs(5))
        watched = following(pipeline)
        wait_until(lambda: mirrored(pipeline, db), "the backfill arrived", process=watched.process)
        db.delete()
        assert watched.wait_exit(timeout=30) == 4, watched.log
    finally:
        db.delete()
    assert "NotFoundError" in watched.log and "deleted" in watched.log, watched.log
    assert "Traceback" not in watched.log


@pytest.mark.parametrize("feed", FEEDS)
def test_a_marker_removed_by_hand_stops_the_bridge(feed, couch_db, pipeline, panda):
    pipeline.extra = {"source": dict(QUICK, feed=feed)}
    save(couch_db.server, couch_db.name, make_docs(5))
    watched = following(pipeline)
    wait_until(lambda: mirrored(pipeline, couch_db), "the backfill arrived", process=watched.process)
    couch_db.delete_doc(marker_id(pipeline))  # the database stays; its feed stays open and quiet
    assert watched.wait_exit(timeout=30) == 4, watched.log
    assert "NotFoundError: database" in watched.log and "its marker _local/bridge-" in watched.log
    assert "Traceback" not in watched.log


# -- accounts --------------------------------------------------------------------------------------------------


def _member_pipeline(db: CouchDatabase, name: str, password: str, panda: Any, tmp_path: Any) -> Pipeline:
    server = db.server
    assert hasattr(server, "create_user")
    server.create_user(name, password)
    server.set_members(db.name, [name])
    return Pipeline(source_url=with_credentials(server.base_url, (name, password)), database=db.name, panda=panda,
                    dir=tmp_path / "bridge", extra={"source": dict(QUICK)})


@pytest.mark.only_on("couchdb", reason="PouchDB Server has no _users or _security")
def test_a_member_account_mirrors_with_member_rights(couch_db, panda, tmp_path):
    name = RUN_PREFIX + "member"
    pipeline = _member_pipeline(couch_db, name, "member-secret", panda, tmp_path)
    try:
        anonymous = requests.get(couch_db.server.base_url + couch_db.name, timeout=10)
        assert anonymous.status_code == 401  # the database really is closed to others
        save(couch_db.server, couch_db.name, make_docs(10))
        stderr = once(pipeline)
        assert mirrored(pipeline, couch_db)
        assert "cannot write the marker" not in stderr  # members may write _local documents
        watched = following(pipeline)
        docs = save(couch_db.server, couch_db.name, [person("m:1", "Member")])
        wait_until(lambda: mirrored(pipeline, couch_db), "a live change", process=watched.process)
        delete(couch_db.server, couch_db.name, docs)
        wait_until(lambda: mirrored(pipeline, couch_db), "a live delete", process=watched.process)
        assert watched.stop() == 0, watched.log
        assert "member-secret" not in watched.log + stderr
    finally:
        couch_db.server.delete_user(name)


def test_an_account_that_cannot_write_the_marker_still_mirrors_and_says_so_once(couch_db, proxy, panda, tmp_path):
    """CouchDB has no read-only role (and validate_doc_update does not apply to `_local` documents): a
    reader-only setup is a gateway that refuses writes, here the proxy answering 403 to every PUT."""
    proxy.respond(403, method="PUT", count=None, body={"error": "forbidden", "reason": "read-only gateway"})
    pipeline = Pipeline(source_url=couch_db.server.url_via(proxy.url), database=couch_db.name, panda=panda,
                        dir=tmp_path / "bridge", extra={"source": dict(QUICK)})
    save(couch_db.server, couch_db.name, make_docs(10))
    stderr = once(pipeline)
    assert mirrored(pipeline, couch_db)
    assert stderr.count("cannot detect that the database was deleted and recreated") == 1, stderr
    assert "cannot write the marker _local/bridge-" in stderr and "read-only gateway" in stderr

    watched = following(pipeline)
    for n in range(3):
        save(couch_db.server, couch_db.name, [person(f"r:{n}", "Read")])
        wait_until(lambda: mirrored(pipeline, couch_db), "a live change", process=watched.process)
    assert watched.stop() == 0, watched.log
    assert watched.log.count("cannot detect that the database was deleted and recreated") == 1, watched.log


@pytest.mark.only_on("couchdb", reason="PouchDB Server has no accounts to refuse")
def test_a_wrong_password_stops_with_exit_3_after_one_request(couch_db, proxy, panda, tmp_path):
    server: CouchServer = couch_db.server
    name = RUN_PREFIX + "wrongpw"
    assert hasattr(server, "create_user")
    server.create_user(name, "the-right-one")
    try:
        server.set_members(couch_db.name, [name])
        pipeline = Pipeline(source_url=with_credentials(proxy.url, (name, "not-the-password")),
                            database=couch_db.name, panda=panda, dir=tmp_path / "bridge")
        result = pipeline.once()
        assert result.returncode == 3, result.stderr
        assert "AuthError: CouchDB refused the credentials" in result.stderr
        assert "Name or password is incorrect." in result.stderr
        assert [(seen.method, seen.status) for seen in proxy.seen] == [("GET", 401)]  # one request, no retry
        assert "not-the-password" not in result.stderr and "retrying" not in result.stderr
    finally:
        server.delete_user(name)


# -- documents ---------------------------------------------------------------------------------------------


@pytest.mark.only_on("couchdb", reason="PouchDB Server has no partitioned databases")
def test_partitioned_databases_mirror_and_delete(couch_server, panda, tmp_path):
    db = fresh_database(couch_server, partitioned=True)
    try:
        pipeline = Pipeline(source_url=couch_server.url, database=db.name, panda=panda, dir=tmp_path / "bridge")
        docs = save(couch_server, db.name, [person(f"{part}:{n}", f"P{n}", part=part)
                                            for part in ("east", "west") for n in range(5)])
        once(pipeline)
        assert set(pipeline.rows()) == {f"_{part}_3a_{n}" for part in ("east", "west") for n in range(5)}
        assert mirrored(pipeline, db)
        delete(couch_server, db.name, [doc for doc in docs if doc["_id"].startswith("east:")])
        save(couch_server, db.name, [dict(docs[7], first_name="Edited")])
        once(pipeline)
        assert mirrored(pipeline, db) and len(pipeline.rows()) == 5
    finally:
        db.delete()


LONE = {"_id": "lone", "first_name": "x\ud800y", "last_name": "Surrogate", "job": {"employer": "E"}}


@pytest.mark.only_on("pouchdb", reason="CouchDB 3 refuses such documents (test_couchdb_refuses_lone_surrogates)")
def test_a_lone_surrogate_is_dead_lettered_and_holds_nothing_up(couch_db, pipeline, panda):
    pipeline.extra = {"source": {"page_size": 5}}
    save(couch_db.server, couch_db.name, make_docs(6) + [copy.deepcopy(LONE)] + make_docs(6, start=50))
    raw = couch_db.server._send("GET", f"{couch_db.name}/_changes", params={"include_docs": "true"}).content
    assert b"\\ud800" in raw  # the server stored it and sends it as an escape that orjson refuses

    stderr = once(pipeline)
    expected = {i: d for i, d in couch_db.live_docs().items() if i != "lone"}
    assert pipeline.rows() == rows_for(pipeline, expected)  # every other document, on every page
    (letter,) = dead_letters(pipeline)
    assert letter["doc_id"] == "lone" and "lone UTF-16 surrogate" in letter["reason"]
    assert "first_name" in letter["reason"] and "\\ud800" in letter["doc"]["row"]  # kept, as JSON text
    assert "dead-lettered 'lone'" in stderr and "FeedInterrupted" not in stderr

    save(couch_db.server, couch_db.name, make_docs(2, start=90))  # the feed goes on past that page
    once(pipeline)
    assert pipeline.rows() == rows_for(pipeline, {i: d for i, d in couch_db.live_docs().items() if i != "lone"})
    assert len(dead_letters(pipeline)) == 1
    fixed = dict(couch_db.get_doc("lone") or {}, first_name="Fixed")
    couch_db.put_doc(fixed)
    once(pipeline)
    assert pipeline.rows()["lone"] == ["Fixed", "Surrogate", "E"]


@pytest.mark.only_on("couchdb", reason="what CouchDB 3 does with lone surrogates (PouchDB stores them)")
def test_couchdb_refuses_lone_surrogates(couch_db):
    response = couch_db.server._send("PUT", f"{couch_db.name}/lone", json=LONE)
    assert response.status_code == 400 and response.json()["reason"] == "invalid UTF-8 JSON"
    # UTF-8 bytes of a surrogate in a document id are stored, but every JSON answer shows U+FFFD instead.
    stored = couch_db.server._send("PUT", f"{couch_db.name}/%ED%A0%80", json={"first_name": "odd id"})
    assert stored.status_code == 201
    assert [row["id"] for row in couch_db.changes_all()["results"]] == ["\ufffd"]
