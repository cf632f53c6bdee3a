"""Table-driven tests of the emulator's pure PANDA rules and its socket-free request handler."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.emulator import routes, rules
from bridge.emulator.app import PandaApp, Request, Response
from bridge.emulator.faults import Faults
from bridge.emulator.rules import Refusal, Refused
from bridge.emulator.state import Store

COLS = [{"name": "a"}, {"name": "b"}]
ID_CHARS = {"data": {"external_id": [rules.MSG_ID_CHARS]}}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc", True),
        ("A-b_9", True),
        ("abc\n", True),  # contract 7: Python's $ matches before a final newline
        ("", False),
        ("user:42", False),
        ("a/b", False),
        ("a b", False),
        ("a.b", False),
        ("é", False),  # ASCII only
        ("\nabc", False),
        ("abc\n\n", False),
    ],
)
def test_bulk_id_rule(value: str, ok: bool) -> None:
    assert rules.bulk_id_ok(value) is ok


@pytest.mark.parametrize(
    ("obj", "errors"),
    [
        ({"external_id": "x", "data": ["1"]}, {}),
        ({"data": ["1"]}, {}),
        ({"external_id": "x"}, {"data": [rules.MSG_DATA_REQUIRED]}),
        ({"external_id": "x", "data": []}, {"data": [rules.MSG_DATA_REQUIRED]}),
        ({"external_id": "x", "data": 0}, {"data": [rules.MSG_DATA_REQUIRED]}),
        ({"external_id": 42, "data": ["1"]}, {"external_id": [rules.MSG_ID_NOT_STRING]}),
        ({"external_id": None, "data": ["1"]}, {"external_id": [rules.MSG_ID_NOT_STRING]}),
        ({"external_id": "a b", "data": ["1"]}, {"external_id": [rules.MSG_ID_CHARS]}),
        (
            {"external_id": "", "data": None},
            {"data": [rules.MSG_DATA_REQUIRED], "external_id": [rules.MSG_ID_CHARS]},
        ),
    ],
)
def test_field_errors(obj: dict[str, Any], errors: dict[str, list[str]]) -> None:
    assert rules.field_errors(obj) == errors


@pytest.mark.parametrize(
    ("objects", "columns", "expected"),
    [
        ([], COLS, None),
        ([{"external_id": "x", "data": ["1", "2"]}], COLS, None),
        ([{"external_id": "x", "data": "ab"}], COLS, None),  # contract 8: only len() is checked
        (
            [{"external_id": "x", "data": ["1"]}],
            COLS,
            Refusal(400, json={"data": ["Got 1 data fields. Expected 2."]}),
        ),
        ([{"external_id": "x", "data": ["1"]}], None, Refusal(400, json={"dataset": [rules.MSG_NO_COLUMNS]})),
        ([{"external_id": "x", "data": 5}], COLS, rules.SERVER_ERROR),
        (["x"], COLS, rules.SERVER_ERROR),
        # stops at the first failure, in order
        (
            [{"external_id": "a:b", "data": ["1"]}, {"external_id": "x", "data": ["1"]}],
            COLS,
            Refusal(400, json=ID_CHARS),
        ),
        (
            [{"external_id": "ok", "data": ["1"]}, {"external_id": "a:b", "data": ["1", "2"]}],
            COLS,
            Refusal(400, json={"data": ["Got 1 data fields. Expected 2."]}),
        ),
    ],
)
def test_check_bulk_objects(objects: list[Any], columns: list[Any] | None, expected: Refusal | None) -> None:
    assert rules.check_bulk_objects(objects, columns) == expected


@pytest.mark.parametrize(
    ("body", "objects", "status"),
    [
        ({"objects": [1]}, [1], None),
        ({"objects": ""}, [], None),
        ({"objects": {"k": 1}}, ["k"], None),
        ({}, None, 400),
        ([], None, 400),
        ("text", None, 400),
        (["objects"], None, 500),
        (5, None, 500),
        (None, None, 500),
        ({"objects": 3}, None, 500),
    ],
)
def test_bulk_objects(body: Any, objects: list[Any] | None, status: int | None) -> None:
    if status is None:
        assert rules.bulk_objects(body) == objects
    else:
        with pytest.raises(Refused) as caught:
            rules.bulk_objects(body)
        assert caught.value.refusal.status == status


@pytest.mark.parametrize(
    ("body", "url_id", "expected"),
    [
        ({"data": []}, "u", "u"),
        ({"data": [], "external_id": "b"}, "u", "b"),  # the body's id wins
        ({"data": [], "external_id": 42}, None, "42"),
        ({"data": [], "external_id": True}, None, "True"),
        ({"data": [], "external_id": ""}, "u", None),
        ({"data": [], "external_id": None}, "u", None),
    ],
)
def test_single_external_id(body: dict[str, Any], url_id: str | None, expected: str | None) -> None:
    assert rules.single_external_id(body, url_id) == expected


@pytest.mark.parametrize(
    ("value", "breaks"),
    [("-x", True), ("AND", True), ("OR", True), ("NOT", True), ("and", False), ("x-", False)],
)
def test_delete_breaks_solr(value: str, breaks: bool) -> None:
    assert rules.delete_breaks_solr(value) is breaks


@pytest.mark.parametrize(
    ("query", "names", "error_index"),
    [
        ({"columns": "a,b"}, ["a", "b"], None),
        ({"columns": "a, b"}, ["a", " b"], None),
        ({"columns": ""}, [""], None),
        ({}, None, None),
        ({"typed_columns": "true"}, None, 0),
        ({"columns": "a,b", "typed_columns": "true"}, None, 1),
        ({"column_types": "int"}, None, 2),
        ({"columns": "a", "column_types": "int,int"}, None, 3),
    ],
)
def test_column_schema(query: dict[str, str], names: list[str] | None, error_index: int | None) -> None:
    schema, error = rules.column_schema(query)
    assert (None if schema is None else [c["name"] for c in schema]) == names
    assert error == (None if error_index is None else rules._COLUMN_ERRORS[error_index])


def test_typed_column_schema() -> None:
    schema, _ = rules.column_schema(
        {"columns": "Total Cost,b", "typed_columns": "TRUE,false", "column_types": "int,"}
    )
    assert schema is not None
    assert schema[0]["indexed_name"] == "column_int_total-cost"
    assert schema[1]["type"] is None and schema[1]["indexed"] is False


@pytest.mark.parametrize(
    ("types", "rows", "fails"),
    [
        ("int", [[[1]]], True),
        ("int", [["x"]], False),
        ("date", [[5]], True),
        ("date", [[""]], False),
        ("money", [["1"]], True),
    ],
)
def test_typing_fails(types: str, rows: list[Any], fails: bool) -> None:
    schema, _ = rules.column_schema({"columns": "a", "typed_columns": "true", "column_types": types})
    assert rules.typing_fails(schema, rows) is fails


@pytest.mark.parametrize(
    ("query", "expected"),
    [({}, (50, 0, 20)), ({"limit": "5", "offset": "10"}, (5, 10, 5)), ({"limit": "5000"}, (5000, 0, 1000))],
)
def test_parse_paging(query: dict[str, str], expected: tuple[int, int, int]) -> None:
    assert rules.parse_paging(query) == expected


@pytest.mark.parametrize("query", [{"limit": "abc"}, {"offset": "1.5"}, {"limit": "-1"}, {"limit": "1_0"}])
def test_parse_paging_refuses(query: dict[str, str]) -> None:
    with pytest.raises(Refused):
        rules.parse_paging(query)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("text/plain", False),
        ("", False),
        (None, False),
    ],
)
def test_content_type(value: str | None, ok: bool) -> None:
    assert rules.content_type_ok(value) is ok


@pytest.mark.parametrize(
    ("path", "kind", "slug", "eid"),
    [
        ("/api/1.0/dataset/", "dataset_list", "", ""),
        ("/api/1.0/dataset/schema/", "schema", "", ""),
        ("/api/1.0/dataset/d/", "dataset", "d", ""),
        ("/api/1.0/dataset/d/data/", "data_list", "d", ""),
        ("/api/1.0/dataset/d/data/x-1/", "data_detail", "d", "x-1"),
        ("/api/1.0/dataset/d/data/caf%C3%A9/", "data_detail", "d", "café"),  # Unicode \w in URLs
        ("/api/1.0/dataset/d/data/user:42/", None, "", ""),
        ("/api/1.0/dataset/d/data/a%2Fb/", None, "", ""),
        ("/api/1.0/dataset/d/data/a%20b/", None, "", ""),
        ("/api/1.0/dataset/d/data/%FF/", None, "", ""),
        ("/api/1.0/dataset/d", None, "", ""),
    ],
)
def test_match_route(path: str, kind: str | None, slug: str, eid: str) -> None:
    route = routes.match_route(path)
    if kind is None:
        assert route is None
    else:
        assert route == routes.Route(kind, slug, eid)


@pytest.mark.parametrize(
    ("headers", "query", "behind_nginx", "expected"),
    [
        ([("PANDA-EMAIL", "A@B.org"), ("PANDA-API-KEY", "k")], {}, True, ("a@b.org", "k")),
        ([("PANDA_EMAIL", "a@b.org"), ("PANDA_API_KEY", "k")], {}, True, ("", "")),  # nginx drops them
        ([("PANDA_EMAIL", "a@b.org"), ("PANDA_API_KEY", "k")], {}, False, ("a@b.org", "k")),
        ([], {"email": "a%40b.org", "api_key": "k"}, True, ("a@b.org", "k")),
        ([("PANDA-EMAIL", "h@b.org")], {"email": "q@b.org", "api_key": "k"}, True, ("h@b.org", "k")),
        ([("PANDA-EMAIL", "")], {"email": "q@b.org"}, True, ("q@b.org", "")),
    ],
)
def test_credentials(
    headers: list[tuple[str, str]], query: dict[str, str], behind_nginx: bool, expected: tuple[str, str]
) -> None:
    assert routes.credentials(headers, query, behind_nginx=behind_nginx) == expected


@pytest.mark.parametrize(
    ("query", "accept", "json"),
    [
        ({}, None, True),
        ({}, "*/*", True),
        ({}, "application/json", True),
        ({}, "text/html,application/xhtml+xml,*/*;q=0.8", False),
        ({"format": "json"}, "text/html", True),
        ({"format": "xml"}, None, False),
        ({}, "image/png", True),
    ],
)
def test_wants_json(query: dict[str, str], accept: str | None, json: bool) -> None:
    assert routes.wants_json(query, accept) is json


def test_faults_count_then_ratio() -> None:
    faults = Faults()
    faults.fail_writes(503, count=2, after_write=True)
    assert [f.status if f else None for f in (faults.next_write_fault() for _ in range(3))] == [
        503,
        503,
        None,
    ]
    faults.fail_ratio(500, 0.5, seed=1)
    first = [faults.next_write_fault() is not None for _ in range(20)]
    faults.fail_ratio(500, 0.5, seed=1)
    assert [faults.next_write_fault() is not None for _ in range(20)] == first  # seeded
    assert 0 < sum(first) < 20
    faults.slow_replies(2.0, count=1)
    assert (faults.next_delay(), faults.next_delay()) == (2.0, 0.0)


# The handler without sockets: a request in, a response out (contract 2's processing order).

H = (("PANDA-EMAIL", "panda@pandaproject.net"), ("PANDA-API-KEY", "anything"))


def make_app(clock: list[float]) -> PandaApp:
    store = Store(monotonic=lambda: clock[0], wall=lambda: 0.0)
    user = store.add_user("panda@pandaproject.net", "panda-demo-key")
    store.create_dataset("d", "D", rules.plain_columns(["a", "b"]), user)
    return PandaApp(store)


def req(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: tuple[tuple[str, str], ...] = H,
    query: str = "",
    ct: str = "application/json",
) -> Request:
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    return Request(method, path, query, params, headers, ct, None, body, body is not None, "panda.test")


def bulk(*objects: Any) -> dict[str, Any]:
    return {"objects": list(objects)}


@pytest.mark.parametrize(
    ("request_", "status", "body"),
    [
        (req("GET", "/api/1.0/dataset/d", headers=()), 301, b""),  # before auth
        (req("GET", "/api/1.0/dataset/d/data/user:42/"), 404, None),
        (req("PATCH", "/api/1.0/dataset/d/", headers=()), 405, b"GET,POST,PUT,DELETE"),
        (req("OPTIONS", "/api/1.0/dataset/d/", headers=()), 200, b"GET,POST,PUT,DELETE"),
        (req("GET", "/api/1.0/dataset/d/", headers=()), 401, b""),
        (
            req(
                "GET",
                "/api/1.0/dataset/d/",
                headers=(("PANDA-EMAIL", "nobody@x.org"), ("PANDA-API-KEY", "k")),
            ),
            401,
            b"",
        ),
        (req("GET", "/api/1.0/dataset/d/", headers=(("PANDA-EMAIL", "panda@pandaproject.net"),)), 401, b""),
        (req("GET", "/api/1.0/dataset/nope/"), 404, b""),
        (req("POST", "/api/1.0/dataset/d/"), 501, b""),
        (
            req("PUT", "/api/1.0/dataset/d/data/", bulk(), ct="text/plain"),
            500,
            orjson.dumps(rules.CANNED_ERROR),
        ),
        (req("PUT", "/api/1.0/dataset/d/data/", {"rows": []}), 400, b"Invalid data sent."),
        (req("PUT", "/api/1.0/dataset/nope/data/", bulk()), 404, orjson.dumps(rules.CANNED_ERROR)),
        (
            req("PUT", "/api/1.0/dataset/d/data/", bulk({"external_id": "a b", "data": ["1", "2"]})),
            400,
            orjson.dumps(ID_CHARS),
        ),
        (req("DELETE", "/api/1.0/dataset/d/data/missing/"), 204, b""),
        (req("DELETE", "/api/1.0/dataset/d/data/-x/"), 500, orjson.dumps(rules.CANNED_ERROR)),
        (req("GET", "/api/1.0/dataset/d/data/missing/"), 404, orjson.dumps(rules.CANNED_ERROR)),
        (req("GET", "/api/1.0/dataset/d/data/", query="limit=abc"), 500, orjson.dumps(rules.CANNED_ERROR)),
        (req("DELETE", "/api/1.0/dataset/d/data/"), 500, orjson.dumps(rules.CANNED_ERROR)),  # never written
        (req("PUT", "/api/1.0/dataset/e/", {"description": "x"}), 400, orjson.dumps(rules.NAME_REQUIRED)),
    ],
)
def test_handler_answers(request_: Request, status: int, body: bytes | None) -> None:
    response: Response = make_app([0.0]).handle(request_)
    assert response.status == status
    if body is not None:
        assert response.body == body


def test_lock_checked_after_validation_and_expires() -> None:
    clock = [0.0]
    app = make_app(clock)
    app.store.lock(app.store.datasets["d"], 5.0)
    bad = req("PUT", "/api/1.0/dataset/d/data/", bulk({"external_id": "x", "data": ["1"]}))
    good = req("PUT", "/api/1.0/dataset/d/data/", bulk({"external_id": "x", "data": ["1", "2"]}))
    assert app.handle(bad).status == 400  # contract 10: a bad batch gets 400 even when locked
    locked = app.handle(good)
    assert (locked.status, locked.body) == (403, rules.LOCKED_TEXT.encode())
    clock[0] = 6.0
    assert app.handle(good).status == 202
    assert app.store.rows("d") == {"x": ["1", "2"]}


def test_bulk_all_or_nothing_and_last_wins() -> None:
    app = make_app([0.0])
    mixed = bulk({"external_id": "x", "data": ["1", "2"]}, {"external_id": "y", "data": ["1"]})
    assert app.handle(req("PUT", "/api/1.0/dataset/d/data/", mixed)).status == 400
    assert app.store.rows("d") == {}
    twice = bulk({"external_id": "x", "data": ["1", "2"]}, {"external_id": "x", "data": ["3", "4"]})
    response = app.handle(req("PUT", "/api/1.0/dataset/d/data/", twice))
    assert response.status == 202 and len(orjson.loads(response.body)["objects"]) == 2
    assert app.store.rows("d") == {"x": ["3", "4"]}
    assert app.store.datasets["d"].row_count == 1
