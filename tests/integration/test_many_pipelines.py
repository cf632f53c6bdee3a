"""Many pipelines in one process: all mirror, converge after SIGKILL, fail alone, --fail-fast, shared PANDA."""

from __future__ import annotations

import json
import signal
import threading

import pytest

from tests.support.couchdb_server import free_port
from tests.support.fleet import Fleet, databases, delete_dataset, docs
from tests.support.ops import probe, scrape, value
from tests.support.pipeline import wait_until


@pytest.fixture
def three(couch_server, panda, tmp_path):
    """Two databases into two datasets, and the first database again into a third with another mapping."""
    with databases(couch_server, 2) as (a, b):
        fleet = Fleet(couch_server.url, panda, tmp_path / "fleet", tables={
            "people": {"source": {"database": a}, "panda": {"dataset": "people"},
                       "checkpoint": {"path": str(tmp_path / "fleet/state/people.checkpoint")}},
            "places": {"source": {"database": b}, "panda": {"dataset": "places"},
                       "checkpoint": {"path": str(tmp_path / "fleet/state/places.checkpoint")}},
            "surnames": {"source": {"database": a}, "panda": {"dataset": "surnames"},
                         "mapping": {"columns": ["last_name"], "external_id_prefix": "s_"},
                         "checkpoint": {"path": str(tmp_path / "fleet/state/surnames.checkpoint")}},
        })
        yield fleet, a, b


def _mirrored(fleet: Fleet, a_docs: list[dict], b_docs: list[dict]) -> bool:
    people, places, surnames = fleet.rows("people"), fleet.rows("places"), fleet.rows("surnames")
    return (people == {d["_id"]: [d["first_name"], d["last_name"]] for d in a_docs}
            and places == {d["_id"]: [d["first_name"], d["last_name"]] for d in b_docs}
            and surnames == {"s_" + d["_id"]: [d["last_name"]] for d in a_docs})


def test_three_pipelines_mirror_converge_after_sigkill_and_status_lists_them(three, couch_server):
    fleet, a, b = three
    a_docs, b_docs = docs("a", 30), docs("b", 20)
    couch_server.bulk_docs(a, a_docs)
    couch_server.bulk_docs(b, b_docs)
    bridge = fleet.watch()
    wait_until(lambda: _mirrored(fleet, a_docs, b_docs), "all three datasets mirror", process=bridge.process)
    more_a, more_b = docs("a", 10, 30), docs("b", 10, 20)
    couch_server.bulk_docs(a, more_a)
    assert bridge.stop(signal.SIGKILL) == -signal.SIGKILL
    couch_server.bulk_docs(b, more_b)
    bridge = fleet.watch()
    wait_until(lambda: _mirrored(fleet, a_docs + more_a, b_docs + more_b), "all converge after SIGKILL",
               process=bridge.process)
    listed = json.loads(fleet.cli("status", "--json").stdout)
    assert [entry["pipeline"] for entry in listed] == ["people", "places", "surnames"]
    assert all(entry["running"] and entry["seq"] is not None for entry in listed)
    assert {entry["database"] for entry in listed} == {a, b}
    assert bridge.stop() == 0
    text = fleet.cli("status").stdout
    assert all(f"bridge pipeline {name} (not running)" in text for name in ("people", "places", "surnames"))


