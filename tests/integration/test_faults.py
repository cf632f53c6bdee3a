"""Issue 3: faults on either side are retried, fatal ones stop the bridge at once, and nothing is lost.

Every test runs the real `bridge` process over HTTP: PouchDB Server or real CouchDB (behind
tests/support/fault_proxy.py where a fault needs it), the PANDA emulator with its fault switches. Each ends
with the dataset equal to the database. Retry delays are small (FAST) so faults clear quickly.

Every test runs twice, logging text and JSON, with a CouchDB password (the proxy requires it) and the
PANDA API key configured: every log line of every run is scanned for both (tests/support/secrets.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.emulator import DEFAULT_API_KEY, DEFAULT_EMAIL, PandaEmulator
from tests.conftest import fresh_database
from tests.support.couch_api import CouchDatabase, seq_number
from tests.support.couchdb_server import PouchServer
from tests.support.fault_proxy import FaultProxy
from tests.support.pipeline import Pipeline, make_docs, wait_until
from tests.support.secrets import SecretScan
from tests.support.watch import Watched

FAST: dict[str, dict[str, Any]] = {
    "source": {"heartbeat": 0.5, "read_timeout": 2.0},
    "retry": {"initial_delay": 0.05, "max_delay": 0.5},
}
DB = "faults"
USER, PASSWORD = "bridge", "Zq9-couch-pw/with:odd&chars"
SCAN = SecretScan({"CouchDB password": PASSWORD, "PANDA API key": DEFAULT_API_KEY}, user=USER)


@pytest.fixture(params=["text", "json"])
def log_format(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def faulty_pipeline(proxy: FaultProxy, panda: PandaEmulator, tmp_path: Path, log_format: str,
                    database: str = DB) -> Pipeline:
    """A pipeline reading CouchDB through `proxy` as USER, its every log scanned for the secrets."""
    extra = copy.deepcopy(FAST)
    extra["source"]["username"] = USER
    return Pipeline(source_url=proxy.url, database=database, panda=panda, dir=tmp_path / "bridge", extra=extra,
                    environment={"COUCHDB_PASSWORD": PASSWORD}, log_format=log_format, scan=SCAN)


@pytest.fixture
def couch(server_kind: str, request: pytest.FixtureRequest) -> Iterator[CouchDatabase]:
    """A fresh database: on PouchDB, on a server of this test's own (pouchdb-server may die after a
    _changes request that broke off); on CouchDB, on the shared server."""
    if server_kind == "pouchdb":
        with PouchServer() as server:
            db = CouchDatabase(server, DB)
            db.create()
            yield db
        return
    db = fresh_database(request.getfixturevalue("real_couchdb"))
    try:
        yield db
    finally:
        db.delete()


@pytest.fixture
def proxy(couch: CouchDatabase) -> Iterator[FaultProxy]:
    """Requires USER's password of the bridge, and logs in to the server as its admin (if it has one)."""
    with FaultProxy(couch.server.url, credentials=(USER, PASSWORD)) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def bridge(proxy: FaultProxy, couch: CouchDatabase, panda: PandaEmulator, tmp_path: Path,
           log_format: str) -> Pipeline:
    """A pipeline reading CouchDB through the fault proxy."""
    return faulty_pipeline(proxy, panda, tmp_path, log_format, couch.name)


def churn(server: CouchDatabase, start: int, count: int = 10) -> None:
    """Creates, updates and deletes: `count` new documents, three updated, two deleted."""
    server.bulk_docs(make_docs(count, start=start))
    live = server.live_docs()
    ids = sorted(live)
    server.bulk_docs([dict(live[i], last_name=f"Changed{start}") for i in ids[:3]])
    server.bulk_docs([{"_id": i, "_rev": live[i]["_rev"], "_deleted": True} for i in ids[-2:]])


def mirrored(pipeline: Pipeline, server: CouchDatabase) -> bool:
    return pipeline.rows() == pipeline.expected(server.live_docs())


def converge(pipeline: Pipeline, server: CouchDatabase, watched: Watched, what: str) -> None:
    wait_until(lambda: mirrored(pipeline, server), what, timeout=30, process=watched.process)


def run_cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return pipeline.cli(*args)


def checkpoint(pipeline: Pipeline) -> dict[str, Any]:
    result = run_cli(pipeline, "checkpoint", "show")
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def changes_requests(proxy: FaultProxy) -> list[dict[str, str]]:
    return [seen.query for seen in proxy.seen_paths("/_changes")]


# -- PANDA faults --------------------------------------------------------------------------------------


