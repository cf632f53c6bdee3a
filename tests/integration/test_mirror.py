"""Issue 2, end to end: PouchDB Server -> `bridge` (a real process) -> the PANDA emulator over HTTP."""

from __future__ import annotations

import json
import random
import signal

from bridge.config.loader import load_settings
from bridge.errors import ConfigError
from tests.support.couchdb_server import free_port
from tests.support.oracle import expected_id
from tests.support.pipeline import bulk_update, deleted_ids, make_docs, stop, wait_until, written_ids


def load_workload(couch_db, count=2000, seed=7):
    """Creates, several updates of the same documents, and deletes; returns nothing (read the db back)."""
    server, db = couch_db.server, couch_db.name
    rng = random.Random(seed)
    docs = make_docs(count)
    for doc, result in zip(docs, server.bulk_docs(db, docs), strict=True):
        doc["_rev"] = result["rev"]
    hot = rng.sample(docs, 200)
    for round_ in range(3):  # the same 200 documents updated three times
        hot = bulk_update(server, db, hot, last_name=f"Updated{round_}")
    by_id = {doc["_id"]: doc for doc in docs}
    by_id.update({doc["_id"]: doc for doc in hot})
    doomed = rng.sample(sorted(by_id), 150)
    server.bulk_docs(db, [{"_id": i, "_rev": by_id[i]["_rev"], "_deleted": True} for i in doomed])
    server.bulk_docs(db, [{"_id": "_design/app", "views": {}}])


def test_once_mirrors_then_resumes_with_only_new_changes(couch_db, pipeline, panda):
    load_workload(couch_db)
    live = couch_db.server.live_docs(couch_db.name)
    assert len(live) == 2000 - 150 + 1

    result = pipeline.once()
    assert result.returncode == 0, result.stderr
    assert pipeline.rows() == pipeline.expected(live)
    assert "no checkpoint" in result.stderr and "caught up" in result.stderr
    assert not any(r.destructive for r in panda.requests)
    sent_first = written_ids(panda, pipeline.dataset)
    assert len(sent_first) == len(set(sent_first)) == 1850  # each live document sent once, tombstones never
    assert deleted_ids(panda, pipeline.dataset) == []  # nothing to delete that was never sent

    # More changes, then `--since last`: only the new changes reach PANDA.
    panda.clear_requests()
    server, db = couch_db.server, couch_db.name
    new_docs = make_docs(30, start=5000)
    server.bulk_docs(db, new_docs)
    changed = [live[i] for i in sorted(live) if not i.startswith("_")][:20]
    bulk_update(server, db, changed, employer_note="x", job={"employer": "Changed"})
    gone = [live[i] for i in sorted(live) if not i.startswith("_")][-10:]
    server.bulk_docs(db, [{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True} for d in gone])

    result = pipeline.once("--since", "last")
    assert result.returncode == 0, result.stderr
    assert "resuming after seq" in result.stderr
    live = server.live_docs(db)
    assert pipeline.rows() == pipeline.expected(live)
    expected_writes = {d["_id"] for d in new_docs} | {d["_id"] for d in changed}
    assert sorted(written_ids(panda, pipeline.dataset)) == sorted(expected_id(i) for i in expected_writes)
    assert sorted(deleted_ids(panda, pipeline.dataset)) == sorted(expected_id(d["_id"]) for d in gone)

    # Nothing new: a third run sends nothing at all.
    panda.clear_requests()
    result = pipeline.once()
    assert result.returncode == 0, result.stderr
    assert written_ids(panda, pipeline.dataset) == [] and deleted_ids(panda, pipeline.dataset) == []


def test_live_follow_then_sigterm_loses_nothing(couch_db, pipeline, panda):
    server, db = couch_db.server, couch_db.name
    server.bulk_docs(db, make_docs(50))
    process = pipeline.start()
    wait_until(lambda: len(pipeline.rows()) == 50, "the backfill arrived", process=process)

    server.put_doc(db, {"_id": "live:1", "first_name": "Live", "job": {"employer": "Now"}})
    wait_until(lambda: pipeline.rows().get("_live_3a_1") == ["Live", None, "Now"], "a live write appeared",
               process=process)
    server.delete_doc(db, "doc-00003")
    wait_until(lambda: "doc-00003" not in pipeline.rows(), "a live delete disappeared", process=process)

    # Writes keep coming while SIGTERM arrives; whatever was not acknowledged is re-read on restart.
    for n in range(100, 160):
        server.put_doc(db, make_docs(1, start=n)[0])
    code, err = stop(process, signal.SIGTERM)
    assert code == 0, err
    assert "SIGTERM received" in err and "stopped; checkpoint at seq" in err
    status = json.loads(_checkpoint_show(pipeline))
    assert status["seq"] is not None and status["matches_configuration"] is True

    for n in range(200, 210):
        server.put_doc(db, make_docs(1, start=n)[0])
    result = pipeline.once()
    assert result.returncode == 0, result.stderr
    assert pipeline.rows() == pipeline.expected(server.live_docs(db))


