"""Issue 4, end to end: which documents become rows (selector, doc_ids, design-document filter).

A selector is evaluated by the bridge on the unfiltered feed, so documents are seen leaving it; `doc_ids`
and `ddoc/name` filters run in the server, which never shows a document the filter rejects.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from bridge.config.settings import RetrySettings, SourceSettings
from bridge.errors import NotFoundError
from bridge.source.couchdb import CouchSource
from tests.integration.test_identity import by_code, dead_letters, delete, once, person, rows_for, save
from tests.support.oracle import expected_id
from tests.support.pipeline import Pipeline, deleted_ids, stop, wait_until, written_ids

ADULTS = {"type": "person", "age": {"$gte": 18}}


def is_adult(doc: Mapping[str, Any]) -> bool:
    age = doc.get("age")
    return doc.get("type") == "person" and isinstance(age, (int, float)) and not isinstance(age, bool) and age >= 18


def by_id(doc_id: str, _doc: Mapping[str, Any]) -> str:
    return expected_id(doc_id)


@pytest.mark.parametrize("external_id", ["_id", "code"])
def test_selector_adds_and_removes_rows_as_documents_enter_and_leave(couch_db, pipeline, panda, external_id):
    pipeline.extra = {"source": {"selector": ADULTS}, "mapping": {"external_id": external_id}}
    key = by_id if external_id == "_id" else by_code
    server, db = couch_db.server, couch_db.name
    a, b, c, d, e, g = save(server, db, [
        person("a", "Ann", type="person", age=30, code="A"),
        person("b", "Bob", type="person", age=12, code="B"),
        person("c", "Cy", type="org", age=40, code="C"),
        person("d", "Di", type="person", age=18, code="D"),
        person("e", "Ed", type="person", code="E"),
        person("g:Ω", "Gus", type="person", age=50, code="G:Ω"),
    ])

    def expected() -> dict[str, list[Any]]:
        return rows_for(pipeline, {i: doc for i, doc in server.live_docs(db).items() if is_adult(doc)}, key)

    once(pipeline)
    assert pipeline.rows() == expected()
    assert set(pipeline.rows()) == {key(x["_id"], x) for x in (a, d, g)}

    # Following live: documents enter, leave, change inside the filter and are deleted on either side.
    panda.clear_requests()
    process = pipeline.start()
    try:
        save(server, db, [dict(b, age=18), dict(a, type="org"), dict(e, age=20), dict(g, last_name="Moved")])
        delete(server, db, [c, d])
        save(server, db, [person("f", "Fay", type="person", age=50, code="F")])
        wait_until(lambda: pipeline.rows() == expected(), "the rows follow the selector", process=process)
    finally:
        code, err = stop(process)
    assert code == 0, err
    assert sorted(deleted_ids(panda, pipeline.dataset)) == sorted(key(x["_id"], x) for x in (a, d))
    assert not {key(x["_id"], x) for x in (a, c)} & set(written_ids(panda, pipeline.dataset))
    assert set(pipeline.rows()) == {key(x["_id"], x) for x in (b, e, g, person("f", "", code="F"))}

    # Re-entering brings the row back.
    a = server.get_doc(db, "a")
    save(server, db, [dict(a, type="person")])
    once(pipeline)
    assert pipeline.rows() == expected()
    assert key("a", a) in pipeline.rows()
    assert dead_letters(pipeline) == []


def test_doc_ids_filter_runs_in_the_server(couch_db, pipeline, panda):
    wanted = ["keep:1", "keep/2", "Zürich", "日本", "later"]
    pipeline.extra = {"source": {"doc_ids": wanted}}
    server, db = couch_db.server, couch_db.name
    keep1, keep2, _zurich, nihon, other1, _other2 = save(server, db, [
        person("keep:1", "K1"), person("keep/2", "K2"), person("Zürich", "Z"), person("日本", "N"),
        person("other:1", "O1"), person("other:2", "O2"),
    ])

    def expected() -> dict[str, list[Any]]:
        return rows_for(pipeline, {i: doc for i, doc in server.live_docs(db).items() if i in wanted})

    once(pipeline)
    assert pipeline.rows() == expected()
    assert len(pipeline.rows()) == 4
    if server.logs_requests:
        assert "filter=_doc_ids" in server.log_tail(400)

    panda.clear_requests()
    process = pipeline.start()
    try:
        save(server, db, [dict(other1, first_name="Changed"), dict(keep1, first_name="Kept")])
        delete(server, db, [keep2, nihon])
        save(server, db, [person("later", "L"), person("other:3", "O3")])
        wait_until(lambda: pipeline.rows() == expected(), "the listed documents follow", process=process)
    finally:
        code, err = stop(process)
    assert code == 0, err
    assert sorted(written_ids(panda, pipeline.dataset)) == sorted([expected_id("keep:1"), "later"])
    assert sorted(deleted_ids(panda, pipeline.dataset)) == sorted([expected_id("keep/2"), expected_id("日本")])
    assert pipeline.rows() == expected()


ONLY = "function (doc, req) { return Boolean(doc._deleted) || doc.type === req.query.type; }"


def test_design_document_filter_with_params(couch_db, pipeline, panda):
    # A server-side filter must pass tombstones (`doc._deleted`): a deleted document has no other field,
    # and a change the filter rejects never reaches the bridge.
    pipeline.extra = {"source": {"filter": "app/only_people", "filter_params": {"type": "person"}}}
    server, db = couch_db.server, couch_db.name
    save(server, db, [{"_id": "_design/app", "filters": {"only_people": ONLY}}])
    p1, p2, o1, o2 = save(server, db, [
        person("p:1", "P1", type="person"), person("p:2", "P2", type="person"),
        person("o:1", "O1", type="org"), person("o:2", "O2", type="org"),
    ])

    def expected() -> dict[str, list[Any]]:
        return rows_for(pipeline, {i: doc for i, doc in server.live_docs(db).items() if doc.get("type") == "person"})

    once(pipeline)
    assert pipeline.rows() == expected()
    assert set(pipeline.rows()) == {expected_id("p:1"), expected_id("p:2")}
    if server.logs_requests:
        log = server.log_tail(400)
        assert "filter=app%2Fonly_people" in log and "type=person" in log

    panda.clear_requests()
    delete(server, db, [p1, o1])
    save(server, db, [dict(p2, last_name="Edited"), dict(o2, last_name="Edited"), person("p:3", "P3", type="person")])
    once(pipeline)
    assert pipeline.rows() == expected()
    assert deleted_ids(panda, pipeline.dataset) == [expected_id("p:1")]  # o:1's tombstone: never sent, no delete
    assert sorted(written_ids(panda, pipeline.dataset)) == sorted(expected_id(i) for i in ("p:2", "p:3"))


def _source(url: str, database: str, filter_: str) -> CouchSource:
    settings = SourceSettings(url=url, database=database, filter=filter_)
    return CouchSource(settings, retry=RetrySettings(0.05, 0.1, max_tries=2), stop=threading.Event())


def test_check_filter_names_a_missing_filter_without_touching_the_feed(couch_db):
    server, db = couch_db.server, couch_db.name
    save(server, db, [{"_id": "_design/app", "filters": {"only_people": ONLY}}])
    _source(server.url, db, "app/only_people").check_filter()
    for filter_, reason in [("app/nobody", "_design/app has no filters.nobody"), ("nope/x", "missing")]:
        with pytest.raises(NotFoundError, match=f"filter '{filter_}'.*{reason}"):
            _source(server.url, db, filter_).check_filter()


def test_a_missing_filter_stops_the_bridge_with_a_clear_error(persistent_couch, panda, tmp_path):
    # Its own server: PouchDB Server crashes on the _changes request after a failed one.
    persistent_couch.create_db("people")
    save(persistent_couch, "people", [person("p:1", "P1", type="person")])
    pipeline = Pipeline(source_url=persistent_couch.url, database="people", panda=panda, dir=tmp_path / "bridge",
                        extra={"source": {"filter": "app/only_people", "filter_params": {"type": "person"}}})
    result = pipeline.once()
    assert result.returncode == 4, result.stderr
    assert "NotFoundError" in result.stderr and "filter 'app/only_people'" in result.stderr
    assert "Traceback" not in result.stderr
    assert pipeline.rows() == {}