PANDA_FAULTS = {
    "503 for a while": (lambda panda: panda.fail_writes(503, count=6), "SinkUnavailable: PANDA answered 503"),
    "429 for a while": (lambda panda: panda.fail_writes(429, count=3), "SinkUnavailable: PANDA answered 429"),
    "dataset locked for seconds": (lambda panda: panda.lock("contributors", seconds=2.0),
                                   "DatasetLocked: PANDA dataset locked (403)"),
    "replies slower than the timeout": (lambda panda: panda.slow_replies(2.0, count=2),
                                        "SinkUnavailable: PANDA PUT"),
}


@pytest.mark.parametrize("fault", list(PANDA_FAULTS))
def test_panda_faults_are_retried_until_they_clear(fault, bridge, couch, panda):
    arm, cause = PANDA_FAULTS[fault]
    bridge.extra["panda"] = {"timeout": 1.0}
    couch.bulk_docs(make_docs(30))
    watched = bridge.watch()
    converge(bridge, couch, watched, "the backfill arrived")

    arm(panda)
    churn(couch, start=100)
    converge(bridge, couch, watched, f"the changes arrived after {fault}")
    watched.wait_for("retrying PANDA")
    assert cause in watched.log
    assert watched.stop() == 0, watched.log
    assert "Traceback" not in watched.log
    assert mirrored(bridge, couch)


# -- CouchDB faults ------------------------------------------------------------------------------------


def test_couchdb_restarted_mid_follow(persistent_couch, panda, tmp_path, log_format):
    server = persistent_couch
    db = CouchDatabase(server, DB)
    db.create()
    proxy = FaultProxy(server.url, credentials=(USER, PASSWORD)).start()  # forwards to the same port throughout
    pipeline = faulty_pipeline(proxy, panda, tmp_path, log_format)
    db.bulk_docs(make_docs(40))
    watched = pipeline.watch()
    converge(pipeline, db, watched, "the backfill arrived")

    server.stop()
    watched.wait_for("retrying reading the changes feed")  # connection refused, retried with backoff
    server.restart()  # same port, same data directory
    churn(db, start=200)
    converge(pipeline, db, watched, "the changes after the restart arrived")
    assert "SourceUnavailable" in watched.log
    assert watched.stop() == 0, watched.log
    assert mirrored(pipeline, db)
    proxy.stop()


def test_a_stalled_feed_trips_the_read_timeout_and_resumes(bridge, couch, proxy):
    couch.bulk_docs(make_docs(40))
    # Catching up: one page stalls before its headers, the next after its headers and a few bytes.
    proxy.stall(path="/_changes", after_bytes=None)
    proxy.stall(path="/_changes", after_bytes=25)
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)
    sinces = [query["since"] for query in changes_requests(proxy)]
    assert sinces[:3] == ["0", "0", "0"]  # each retry re-read from the last seq handed over: nothing skipped
    assert "timed out" in result.stderr and "FeedInterrupted" in result.stderr

    # Following: the longpoll after the next change stalls (headers, then no row and no heartbeat).
    watched = bridge.watch()
    watched.wait_for("caught up")
    proxy.clear_seen()
    proxy.stall(path="/_changes", after_bytes=0)
    couch.bulk_docs(make_docs(1, start=500))  # ends the open longpoll; the next one stalls
    watched.wait_for("FeedInterrupted")
    churn(couch, start=600)
    converge(bridge, couch, watched, "the changes after the stall arrived")
    stalled = [seen for seen in proxy.seen_paths("/_changes") if seen.fault == "stall"]
    assert len(stalled) == 1
    after = [s.query["since"] for s in proxy.seen_paths("/_changes") if s.at > stalled[0].at]
    assert after and after[0] == stalled[0].query["since"]  # resumed from the same seq
    assert watched.stop() == 0, watched.log


@pytest.mark.parametrize("clean_end", [False, True], ids=["cut-mid-line", "ended-without-closing-line"])
def test_a_feed_cut_off_is_read_again_from_the_same_seq(clean_end, bridge, couch, proxy):
    bridge.extra["source"]["page_size"] = 16  # core/paging.py: a first page asks 16 rows at most
    bridge.extra["source"]["catch_up_feed"] = "normal"  # pages only, on CouchDB too (the stream: below)
    couch.bulk_docs(make_docs(60))
    proxy.cut(333, skip=1, clean_end=clean_end)  # the second page, mid-row (seqs are opaque: count pages)
    proxy.cut(20, skip=3, clean_end=clean_end)  # the third page, read after the second one's retry
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)
    sinces = [query["since"] for query in changes_requests(proxy)]
    assert sinces[0] == "0" and sinces[1] == sinces[2] != sinces[3] == sinces[4]  # each cut page read again
    assert [seq_number(since) for since in sinces[:5]] == [0, 16, 16, 32, 32]
    assert "FeedInterrupted" in result.stderr
    assert not bridge.deadletter.exists() or bridge.deadletter.read_text() == ""