def _checkpoint_show(pipeline) -> str:
    import subprocess

    result = subprocess.run(pipeline.command("checkpoint", "show"), env=pipeline.env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout



def _run(pipeline, *args):
    import subprocess

    return subprocess.run(pipeline.command(*args), env=pipeline.env(), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def _marker_doc(pipeline, text, good):
    """Where the bridge would keep its database marker for this configuration (the good one's place when
    this one does not even load): `_local/bridge-<the pipeline's fingerprint hash>`."""
    path = pipeline.dir / "marker-probe.toml"
    path.write_text(text)
    try:
        settings = load_settings(path, env=pipeline.env())
    except ConfigError:
        path.write_text(good)
        settings = load_settings(path, env=pipeline.env())
    return f"_local/bridge-{settings.fingerprint_hash()}"


def _nothing_written(couch_db, panda, pipeline, text, good):
    assert [r for r in panda.requests if r.method != "GET"] == []
    assert couch_db.server.changes_all(couch_db.name)["results"] == []
    # _local docs never appear in _changes: look where the marker would be
    assert couch_db.server.get_doc(couch_db.name, _marker_doc(pipeline, text, good)) is None
    assert not pipeline.checkpoint.exists()


def test_bad_configurations_stop_before_anything_is_written(couch_db, pipeline, panda):
    pipeline.write_config()
    good = pipeline.config.read_text()
    cases = [
        (good.replace("[batch]", "[batch]\nmax_chnges = 5"), 2, "unknown key(s) in [batch]: ['max_chnges']"),
        (good.replace('email = "panda@pandaproject.net"', ""), 2, "[panda] email is required"),
        (good.replace(f'url = "{panda.url}"', f'url = "http://127.0.0.1:{free_port()}"'), 2,
         "cannot start: reaching PANDA at"),
        (good.replace(f'url = "{pipeline.source_url}"', f'url = "http://127.0.0.1:{free_port()}"'), 2,
         "cannot start: reading CouchDB database"),
        (good.replace(f'database = "{couch_db.name}"', 'database = "no_such_db"'), 4, "not found"),
        (good.replace('email = "panda@pandaproject.net"', 'email = "nobody@example.com"'), 3, "AuthError"),
    ]
    for text, code, message in cases:
        pipeline.config.write_text(text)
        result = _run(pipeline, "once")
        assert result.returncode == code, (message, result.stderr)
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        _nothing_written(couch_db, panda, pipeline, text, good)

    # A mapping that disagrees with an existing dataset's columns.
    panda.create_dataset(pipeline.dataset, ["first_name", "surname", "employer"])
    pipeline.config.write_text(good)
    result = _run(pipeline, "once")
    assert result.returncode == 2, result.stderr
    assert "ConfigError" in result.stderr and "surname" in result.stderr and "last_name" in result.stderr
    _nothing_written(couch_db, panda, pipeline, good, good)

    # The checks above can fail: with the right columns, the same run writes the marker where they look.
    panda.create_dataset(pipeline.dataset, pipeline.columns)
    result = _run(pipeline, "once")
    assert result.returncode == 0, result.stderr
    assert couch_db.server.get_doc(couch_db.name, _marker_doc(pipeline, good, good)) is not None


# Documents and the rows PANDA must hold, written out by hand from the README's encoding and cell tables:
# neither the bridge nor tests/support/oracle.py computes the right-hand side.
HAND_WRITTEN = [
    ({"_id": "plain-1", "first_name": "Ann", "last_name": "Lee", "job": {"employer": "Acme"}},
     "plain-1", ["Ann", "Lee", "Acme"]),
    ({"_id": "user:42", "first_name": 42, "last_name": 3.5, "job": {"employer": True}},
     "_user_3a_42", ["42", "3.5", "true"]),
    ({"_id": "Zürich", "first_name": None, "job": {"employer": [1, "a", None]}},
     "_Z_fc_rich", [None, None, '[1,"a",null]']),
    ({"_id": "AND", "first_name": {"b": 1, "a": "é"}, "last_name": 2.5e-7, "job": "flat"},
     "_AND", ['{"b":1,"a":"é"}', "2.5e-07", None]),
    ({"_id": "-x", "first_name": "", "last_name": False, "job.employer": "dotted key", "job": {"employer": "no"}},
     "_-x", ["", "false", "dotted key"]),
    ({"_id": "a b/c", "first_name": -7, "last_name": 0.1, "job": {"employer": {"x": None}}},
     "_a_20_b_2f_c", ["-7", "0.1", '{"x":null}']),
    ({"_id": "日本", "first_name": "x_y", "last_name": "Ωmega", "job": {"employer": 0}},
     "__65e5__672c_", ["x_y", "Ωmega", "0"]),
    ({"_id": "and", "first_name": "lower-case and is a plain id"}, "and", ["lower-case and is a plain id", None, None]),
]


def test_rows_match_a_hand_written_table(couch_db, pipeline):
    couch_db.server.bulk_docs(couch_db.name, [doc for doc, _eid, _row in HAND_WRITTEN])
    result = pipeline.once()
    assert result.returncode == 0, result.stderr
    assert pipeline.rows() == {eid: row for _doc, eid, row in HAND_WRITTEN}
    assert pipeline.expected(couch_db.server.live_docs(couch_db.name)) == pipeline.rows()  # the oracle agrees