def test_a_pipeline_whose_dataset_is_deleted_stops_alone(three, couch_server):
    fleet, a, b = three
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bridge = fleet.watch("--http", f"127.0.0.1:{port}")
    couch_server.bulk_docs(a, docs("a", 5))
    couch_server.bulk_docs(b, docs("b", 5))
    wait_until(lambda: len(fleet.rows("places")) == 5 and len(fleet.rows("people")) == 5, "first rows",
               process=bridge.process)
    delete_dataset(fleet.panda, "places")
    couch_server.bulk_docs(b, docs("b", 5, 5))
    bridge.wait_for("pipeline places stopped: NotFoundError")
    couch_server.bulk_docs(a, docs("a", 5, 5))  # the others keep following live writes
    wait_until(lambda: len(fleet.rows("people")) == 10 and len(fleet.rows("surnames")) == 10,
               "the other two follow", process=bridge.process)
    status, body = probe(base, "/healthz")
    assert status == 200 and body["pipelines"]["places"] == {"healthy": False, "error": "NotFoundError"}
    assert body["pipelines"]["people"] == {"healthy": True}
    samples = scrape(base)
    assert value(samples, "bridge_ready", pipeline="places") == 0
    assert value(samples, "bridge_upserts_total", pipeline="people") == 10
    assert bridge.stop() == 4  # the first fatal error's exit code (NotFoundError)
    assert "places" not in fleet.panda.store.datasets


def test_fail_fast_stops_every_pipeline(three, couch_server):
    fleet, a, b = three
    bridge = fleet.watch("--fail-fast")
    couch_server.bulk_docs(b, docs("b", 3))
    wait_until(lambda: len(fleet.rows("places")) == 3, "first rows", process=bridge.process)
    delete_dataset(fleet.panda, "places")
    couch_server.bulk_docs(b, docs("b", 3, 3))
    assert bridge.wait_exit(60) == 4
    assert "--fail-fast: stopping every pipeline" in bridge.log
    assert "pipeline people stopped; checkpoint" in bridge.log


def test_checkpoint_reset_needs_a_name_when_there_are_several(three):
    fleet, _a, _b = three
    result = fleet.cli("checkpoint", "reset")
    assert result.returncode == 2 and "name it with --pipeline" in result.stderr
    named = fleet.cli("checkpoint", "show", "--pipeline", "places")
    assert named.returncode == 0 and json.loads(named.stdout)["checkpoint"] is None
    unknown = fleet.cli("status", "--pipeline", "nope")
    assert unknown.returncode == 2 and "no such pipeline" in unknown.stderr


BACKFILL = 50_000


def test_two_pipelines_share_one_panda_and_a_live_write_passes_a_backfill(couch_server, panda, tmp_path):
    with databases(couch_server, 2) as (big, live):
        for start in range(0, BACKFILL, 10_000):
            couch_server.bulk_docs(big, docs("d", 10_000, start))
        fleet = Fleet(couch_server.url, panda, tmp_path / "fleet", tables={
            "backfill": {"source": {"database": big}, "panda": {"dataset": "backfill"},
                         "batch": {"max_changes": 500}},
            "live": {"source": {"database": live}, "panda": {"dataset": "live"}},
        })
        panda.set_latency(0.02)  # each write takes a while, so requests not kept apart would overlap
        bridge = fleet.watch()
        wait_until(lambda: len(fleet.rows("backfill")) > 0, "the backfill started", timeout=60,
                   process=bridge.process)
        couch_server.put_doc(live, {"_id": "breaking", "first_name": "Live", "last_name": "Change"})
        wait_until(lambda: "breaking" in fleet.rows("live"), "the live write arrived", timeout=60,
                   process=bridge.process)
        assert len(fleet.rows("backfill")) < BACKFILL  # it arrived during the backfill, not after
        wait_until(lambda: len(fleet.rows("backfill")) == BACKFILL, "the backfill finished", timeout=300,
                   process=bridge.process)
        assert bridge.stop() == 0
        assert panda.peak_concurrent_requests == 1


def test_json_log_lines_name_their_pipeline_from_the_reader_and_writer_threads_too(three, couch_server):
    fleet, a, b = three
    couch_server.bulk_docs(a, docs("a", 3))
    couch_server.bulk_docs(b, docs("b", 2))
    done = fleet.cli("once", "--log-format", "json", "--log-level", "DEBUG")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    accepted = [line for line in lines if line["message"].startswith("PANDA accepted")]  # the writer thread's
    assert {line.get("pipeline") for line in accepted} == {"people", "places", "surnames"}
    caught_up = [line for line in lines if line["message"].startswith("caught up at seq")]
    assert {line.get("pipeline") for line in caught_up} == {"people", "places", "surnames"}