@pytest.mark.only_on("couchdb", reason="PouchDB Server sends no `pending`, so its backlog is read in pages")
@pytest.mark.parametrize("clean_end", [False, True], ids=["cut-mid-line", "ended-without-last-line"])
def test_a_continuous_catch_up_cut_off_reads_on_from_the_last_position(clean_end, bridge, couch, proxy):
    bridge.extra["source"]["page_size"] = 16  # a Position every 16 rows of the stream (after its first page)
    couch.bulk_docs(make_docs(120))
    proxy.cut(12000, query={"feed": "continuous"}, clean_end=clean_end)  # some way into the first stream
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)
    requests = changes_requests(proxy)
    feeds = [query["feed"] for query in requests]
    assert feeds[:4] == ["normal", "continuous", "normal", "continuous"], feeds  # a page after the break
    first_page, cut, after = requests[0], requests[1], requests[2]
    assert first_page["since"] == "0" and int(cut["limit"]) > 16  # the whole backlog that was pending
    assert after["since"] != cut["since"]  # read on from a Position inside the cut stream, not from its start
    assert seq_number(cut["since"]) < seq_number(after["since"]) < 120
    assert "the continuous changes feed broke off" in result.stderr
    assert not bridge.deadletter.exists() or bridge.deadletter.read_text() == ""


def test_malformed_lines_are_read_again_or_set_aside(bridge, couch, proxy):
    couch.bulk_docs(make_docs(30))
    proxy.inject(b'\n{"seq": 3, "id": "torn", "doc": {"_id": \n')  # bytes that do not parse: re-read
    proxy.inject(b'{"seq": 7, "changes": [], "note": "no id"},\n', query={"since": "0"})  # not a change
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)
    assert "FeedInterrupted" in result.stderr
    entries = [json.loads(line) for line in bridge.deadletter.read_text().splitlines()]
    assert len(entries) == 1
    assert entries[0]["seq"] == 7 and entries[0]["reason"].startswith("not a change")
    assert entries[0]["doc"] == {"seq": 7, "changes": [], "note": "no id"}  # kept raw: nothing is lost


def test_transient_couchdb_answers_are_retried(bridge, couch, proxy):
    couch.bulk_docs(make_docs(25))
    proxy.respond(503, path="/_changes", count=2)
    proxy.respond(429, path="/_changes")
    proxy.respond(500, path="/_changes")
    proxy.refuse(path="/_changes", count=2)  # connection reset
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)
    for text in ("CouchDB answered 503", "CouchDB answered 429", "CouchDB answered 500", "unreachable"):
        assert text in result.stderr
    assert proxy.armed == 0


FATAL = {
    401: (3, "AuthError", "refused the credentials"),
    403: (3, "AuthError", "refused the credentials"),
    404: (4, "NotFoundError", "not found"),
    400: (6, "ProtocolError", "bridge checkpoint reset"),
}
BODIES = {
    404: {"error": "not_found", "reason": "Database does not exist."},
    400: {"error": "bad_request", "reason": "Malformed sequence supplied in 'since' parameter."},
}


@pytest.mark.parametrize("status", list(FATAL))
def test_fatal_couchdb_answers_stop_at_once(status, bridge, couch, proxy, panda):
    code, name, text = FATAL[status]
    couch.bulk_docs(make_docs(10))
    proxy.respond(status, path="/_changes", count=None, body=BODIES.get(status))
    result = bridge.once()
    assert result.returncode == code, result.stderr
    assert f"{name}:" in result.stderr and text in result.stderr
    assert "retrying" not in result.stderr and "Traceback" not in result.stderr
    assert len(proxy.seen_paths("/_changes")) == 1  # never retried in a loop
    assert bridge.rows() == {}

    proxy.clear()
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)


def test_couchdb_refusing_the_credentials_at_start(bridge, couch, proxy):
    couch.bulk_docs(make_docs(5))
    proxy.respond(401, count=None, body={"error": "unauthorized", "reason": "Name or password is incorrect."})
    result = bridge.once()
    assert result.returncode == 3, result.stderr
    assert "AuthError" in result.stderr and "Name or password is incorrect." in result.stderr
    assert [(seen.method, seen.status) for seen in proxy.seen] == [("GET", 401)]  # one request, no retries
    proxy.clear()
    assert bridge.once().returncode == 0
    assert mirrored(bridge, couch)


def test_panda_unknown_user_stops_at_start(bridge, couch, panda):
    couch.bulk_docs(make_docs(5))
    bridge.extra["panda"] = {"email": "nobody@example.com"}
    result = bridge.once()
    assert result.returncode == 3, result.stderr
    assert "AuthError: PANDA refused the credentials (401)" in result.stderr and "retrying" not in result.stderr
    assert [(r.method, r.status) for r in panda.requests] == [("GET", 401)]  # one request, no retries

    bridge.extra["panda"] = {}
    bridge.write_config()
    assert bridge.once().returncode == 0
    assert mirrored(bridge, couch)


