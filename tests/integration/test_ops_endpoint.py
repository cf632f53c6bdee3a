"""Issue 12: the HTTP endpoint of a running bridge, scraped over HTTP during a backfill and a live follow.

/metrics is parsed with prometheus_client's parser and its counters compared with what the PANDA emulator
received; /readyz follows the run (503 while backfilling, 200 once caught up, 503 while PANDA answers 503
or while the source cannot be reached).
"""

from __future__ import annotations

import requests

from tests.support.couchdb_server import free_port
from tests.support.fault_proxy import FaultProxy
from tests.support.ops import probe, scrape, value
from tests.support.pipeline import Pipeline, deleted_ids, make_docs, wait_until, written_ids
from tests.support.watch import Watched

PIPELINE = "contributors"


def mirrored(pipeline, couch_db) -> bool:
    return pipeline.rows() == pipeline.expected(couch_db.server.live_docs(couch_db.name))


def _backfilling_with_a_total(base: str) -> bool:
    answer = probe(base, "/readyz")
    return answer is not None and answer[1]["reason"] == "backfilling" and answer[1]["pending"] is not None


def test_metrics_and_readiness_through_a_backfill_a_follow_and_a_panda_outage(pipeline, couch_db, panda):
    server, db = couch_db.server, couch_db.name
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    pipeline.extra["http"] = {"listen": f"127.0.0.1:{port}"}
    pipeline.extra["panda"] = {"timeout": 10.0}
    server.bulk_docs(db, make_docs(5000))
    panda.set_latency(2.0)  # every write takes 2 s until cleared: the backfill is visibly under way
    watched = Watched(pipeline.start())
    try:
        # CouchDB 2+ says how many changes are pending with its first page: wait for that too.
        wait_until(lambda: _backfilling_with_a_total(base), "/readyz said it is backfilling, with a total",
                   process=watched.process)
        status, body = probe(base, "/readyz") or (0, {})
        during = scrape(base)
        assert probe(base, "/healthz") == (200, {"healthy": True})
        panda.set_latency(0.0)
        assert status == 503 and body["ready"] is False
        assert value(during, "bridge_pending_changes", pipeline=PIPELINE) > 0
        assert value(during, "bridge_caught_up", pipeline=PIPELINE) == 0

        wait_until(lambda: (probe(base, "/readyz") or (0,))[0] == 200, "/readyz answered 200",
                   process=watched.process)
        assert mirrored(pipeline, couch_db)
        after = scrape(base)
        assert value(after, "bridge_upserts_total", pipeline=PIPELINE) == len(written_ids(panda, PIPELINE)) == 5000
        assert value(after, "bridge_changes_total", pipeline=PIPELINE) == 5000
        assert value(after, "bridge_pending_changes", pipeline=PIPELINE) == 0
        assert value(after, "bridge_caught_up", pipeline=PIPELINE) == 1
        assert value(after, "bridge_ready", pipeline=PIPELINE) == 1
        assert value(after, "bridge_lag_seconds", pipeline=PIPELINE) == 0
        assert value(after, "bridge_up", pipeline=PIPELINE, end="source") == 1
        assert value(after, "bridge_up", pipeline=PIPELINE, end="panda") == 1
        assert value(after, "bridge_last_commit_timestamp_seconds", pipeline=PIPELINE) > 0
        puts = [r for r in panda.requests if r.method == "PUT"]  # the dataset's creation and the bulk writes
        assert value(after, "bridge_panda_request_seconds_count", pipeline=PIPELINE, method="PUT") == len(puts)

        # Live follow: new documents, then updates, then deletes, each awaited, so every row read is one operation.
        server.bulk_docs(db, make_docs(100, start=5000))
        wait_until(lambda: mirrored(pipeline, couch_db), "the new documents arrived", process=watched.process)
        live = server.live_docs(db)
        ids = sorted(live)
        server.bulk_docs(db, [dict(live[i], last_name="Changed") for i in ids[:10]])
        wait_until(lambda: mirrored(pipeline, couch_db), "the updates arrived", process=watched.process)
        server.bulk_docs(db, [{"_id": i, "_rev": live[i]["_rev"], "_deleted": True} for i in ids[-5:]])
        wait_until(lambda: mirrored(pipeline, couch_db), "the deletes arrived", process=watched.process)
        wait_until(lambda: value(scrape(base), "bridge_caught_up", pipeline=PIPELINE) == 1, "caught up again",
                   process=watched.process)
        live_follow = scrape(base)
        upserts = value(live_follow, "bridge_upserts_total", pipeline=PIPELINE)
        deletes = value(live_follow, "bridge_deletes_total", pipeline=PIPELINE)
        unchanged = value(live_follow, "bridge_unchanged_total", pipeline=PIPELINE)
        assert upserts == len(written_ids(panda, PIPELINE)) == 5110
        assert deletes == len(deleted_ids(panda, PIPELINE)) == 5
        assert value(live_follow, "bridge_changes_total", pipeline=PIPELINE) == upserts + deletes + unchanged
        assert value(live_follow, "bridge_dead_letters_total", pipeline=PIPELINE) == 0
        assert value(live_follow, "bridge_pending_changes", pipeline=PIPELINE) == 0

        # PANDA answers 503: not ready (with the reason) until it recovers; each 503 is one retry.
        panda.clear_requests()
        panda.fail_writes(503, count=1_000_000)
        server.bulk_docs(db, make_docs(5, start=9000))
        wait_until(lambda: (probe(base, "/readyz") or (0, {}))[1].get("reason") == "PANDA unavailable",
                   "/readyz said PANDA is unavailable", process=watched.process)
        outage = scrape(base)
        assert probe(base, "/readyz")[0] == 503
        assert value(outage, "bridge_up", pipeline=PIPELINE, end="panda") == 0
        assert probe(base, "/healthz")[0] == 200  # retrying is healthy
        panda.fail_writes(503, count=0)
        wait_until(lambda: (probe(base, "/readyz") or (0,))[0] == 200, "/readyz answered 200 again",
                   process=watched.process)
        assert mirrored(pipeline, couch_db)
        failed = sum(1 for r in panda.requests if r.status == 503)
        recovered = scrape(base)
        retries = value(recovered, "bridge_retries_total", pipeline=PIPELINE, what="PANDA PUT data",
                        error="SinkUnavailable")
        assert failed > 0 and retries == failed
        assert value(recovered, "bridge_upserts_total", pipeline=PIPELINE) == 5115

        # Only the three paths exist, and the endpoint is bound only where it was told.
        missing = requests.get(base + "/metrics/extra", timeout=5)
        assert missing.status_code == 404
        assert requests.get(base + "/", timeout=5).status_code == 404
        try:
            requests.get(f"http://127.0.0.2:{port}/metrics", timeout=5)
            raise AssertionError("the endpoint answered on an address it was not told to bind")
        except requests.ConnectionError:
            pass
        assert "panda-demo-key" not in requests.get(base + "/metrics", timeout=5).text
    finally:
        code = watched.stop()
    assert code == 0, watched.log
    assert "serving /metrics, /healthz and /readyz on http://127.0.0.1:%d" % port in watched.log