def test_each_shard_mirrors_the_pipelines_its_hash_gives_it(three, couch_server):
    # By the documented hash (config/shard.py), of 2 shards: people 0, places 0, surnames 1.
    fleet, a, b = three
    a_docs, b_docs = docs("a", 12), docs("b", 8)
    couch_server.bulk_docs(a, a_docs)
    couch_server.bulk_docs(b, b_docs)
    second = fleet.cli("once", "--shard", "1/2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert fleet.rows("people") == {} and fleet.rows("places") == {}
    assert fleet.rows("surnames") == {"s_" + d["_id"]: [d["last_name"]] for d in a_docs}
    first = fleet.cli("once", "--shard", "0/2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert _mirrored(fleet, a_docs, b_docs)


def test_a_shard_that_owns_no_pipeline_says_so(three):
    # Of 4 shards: people 2, places 0, surnames 1; shard 3 owns none and has no pattern to watch.
    fleet, _a, _b = three
    run = fleet.cli("run", "--shard", "3/4", timeout=60)
    assert run.returncode == 2, run.stderr[-3000:]  # a configuration error, not a clean stop
    assert ("shard 3/4 owns no pipeline of this file: its 3 fixed pipeline(s) hash to shard(s) 0, 1, 2: "
            "this `bridge run` would never have work") in run.stderr
    once = fleet.cli("once", "--shard", "3/4", timeout=60)
    assert once.returncode == 0, once.stderr[-3000:]  # nothing was asked that it could not do
    assert "shard 3/4 owns no pipeline of this file" in once.stderr and "nothing to do" in once.stderr
    assert not (fleet.dir / "state").exists()  # and it touched nothing


def test_a_fleet_pipelines_periodic_verify_takes_turns_with_every_write(couch_server, panda, tmp_path):
    """In a fleet, as in a lone `bridge run`, the verify's PANDA requests go through the pipelines' shared
    gate: with max_concurrent_requests = 1 (the default) PANDA never has two of the bridge's requests at once."""
    every = {"verify": {"every": "1s", "settle": 0.2}, "batch": {"max_age": 0.02}}
    with databases(couch_server, 2) as (a, b):
        couch_server.bulk_docs(a, docs("a", 30))
        couch_server.bulk_docs(b, docs("b", 20))
        fleet = Fleet(couch_server.url, panda, tmp_path / "fleet", tables={
            "people": {"source": {"database": a}, "panda": {"dataset": "people"}, **every},
            "places": {"source": {"database": b}, "panda": {"dataset": "places"}, **every},
        })
        panda.slow_replies(0.03)  # every answer takes a while, so requests not kept apart would overlap
        bridge = fleet.watch()
        done = threading.Event()

        def write() -> None:  # new documents in both databases every 20 ms: writes in flight most of the time
            n = 30
            while not done.wait(0.02):
                couch_server.bulk_docs(a, docs("a", 1, n))
                couch_server.bulk_docs(b, docs("b", 1, n))
                n += 1

        writer = threading.Thread(target=write, daemon=True)
        try:
            wait_until(lambda: len(fleet.rows("people")) >= 30 and len(fleet.rows("places")) >= 20,
                       "the first rows are mirrored", process=bridge.process)
            writer.start()
            for slug in ("people", "places"):
                wait_until(lambda: sum(r.method == "GET" and f"/dataset/{slug}/data/" in r.path  # noqa: B023
                                       for r in panda.requests) >= 4,
                           f"the periodic verify listed {slug} (twice)", timeout=60, process=bridge.process)
        finally:
            done.set()
            writer.join(10)
            panda.slow_replies(0)
            code = bridge.stop()
    assert code == 0, bridge.log[-3000:]
    assert "periodic verify:" in bridge.log
    assert panda.peak_concurrent_requests == 1