def test_panda_refusing_the_credentials_mid_run_stops_at_once(bridge, couch, panda):
    couch.bulk_docs(make_docs(10))
    watched = bridge.watch()
    converge(bridge, couch, watched, "the backfill arrived")
    panda.add_user(DEFAULT_EMAIL, DEFAULT_API_KEY, active=False)  # the user is deactivated
    churn(couch, start=300)
    assert watched.wait_exit(timeout=30) == 3, watched.log
    assert "AuthError: PANDA refused the credentials (401)" in watched.log
    assert "retrying" not in watched.log
    assert [r.status for r in panda.requests].count(401) == 1

    panda.add_user(DEFAULT_EMAIL, DEFAULT_API_KEY, active=True)
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)


# -- stopping ------------------------------------------------------------------------------------------


def test_sigterm_mid_retry_exits_0_without_passing_unacknowledged_rows(bridge, couch, panda):
    couch.bulk_docs(make_docs(20))
    watched = bridge.watch()
    converge(bridge, couch, watched, "the backfill arrived")
    wait_until(lambda: seq_number(checkpoint(bridge)["seq"]) == seq_number(couch.db_info()["update_seq"]),
               "the backfill was committed")
    before = checkpoint(bridge)

    panda.lock(bridge.dataset)  # for good: only an operator could clear it
    churn(couch, start=400)
    watched.wait_for("DatasetLocked")
    assert watched.stop(signal.SIGTERM, timeout=15) == 0, watched.log
    assert "SIGTERM received" in watched.log and "stopped before PANDA acknowledged" in watched.log
    assert "Traceback" not in watched.log
    after = checkpoint(bridge)
    assert after["seq"] == before["seq"] and after["documents_in_panda"] == 20

    panda.unlock(bridge.dataset)
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)


def test_a_second_sigint_exits_at_once(bridge, couch, panda):
    bridge.extra["panda"] = {"timeout": 120.0}
    couch.bulk_docs(make_docs(10))
    watched = bridge.watch()
    converge(bridge, couch, watched, "the backfill arrived")

    panda.clear_requests()
    panda.slow_replies(60.0, count=1)  # the next write is answered a minute late
    couch.bulk_docs(make_docs(5, start=700))
    wait_until(lambda: any(r.method == "PUT" for r in panda.requests), "the slow write was received",
               process=watched.process)
    watched.signal(signal.SIGINT)
    watched.wait_for("SIGINT received")
    assert watched.process.poll() is None  # still waiting for PANDA's answer
    assert watched.stop(signal.SIGINT, timeout=10) == 130, watched.log
    assert "second SIGINT" in watched.log

    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)


# -- a checkpoint that does not belong here ------------------------------------------------------------


def test_a_recreated_database_is_refused_until_the_checkpoint_is_reset(bridge, couch, panda):
    couch.bulk_docs(make_docs(30))
    assert bridge.once().returncode == 0
    assert mirrored(bridge, couch)

    couch.delete()
    couch.create()
    docs = make_docs(30)
    for doc in docs:
        doc["last_name"] = "Reborn"
    results = couch.bulk_docs(docs)
    couch.bulk_docs([{"_id": r["id"], "_rev": r["rev"], "_deleted": True} for r in results[-5:]])
    panda.clear_requests()
    result = bridge.once()
    assert result.returncode == 5, result.stderr
    assert "CheckpointMismatch" in result.stderr and "deleted and recreated" in result.stderr
    assert "bridge checkpoint reset" in result.stderr
    assert [r for r in panda.requests if r.method != "GET"] == []  # nothing written

    assert run_cli(bridge, "checkpoint", "reset").returncode == 0
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)  # updated rows re-sent; the deleted ones' rows removed


@pytest.mark.parametrize("section,key,value,differs", [
    ("panda", "dataset", "elsewhere", "panda"),
    ("mapping", "columns", ["first_name", "last_name", "employer", "n"], "mapping"),
])
def test_a_checkpoint_of_another_pipeline_is_refused(section, key, value, differs, bridge, couch, panda):
    couch.bulk_docs(make_docs(10))
    assert bridge.once().returncode == 0
    good = bridge.config.read_text()
    other = dataclasses.replace(bridge, extra=copy.deepcopy(bridge.extra))
    other.extra.setdefault(section, {})[key] = value
    other.write_config()
    panda.clear_requests()
    result = other.once()
    assert result.returncode == 5, result.stderr
    assert "CheckpointMismatch" in result.stderr and f"{differs} (saved" in result.stderr
    assert "bridge checkpoint reset" in result.stderr
    assert panda.requests == []  # refused before PANDA was asked anything

    bridge.config.write_text(good)
    churn(couch, start=800)
    result = bridge.once()
    assert result.returncode == 0, result.stderr
    assert mirrored(bridge, couch)
