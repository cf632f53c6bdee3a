"""Databases found by pattern: one pipeline per matching database, new ones started, deleted ones stopped.

Needs `_all_dbs` and `_db_updates`: it runs on real CouchDB 3.4.3 (the `couch_server` parameter `couchdb`)
and is skipped on PouchDB Server, which answers `_db_updates` with 400. CouchDB 3 serves `_db_updates` once
the `_global_changes` database exists, so the test creates it.
"""

from __future__ import annotations

import json
import signal
import uuid

import pytest
import requests

from tests.support.fleet import Fleet, docs
from tests.support.pipeline import wait_until


def _require_database_listing(server) -> None:
    if requests.get(server.url.rstrip("/") + "/_all_dbs", timeout=10).status_code != 200:
        pytest.skip("this server has no _all_dbs (PouchDB Server): database patterns need CouchDB")
    requests.put(server.url.rstrip("/") + "/_global_changes", timeout=10)  # 201, or 412 when it exists
    probe = requests.get(server.url.rstrip("/") + "/_db_updates", params={"timeout": "1"}, timeout=10)
    if probe.status_code != 200:
        pytest.skip(f"this server has no _db_updates ({probe.status_code})")


@pytest.fixture
def named(couch_server):
    """A unique prefix for this test's databases; every database starting with it is deleted afterwards."""
    _require_database_listing(couch_server)
    prefix = couch_server.db_prefix + uuid.uuid4().hex[:8] + "_"
    yield prefix
    for name in couch_server.all_dbs():
        if name.startswith(prefix):
            couch_server.delete_db(name)


def test_pattern_follows_created_and_deleted_databases(couch_server, panda, tmp_path, named):
    matching = [f"{named}el-{letter}" for letter in "abc"]
    for name in [*matching, f"{named}other"]:
        couch_server.create_db(name)
        couch_server.bulk_docs(name, docs(name[-1], 3))
    fleet = Fleet(couch_server.url, panda, tmp_path / "fleet", tables={
        "elections": {"source": {"databases": [f"{named}el-*"]}, "panda": {"dataset_template": "{database}"},
                      "checkpoint": {"path_template": str(tmp_path / "fleet/state/{database}.checkpoint")}},
    })
    bridge = fleet.watch()
    wait_until(lambda: all(len(fleet.rows(name)) == 3 for name in matching), "three matching databases mirror",
               process=bridge.process)
    assert f"{named}other" not in panda.store.datasets

    created = f"{named}el-d"
    couch_server.create_db(created)
    couch_server.bulk_docs(created, docs("d", 2))
    wait_until(lambda: len(fleet.rows(created)) == 2, "the database created while running gets its rows",
               timeout=60, process=bridge.process)

    couch_server.delete_db(matching[1])
    bridge.wait_for(f"pipeline {matching[1]} stopped", timeout=60)
    couch_server.bulk_docs(matching[0], docs("a", 2, 3))
    couch_server.bulk_docs(created, docs("d", 2, 2))
    wait_until(lambda: len(fleet.rows(matching[0])) == 5 and len(fleet.rows(created)) == 4,
               "the other pipelines keep following", process=bridge.process)
    listed = json.loads(fleet.cli("status", "--json").stdout)
    assert [entry["pipeline"] for entry in listed] == [matching[0], matching[2], created]
    assert bridge.stop(signal.SIGTERM) == 0  # a deleted database's pipeline ended cleanly
    assert "has no _db_updates" not in bridge.log  # found through _db_updates, not the _all_dbs fallback
    assert "Error" not in "".join(line for line in bridge.log.splitlines(True) if "ERROR" in line)