def test_readyz_says_when_the_source_is_unavailable(couch_db, panda, tmp_path):
    server, db = couch_db.server, couch_db.name
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server.bulk_docs(db, make_docs(20))
    with FaultProxy(server.base_url) as proxy:
        pipeline = Pipeline(source_url=server.url_via(proxy.url), database=db, panda=panda, dir=tmp_path / "bridge",
                            extra={"http": {"listen": f"127.0.0.1:{port}"},
                                   "retry": {"initial_delay": 0.05, "max_delay": 0.3}})
        watched = Watched(pipeline.start())
        try:
            wait_until(lambda: (probe(base, "/readyz") or (0,))[0] == 200, "ready", process=watched.process)
            proxy.refuse(path="/_changes", count=None)  # every next feed request is reset
            server.bulk_docs(db, make_docs(1, start=100))  # ends the open longpoll; the next one is refused
            wait_until(lambda: (probe(base, "/readyz") or (0, {}))[1].get("reason") == "source unavailable",
                       "/readyz said the source is unavailable", process=watched.process)
            down = scrape(base)
            assert value(down, "bridge_up", pipeline=PIPELINE, end="source") == 0
            assert value(down, "bridge_up", pipeline=PIPELINE, end="panda") == 1
            assert value(down, "bridge_retries_total", pipeline=PIPELINE, what="reading the changes feed",
                         error="SourceUnavailable") >= 1
            assert probe(base, "/healthz") == (200, {"healthy": True})
            proxy.clear()
            wait_until(lambda: (probe(base, "/readyz") or (0,))[0] == 200, "ready again", process=watched.process)
            assert mirrored(pipeline, couch_db)
        finally:
            code = watched.stop()
    assert code == 0, watched.log
