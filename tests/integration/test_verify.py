"""Issue 15, end to end: `bridge verify`, `bridge repair` and `bridge checkpoint rebuild` as real processes.

The 3,000-document scenario and the rebuild run on PouchDB Server and on a real CouchDB 3.4.3 started from
../shared/couchdb (tests/support/real_couchdb.py). On CouchDB, three documents are purged: `_purge` leaves no trace
in the feed. PouchDB Server has no `_purge`, so there the same three documents are deleted instead (a tombstone
the bridge has not read yet), and the counts agree.
PANDA is edited behind the bridge's back through its HTTP API, as a person or another tool would.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge.core import external_id as ids
from bridge.emulator import DEFAULT_API_KEY, DEFAULT_EMAIL, PandaEmulator
from tests.support.couchdb_server import CouchServer, free_port
from tests.support.ops import scrape, value
from tests.support.pipeline import Pipeline, deleted_ids, make_docs, stop, wait_until, written_ids
from tests.support.real_couchdb import RealCouchDB
from tests.support.watch import Watched

KEEP_FILTER = {"_id": "_design/app", "filters": {"keep": "function(doc, req) { return doc.keep !== false; }"}}


class Source:
    """One database on either server, with what the scenario needs from it."""

    def __init__(self, kind: str, server: CouchServer) -> None:
        self.kind, self.server = kind, server
        self.db = server.db_prefix + uuid.uuid4().hex
        server.create_db(self.db)

    @property
    def url(self) -> str:
        return self.server.url

    def save(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for start in range(0, len(docs), 500):
            part = docs[start:start + 500]
            for doc, result in zip(part, self.server.bulk_docs(self.db, part), strict=True):
                assert "rev" in result, result
                doc["_rev"] = result["rev"]
        return docs

    def forget(self, docs: list[dict[str, Any]]) -> None:
        """Make documents vanish: purged on CouchDB (no trace in the feed), deleted on PouchDB Server."""
        if isinstance(self.server, RealCouchDB):
            self.server.purge(self.db, docs)
        else:
            self.save([{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True} for d in docs])

    def live(self) -> dict[str, dict[str, Any]]:
        return self.server.live_docs(self.db)


@pytest.fixture
def source(server_kind: str, couch_server: CouchServer) -> Iterator[Source]:
    made = Source(server_kind, couch_server)
    try:
        yield made
    finally:
        couch_server.delete_db(made.db)


def make_pipeline(source: Source, panda: PandaEmulator, tmp_path: Any, extra: dict[str, Any] | None = None) -> Pipeline:
    pipeline = Pipeline(source_url=source.url, database=source.db, panda=panda, dir=tmp_path / "bridge")
    pipeline.extra = {"verify": {"settle": 0.5}, **(extra or {})}
    pipeline.write_config()
    return pipeline


def panda_api(panda: PandaEmulator, method: str, path: str, body: Any = None) -> requests.Response:
    """A call to PANDA as another client would make it (not through the bridge)."""
    headers = {"PANDA-EMAIL": DEFAULT_EMAIL, "PANDA-API-KEY": DEFAULT_API_KEY, "Content-Type": "application/json"}
    response = requests.request(method, f"{panda.url}/api/1.0/{path}", headers=headers, timeout=10,
                                data=None if body is None else json.dumps(body))
    assert response.status_code in (200, 202, 204), response.text
    return response


def bridge(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(pipeline.command(*args), env=pipeline.env(), capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def verify(pipeline: Pipeline) -> tuple[int, dict[str, Any]]:
    result = bridge(pipeline, "verify", "--json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {kind: report[kind]["count"] for kind in ("missing", "stale", "extra_owned", "extra_unowned")}


def test_verify_finds_each_kind_and_repair_fixes_them(source: Source, panda: PandaEmulator, tmp_path: Any) -> None:
    source.save([dict(KEEP_FILTER)])
    docs = source.save(make_docs(3000))
    pipeline = make_pipeline(source, panda, tmp_path, {"source": {"filter": "app/keep"}})
    assert bridge(pipeline, "once").returncode == 0
    assert pipeline.rows() == pipeline.expected(source.live())

    code, report = verify(pipeline)
    assert (code, report["in_sync"], report["source_rows"], report["panda_rows"]) == (0, True, 3000, 3000)

    slug = pipeline.dataset
    removed = [ids.encode(d["_id"]) for d in docs[100:107]]
    for eid in removed:
        panda_api(panda, "DELETE", f"dataset/{slug}/data/{eid}/")
    edited = [ids.encode(d["_id"]) for d in docs[200:205]]
    panda_api(panda, "PUT", f"dataset/{slug}/data/",
              {"objects": [{"external_id": eid, "data": ["Edited", "By hand", None]} for eid in edited]})
    strangers = [f"hand-{n}" for n in range(4)]
    panda_api(panda, "PUT", f"dataset/{slug}/data/",
              {"objects": [{"external_id": eid, "data": ["Not", "From", "CouchDB"]} for eid in strangers]})
    source.forget(docs[300:303])
    source.save([dict(doc, keep=False) for doc in docs[400:402]])
    gone = [ids.encode(d["_id"]) for d in docs[300:303] + docs[400:402]]

    code, report = verify(pipeline)
    assert code == 1 and report["in_sync"] is False
    assert counts(report) == {"missing": 7, "stale": 5, "extra_owned": 5, "extra_unowned": 4}
    assert {e["external_id"] for e in report["missing"]["examples"]} == set(removed)
    assert {e["external_id"] for e in report["stale"]["examples"]} == set(edited)
    assert {e["external_id"] for e in report["extra_owned"]["examples"]} == set(gone)
    assert {e["external_id"] for e in report["extra_unowned"]["examples"]} == set(strangers)
    stale = report["stale"]["examples"][0]
    assert stale["panda"] == ["Edited", "By hand", None] and stale["source"] != stale["panda"]

    wanted = pipeline.expected({i: d for i, d in source.live().items() if d.get("keep") is not False})
    result = bridge(pipeline, "repair")
    assert result.returncode == 1, result.stderr  # the 4 unowned rows are kept
    code, report = verify(pipeline)
    assert code == 1 and counts(report) == {"missing": 0, "stale": 0, "extra_owned": 0, "extra_unowned": 4}
    stranger_rows = {eid: ["Not", "From", "CouchDB"] for eid in strangers}
    assert pipeline.rows() == {**wanted, **stranger_rows}

    result = bridge(pipeline, "repair", "--delete-unowned")
    assert result.returncode == 0, result.stderr
    code, report = verify(pipeline)
    assert (code, report["in_sync"]) == (0, True)
    assert pipeline.rows() == wanted

    # The record was updated with the repairs: following the feed again sends nothing.
    panda.clear_requests()
    assert bridge(pipeline, "once").returncode == 0
    assert written_ids(panda, slug) == [] and deleted_ids(panda, slug) == []


def test_repair_dry_run_changes_nothing(couch_db, pipeline: Pipeline, panda: PandaEmulator) -> None:
    couch_db.server.bulk_docs(couch_db.name, make_docs(50))
    pipeline.write_config()
    assert bridge(pipeline, "once").returncode == 0
    panda_api(panda, "DELETE", f"dataset/{pipeline.dataset}/data/doc-00003/")
    before = pipeline.rows()
    panda.clear_requests()
    result = bridge(pipeline, "repair", "--dry-run", "--json")
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["repair"]["upserted"] == {"count": 1, "examples": ["doc-00003"]}
    assert pipeline.rows() == before
    assert all(r.method == "GET" for r in panda.requests)
    # Every listing page asks for what contract 11 says makes it safe: an explicit limit of at most 1000,
    # q=*:* (no cross-dataset noise) and newest first (an updated row moves to the front, not past the reader).
    listings = [r.query for r in panda.requests if r.path == f"/api/1.0/dataset/{pipeline.dataset}/data/"]
    assert listings and all(q["limit"] == ["1000"] and q["q"] == ["*:*"] and q["sort"] == ["_docid_ desc"]
                            for q in listings)


def test_verify_beside_a_running_bridge_under_steady_writes_is_in_sync(couch_db, pipeline: Pipeline) -> None:
    server, db = couch_db.server, couch_db.name
    docs = {d["_id"]: d for d in make_docs(400)}
    for doc, result in zip(docs.values(), server.bulk_docs(db, list(docs.values())), strict=True):
        doc["_rev"] = result["rev"]
    pipeline.extra = {"verify": {"settle": 1.0}}
    pipeline.write_config()
    process = pipeline.start()
    writing = threading.Event()
    done = threading.Event()

    def write() -> None:  # a steady stream: a new document and an update every 20 ms, until told to stop
        n = 400
        while not done.wait(0.02):
            old = docs[f"doc-{(n * 7) % 400:05d}"]
            new = make_docs(1, start=n)[0]
            results = server.bulk_docs(db, [dict(old, last_name=f"Changed {n}"), new])
            old["_rev"], new["_rev"] = results[0]["rev"], results[1]["rev"]
            old["last_name"] = f"Changed {n}"
            docs[new["_id"]] = new
            n += 1
            writing.set()

    writer = threading.Thread(target=write, daemon=True)
    try:
        wait_until(lambda: len(pipeline.rows()) >= 400, "the first 400 rows are mirrored", process=process)
        writer.start()
        assert writing.wait(10)
        code, report = verify(pipeline)
        assert report["source_rows"] > 400  # the writes went on during the verify
        assert (code, report["in_sync"]) == (0, True), report
    finally:
        done.set()
        writer.join(10)
        code, err = stop(process)
    assert code == 0, err


@pytest.mark.parametrize("external_id", ["_id", "code"])
def test_rebuild_then_replay_from_zero_sends_nothing(source: Source, panda: PandaEmulator, tmp_path: Any,
                                                     external_id: str) -> None:
    source.save([dict(KEEP_FILTER)])
    docs = make_docs(500) + [{"_id": "user:42", "first_name": "Ünï", "job": {"employer": "Ç"}}]
    docs = source.save([dict(doc, code=f"C:{n}") for n, doc in enumerate(docs)])
    source.save([{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True} for d in docs[10:20]])  # tombstones
    pipeline = make_pipeline(source, panda, tmp_path, {"mapping": {"external_id": external_id}})

    def wanted() -> dict[str, Any]:
        rows = pipeline.expected(source.live())
        if external_id == "_id":
            return rows
        return {ids.encode(doc["code"]): rows[ids.encode(doc_id)] for doc_id, doc in source.live().items()
                if not doc_id.startswith("_design/")}

    assert bridge(pipeline, "once").returncode == 0
    assert pipeline.rows() == wanted()

    pipeline.checkpoint.unlink()
    result = bridge(pipeline, "checkpoint", "rebuild")
    assert result.returncode == 0, result.stderr
    rebuilt = json.loads(result.stdout)
    assert (rebuilt["rows"], rebuilt["recorded"], rebuilt["complete"]) == (491, 491, True)
    assert verify(pipeline)[0] == 0

    panda.clear_requests()
    watched = Watched(pipeline.start("--since", "0"))
    try:
        watched.wait_for("caught up at seq", timeout=60)
    finally:
        code = watched.stop()
    assert code == 0, watched.log
    assert "starting after seq 0" in watched.log
    assert written_ids(panda, pipeline.dataset) == [] and deleted_ids(panda, pipeline.dataset) == []
    assert pipeline.rows() == wanted()


def test_rebuild_refuses_a_state_file_that_holds_a_checkpoint(couch_db, pipeline: Pipeline) -> None:
    couch_db.server.bulk_docs(couch_db.name, make_docs(5))
    pipeline.write_config()
    assert bridge(pipeline, "once").returncode == 0
    result = bridge(pipeline, "checkpoint", "rebuild")
    assert result.returncode == 2 and "already holds a checkpoint" in result.stderr


def test_repair_and_rebuild_refuse_beside_a_running_bridge(couch_db, pipeline: Pipeline) -> None:
    couch_db.server.bulk_docs(couch_db.name, make_docs(20))
    process = pipeline.start()
    try:
        wait_until(lambda: len(pipeline.rows()) == 20, "the rows are mirrored", process=process)
        for args in (("repair",), ("checkpoint", "rebuild")):
            result = bridge(pipeline, *args)
            assert result.returncode == 7, result.stderr
            assert "InstanceLocked" in result.stderr and "in use by a running bridge" in result.stderr
    finally:
        code, err = stop(process)
    assert code == 0, err


def test_periodic_verify_repairs_inside_bridge_run(couch_db, pipeline: Pipeline, panda: PandaEmulator) -> None:
    couch_db.server.bulk_docs(couch_db.name, make_docs(30))
    pipeline.extra = {"verify": {"every": "1s", "repair": True, "settle": 0.2}}
    pipeline.write_config()
    process = pipeline.start()
    try:
        wait_until(lambda: len(pipeline.rows()) == 30, "the rows are mirrored", process=process)
        panda_api(panda, "DELETE", f"dataset/{pipeline.dataset}/data/doc-00007/")
        panda_api(panda, "PUT", f"dataset/{pipeline.dataset}/data/",
                  {"objects": [{"external_id": "doc-00008", "data": ["x", "y", "z"]}]})
        wanted = pipeline.expected(couch_db.server.live_docs(couch_db.name))
        wait_until(lambda: pipeline.rows() == wanted, "the periodic repair restored both rows", timeout=60,
                   process=process)
    finally:
        code, err = stop(process)
    assert code == 0, err
    assert "periodic verify: NOT in sync" in err and "repair: 2 upserted" in err


def test_periodic_verify_numbers_are_exported_on_metrics(couch_db, pipeline: Pipeline, panda: PandaEmulator) -> None:
    couch_db.server.bulk_docs(couch_db.name, make_docs(20))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    pipeline.extra = {"verify": {"every": "1s", "settle": 0.2}, "http": {"listen": f"127.0.0.1:{port}"}}
    pipeline.write_config()
    process = pipeline.start()
    try:
        wait_until(lambda: len(pipeline.rows()) == 20, "the rows are mirrored", process=process)
        before = scrape(base)
        assert value(before, "bridge_verify_differences", pipeline=pipeline.dataset, kind="missing") == 0
        panda_api(panda, "DELETE", f"dataset/{pipeline.dataset}/data/doc-00003/")

        def missing_one() -> bool:
            found = scrape(base)
            return (value(found, "bridge_verify_differences", pipeline=pipeline.dataset, kind="missing") == 1
                    and value(found, "bridge_verify_last_timestamp_seconds", pipeline=pipeline.dataset) > 0)

        wait_until(missing_one, "/metrics showed the missing row the periodic verify found", timeout=60,
                   process=process)
        found = scrape(base)
        for kind in ("stale", "extra_owned", "extra_unowned"):
            assert value(found, "bridge_verify_differences", pipeline=pipeline.dataset, kind=kind) == 0
    finally:
        code, err = stop(process)
    assert code == 0, err


def test_periodic_verify_keeps_to_max_concurrent_requests_with_the_writes(couch_db, pipeline: Pipeline,
                                                                          panda: PandaEmulator) -> None:
    """The verify's PANDA requests take turns with the pipeline's writes (panda.max_concurrent_requests = 1,
    the default): while changes stream in, PANDA never has two of the bridge's requests at once."""
    server, db = couch_db.server, couch_db.name
    server.bulk_docs(db, make_docs(50))
    pipeline.extra = {"verify": {"every": "1s", "settle": 0.2}, "batch": {"max_age": 0.02}}
    pipeline.write_config()
    panda.slow_replies(0.03)  # every answer takes a while, so requests not kept apart would overlap
    process = pipeline.start()
    done = threading.Event()

    def write() -> None:  # a new document every 20 ms: writes in flight most of the time
        n = 50
        while not done.wait(0.02):
            server.bulk_docs(db, make_docs(1, start=n))
            n += 1

    writer = threading.Thread(target=write, daemon=True)
    try:
        wait_until(lambda: len(pipeline.rows()) >= 50, "the first rows are mirrored", process=process)
        writer.start()
        wait_until(lambda: sum(r.method == "GET" and "/data/" in r.path for r in panda.requests) >= 4,
                   "the periodic verify listed the rows (twice)", timeout=60, process=process)
    finally:
        done.set()
        writer.join(10)
        panda.slow_replies(0)
        code, err = stop(process)
    assert code == 0, err
    assert "periodic verify:" in err
    assert panda.peak_concurrent_requests == 1
