"""The PANDA emulator over real HTTP: contract 15's edge cases that a bridge can meet, and the switches."""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge.emulator import DEFAULT_EMAIL, PandaEmulator
from bridge.emulator.rules import CANNED_ERROR, LOCKED_TEXT

AUTH = {"PANDA-EMAIL": DEFAULT_EMAIL, "PANDA-API-KEY": "panda-demo-key"}
JSON = {**AUTH, "Content-Type": "application/json"}
DS = "/api/1.0/dataset/d/"
DATA = DS + "data/"
ID_CHARS = {
    "data": {"external_id": ["external_id can only contain letters, numbers, underscores and dashes."]}
}


@pytest.fixture
def emu(panda_server: PandaEmulator) -> PandaEmulator:
    server = panda_server
    server.reset()
    server.create_dataset("d", ["a", "b"])
    return server


@pytest.fixture
def web() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def call(
    web: requests.Session, emu: PandaEmulator, method: str, path: str, body: Any = None, **kw: Any
) -> requests.Response:
    kw.setdefault("headers", JSON if body is not None else AUTH)
    kw.setdefault("timeout", 5)
    return web.request(method, emu.url + path, json=body, allow_redirects=False, **kw)


def bulk(*objects: Any) -> dict[str, Any]:
    return {"objects": list(objects)}


def row(eid: Any, data: Any = ("1", "2")) -> dict[str, Any]:
    return {"external_id": eid, "data": list(data) if isinstance(data, tuple) else data}


# authentication (contract 3)


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {}, 401),
        ({"PANDA-EMAIL": "nobody@example.org", "PANDA-API-KEY": "k"}, {}, 401),
        ({"PANDA-EMAIL": "off@example.org", "PANDA-API-KEY": "k"}, {}, 401),
        ({"PANDA-EMAIL": DEFAULT_EMAIL}, {}, 401),
        ({"PANDA-EMAIL": DEFAULT_EMAIL, "PANDA-API-KEY": "wrong"}, {}, 200),  # accepted, as PANDA does
        ({"PANDA-EMAIL": DEFAULT_EMAIL.upper(), "PANDA-API-KEY": "k"}, {}, 200),
        ({"PANDA_EMAIL": DEFAULT_EMAIL, "PANDA_API_KEY": "k"}, {}, 401),  # nginx drops '_' names
        ({}, {"email": DEFAULT_EMAIL, "api_key": "k"}, 200),
    ],
)
def test_authentication(
    emu: PandaEmulator, web: requests.Session, headers: dict[str, str], params: dict[str, str], status: int
) -> None:
    emu.add_user("off@example.org", "k", active=False)
    response = call(web, emu, "GET", DS, headers=headers, params=params)
    assert response.status_code == status
    if status == 401:
        assert response.content == b""


def test_strict_keys_and_underscore_headers_without_nginx(web: requests.Session) -> None:
    with PandaEmulator(strict_keys=True, behind_nginx=False) as emu:
        emu.create_dataset("d", ["a"])
        wrong = {"PANDA-EMAIL": DEFAULT_EMAIL, "PANDA-API-KEY": "wrong"}
        assert call(web, emu, "GET", DS, headers=wrong).status_code == 401
        right = {"PANDA_EMAIL": DEFAULT_EMAIL, "PANDA_API_KEY": "panda-demo-key"}
        assert call(web, emu, "GET", DS, headers=right).status_code == 200


def test_recorded_requests_hide_credentials(emu: PandaEmulator, web: requests.Session) -> None:
    emu.clear_requests()
    call(web, emu, "GET", DS, headers={}, params={"email": DEFAULT_EMAIL, "api_key": "k", "x": "1"})
    call(web, emu, "PUT", DATA, bulk(row("x")))
    first, second = emu.requests
    assert (first.query, first.query_credentials, first.status) == ({"x": ["1"]}, True, 200)
    assert (second.body, second.query_credentials, second.status) == (bulk(row("x")), False, 202)
    assert "PANDA-API-KEY" not in second.headers and second.content_type == "application/json"


# URLs and methods (contracts 1, 2)


def test_missing_slash_redirects_before_auth(emu: PandaEmulator, web: requests.Session) -> None:
    response = call(web, emu, "PUT", "/api/1.0/dataset/d/data?x=1", headers={})
    assert response.status_code == 301
    assert response.headers["Location"] == emu.url + "/api/1.0/dataset/d/data/?x=1"


@pytest.mark.parametrize(
    "path", [DATA + "user:42/", DATA + "a%2Fb/", DATA + "a%20b/", "/api/1.0/datasets/", "/"]
)
def test_bad_url_characters_get_html_404(emu: PandaEmulator, web: requests.Session, path: str) -> None:
    response = call(web, emu, "GET", path, headers={})
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [("PATCH", {}, 405), ("HEAD", {}, 405), ("OPTIONS", {}, 200), ("POST", {}, 401), ("POST", AUTH, 501)],
)
def test_methods(
    emu: PandaEmulator, web: requests.Session, method: str, headers: dict[str, str], status: int
) -> None:
    response = call(web, emu, method, DATA + "x/", headers=headers)
    assert response.status_code == status
    if status in (200, 405):
        assert response.headers["Allow"] == "GET,POST,PUT,DELETE"


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json; charset=utf-8", b'{"objects": []}', 202),
        ("text/plain", b'{"objects": []}', 500),
        (None, b'{"objects": []}', 500),
        ("application/json", b"{not json", 500),
        ("application/json", b"", 500),
    ],
)
def test_body_parsing(
    emu: PandaEmulator, web: requests.Session, content_type: str | None, body: bytes, status: int
) -> None:
    headers = dict(AUTH, **({"Content-Type": content_type} if content_type else {}))
    response = web.put(emu.url + DATA, data=body, headers=headers, timeout=5)
    assert response.status_code == status
    if status == 500:
        assert response.json() == CANNED_ERROR


def test_browser_accept_gets_html_and_the_write_happens(emu: PandaEmulator, web: requests.Session) -> None:
    headers = dict(JSON, Accept="text/html,application/xhtml+xml,*/*;q=0.8")
    response = call(web, emu, "PUT", DATA, bulk(row("x")), headers=headers)
    assert response.status_code == 202
    assert response.text.startswith("Sorry, not implemented yet.")
    assert emu.rows("d") == {"x": ["1", "2"]}


# datasets (contracts 4, 5, 13)


def test_dataset_get_and_create(emu: PandaEmulator, web: requests.Session) -> None:
    missing = call(web, emu, "GET", "/api/1.0/dataset/new/")
    assert (missing.status_code, missing.content) == (404, b"")
    created = call(web, emu, "PUT", "/api/1.0/dataset/new/", {"name": "New"}, params={"columns": "x,y"})
    assert created.status_code == 201
    assert created.headers["Location"] == emu.url + "/api/1.0/dataset/new/"
    info = created.json()
    assert [c["name"] for c in info["column_schema"]] == ["x", "y"] and info["row_count"] is None
    again = call(web, emu, "PUT", "/api/1.0/dataset/new/", {"name": "Renamed"}, params={"columns": "z"})
    assert again.status_code == 202
    assert [c["name"] for c in again.json()["column_schema"]] == ["x", "y"]  # columns ignored
    got = call(web, emu, "GET", "/api/1.0/dataset/new/").json()
    assert got["name"] == "Renamed" and got == emu.dataset("new")
    for key in ("slug", "id", "resource_uri", "locked", "locked_at", "creator", "sample_data", "categories"):
        assert key in got


def test_dataset_create_refusals(emu: PandaEmulator, web: requests.Session) -> None:
    nameless = call(web, emu, "PUT", "/api/1.0/dataset/e/", {"description": "x"}, params={"columns": "a"})
    assert (nameless.status_code, nameless.json()) == (
        400,
        {"dataset": {"name": ["This field is required."]}},
    )
    assert call(web, emu, "GET", "/api/1.0/dataset/e/").status_code == 404
    bad = call(web, emu, "PUT", "/api/1.0/dataset/e/", {"name": "E"}, params={"typed_columns": "true"})
    assert bad.status_code == 400 and bad.text.startswith('The "columns" argument must also be specified')
    assert emu.dataset("e")["column_schema"] is None  # saved anyway, without columns
    write = call(web, emu, "PUT", "/api/1.0/dataset/e/data/", bulk(row("x", ["1"])))
    assert write.json() == {"dataset": ["Can not create or modify data for a dataset without columns."]}


def test_post_with_an_existing_slug_breaks_the_dataset(emu: PandaEmulator, web: requests.Session) -> None:
    assert call(web, emu, "POST", "/api/1.0/dataset/", {"name": "D", "slug": "d"}).status_code == 201
    assert call(web, emu, "GET", DS).status_code == 300
    assert call(web, emu, "PUT", DATA, bulk(row("x"))).status_code == 500
    assert [r.destructive for r in emu.requests if r.method == "POST"] == [True]


def test_destructive_list_calls_are_answered_and_recorded_not_carried_out(
    emu: PandaEmulator, web: requests.Session
) -> None:
    emu.clear_requests()
    assert call(web, emu, "DELETE", "/api/1.0/dataset/").status_code == 204
    assert call(web, emu, "PUT", "/api/1.0/dataset/", {"objects": []}).status_code == 202
    assert [r.destructive for r in emu.requests] == [True, True]
    assert call(web, emu, "GET", DS).status_code == 200
    assert call(web, emu, "DELETE", DS).status_code == 204
    assert emu.requests[-1].destructive and call(web, emu, "GET", DS).status_code == 404


# bulk upserts (contracts 6-10)


def test_bulk_upsert_accepted(emu: PandaEmulator, web: requests.Session) -> None:
    response = call(web, emu, "PUT", DATA, bulk(row("x"), row("y", ["3", None]), row("x", ["5", "6"])))
    assert response.status_code == 202
    assert response.json()["objects"][1] == {
        "data": ["3", None],
        "dataset": DS,
        "external_id": "y",
        "resource_uri": DATA + "y/",
    }
    assert emu.rows("d") == {"y": ["3", None], "x": ["5", "6"]}  # the last x wins
    info = emu.dataset("d")
    assert (info["row_count"], info["last_modification"]) == (2, "2 rows added and 1 updated")
    empty = call(web, emu, "PUT", DATA, bulk())
    assert (empty.status_code, empty.json()) == (202, {"objects": []})


@pytest.mark.parametrize(
    ("objects", "status", "body"),
    [
        ({"rows": []}, 400, "Invalid data sent."),
        (bulk(row("user:42")), 400, ID_CHARS),
        (bulk(row("a/b")), 400, ID_CHARS),
        (bulk(row("a b")), 400, ID_CHARS),
        (bulk(row("é")), 400, ID_CHARS),
        (bulk(row("")), 400, ID_CHARS),
        (bulk(row(42)), 400, {"data": {"external_id": ["external_id must be a string."]}}),
        (bulk(row(None)), 400, {"data": {"external_id": ["external_id must be a string."]}}),
        (bulk({"external_id": "x"}), 400, {"data": {"data": ["The data field is required."]}}),
        (bulk(row("x", [])), 400, {"data": {"data": ["The data field is required."]}}),
        (bulk(row("ok"), row("x", ["1", "2", "3"])), 400, {"data": ["Got 3 data fields. Expected 2."]}),
        (bulk(row("x", 7)), 500, CANNED_ERROR),
        (bulk("x"), 500, CANNED_ERROR),
    ],
)
def test_bulk_refusals_write_nothing(
    emu: PandaEmulator, web: requests.Session, objects: Any, status: int, body: Any
) -> None:
    response = call(web, emu, "PUT", DATA, objects)
    assert response.status_code == status
    assert (response.text if isinstance(body, str) else response.json()) == body
    assert emu.rows("d") == {} and emu.dataset("d")["row_count"] is None


def test_trailing_newline_id_is_accepted_but_unaddressable(emu: PandaEmulator, web: requests.Session) -> None:
    response = call(web, emu, "PUT", DATA, bulk(row("abc\n")))
    assert response.status_code == 202 and response.json()["objects"][0]["resource_uri"] == ""
    assert emu.rows("d") == {"abc\n": ["1", "2"]}


def test_unknown_dataset_data_calls_get_canned_404(emu: PandaEmulator, web: requests.Session) -> None:
    for method, path, body in [
        ("PUT", "/api/1.0/dataset/zz/data/", bulk()),
        ("DELETE", "/api/1.0/dataset/zz/data/x/", None),
        ("GET", "/api/1.0/dataset/zz/data/x/", None),
        ("GET", "/api/1.0/dataset/zz/data/", None),
    ]:
        response = call(web, emu, method, path, body)
        assert (response.status_code, response.json()) == (404, CANNED_ERROR)


def test_lock_is_checked_after_validation(emu: PandaEmulator, web: requests.Session) -> None:
    emu.lock("d")
    assert call(web, emu, "PUT", DATA, bulk(row("x", ["1"]))).status_code == 400
    locked = call(web, emu, "PUT", DATA, bulk(row("x")))
    assert (locked.status_code, locked.text) == (403, LOCKED_TEXT)
    assert call(web, emu, "DELETE", DATA + "x/").status_code == 403
    assert call(web, emu, "GET", DS).json()["locked"] is True
    emu.unlock("d")
    assert call(web, emu, "PUT", DATA, bulk(row("x"))).status_code == 202
    info = emu.dataset("d")
    assert info["locked"] is False and info["locked_at"] is not None


def test_typed_int_column_refuses_arrays(emu: PandaEmulator, web: requests.Session) -> None:
    params = {"columns": "n", "typed_columns": "true", "column_types": "int"}
    assert call(web, emu, "PUT", "/api/1.0/dataset/t/", {"name": "T"}, params=params).status_code == 201
    assert call(web, emu, "PUT", "/api/1.0/dataset/t/data/", bulk(row("x", [[1]]))).status_code == 500
    assert emu.rows("t") == {}


def test_slugs_share_solr_documents(emu: PandaEmulator, web: requests.Session) -> None:
    emu.create_dataset("d-b", ["a", "b"])
    call(web, emu, "PUT", DATA, bulk(row("b-c")))
    call(web, emu, "PUT", "/api/1.0/dataset/d-b/data/", bulk(row("c", ["9", "9"])))
    assert (emu.rows("d"), emu.rows("d-b")) == ({}, {"c": ["9", "9"]})  # contract 7: the row moved


# single-row writes (contract 6)


def test_single_writes(emu: PandaEmulator, web: requests.Session) -> None:
    posted = call(web, emu, "POST", DATA, {"external_id": "p", "data": ["1", "2"]})
    assert (posted.status_code, posted.headers["Location"]) == (201, emu.url + DATA + "p/")
    assert call(web, emu, "PUT", DATA + "new/", {"data": ["1", "2"]}).status_code == 202
    assert (
        call(web, emu, "PUT", DATA + "url/", {"data": ["3", "4"], "external_id": "body"}).status_code == 202
    )
    spaced = call(web, emu, "PUT", DATA + "u/", {"data": ["1", "2"], "external_id": "a b"})
    assert (spaced.status_code, spaced.json()["resource_uri"]) == (202, "")
    assert call(web, emu, "POST", DATA, {"external_id": "user:42", "data": ["1", "2"]}).status_code == 500
    for _ in range(2):
        assert call(web, emu, "PUT", DATA + "x/", {"data": ["1", "2"], "external_id": ""}).status_code == 202
    assert call(web, emu, "PUT", DATA + "x/", {"external_id": "x"}).status_code == 500
    assert call(web, emu, "PUT", DATA + "x/", [{"data": ["1", "2"]}]).status_code == 500
    assert sorted(emu.rows("d")) == ["a b", "body", "new", "p", "user:42"]
    assert emu.dataset("d")["row_count"] == 7  # two id-less rows


# reads and deletes (contracts 11, 12)


def test_row_get_and_deletes(emu: PandaEmulator, web: requests.Session) -> None:
    call(web, emu, "PUT", DATA, bulk(row("x"), row("y")))
    assert call(web, emu, "GET", DATA + "x/").json()["data"] == ["1", "2"]
    assert call(web, emu, "GET", DATA + "zz/").json() == CANNED_ERROR
    assert call(web, emu, "DELETE", DATA + "x/").status_code == 204
    assert call(web, emu, "DELETE", DATA + "x/").status_code == 204  # a missing row is fine
    for eid in ("-x", "AND", "OR", "NOT"):
        assert call(web, emu, "DELETE", DATA + eid + "/").status_code == 500
    assert emu.rows("d") == {"y": ["1", "2"]}
    assert emu.dataset("d")["last_modification"] == "1 row deleted"
    assert call(web, emu, "DELETE", DATA).status_code == 204
    assert emu.rows("d") == {} and emu.dataset("d")["row_count"] == 0


def test_delete_all_of_a_never_written_dataset_is_a_500(emu: PandaEmulator, web: requests.Session) -> None:
    assert call(web, emu, "DELETE", DATA).status_code == 500
    assert emu.dataset("d")["row_count"] is None


def test_listing_paging(emu: PandaEmulator, web: requests.Session) -> None:
    call(web, emu, "PUT", DATA, bulk(*(row("r%03d" % i) for i in range(60))))
    default = call(web, emu, "GET", DATA).json()
    assert (len(default["objects"]), default["meta"]["limit"], default["meta"]["total_count"]) == (50, 20, 60)
    page = call(web, emu, "GET", DATA, params={"limit": "10", "offset": "50"}).json()
    assert [o["external_id"] for o in page["objects"]] == ["r%03d" % i for i in range(50, 60)]
    assert page["meta"]["next"] is None and "offset=40" in page["meta"]["previous"]
    assert call(web, emu, "GET", DATA, params={"limit": "abc"}).status_code == 500
    assert "data_uploads" not in default and default["row_count"] == 60


# transport (contract 14)


def test_nginx_limits(emu: PandaEmulator, web: requests.Session) -> None:
    assert call(web, emu, "GET", DATA + "x" * 9000 + "/").status_code == 414
    chunked = web.put(emu.url + DATA, data=iter([b'{"objects": []}']), headers=JSON, timeout=5)
    assert chunked.status_code == 411


def test_keep_alive_connection_is_reused(emu: PandaEmulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("PUT", DATA, body=b'{"objects": []}', headers=JSON)
            response = conn.getresponse()
            response.read()
            assert response.status == 202 and not response.will_close
    finally:
        conn.close()


def test_one_write_at_a_time(emu: PandaEmulator) -> None:
    active, peak, guard = [0], [0], threading.Lock()
    original = emu.app.handle

    def counting(req: Any) -> Any:
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return original(req)
        finally:
            with guard:
                active[0] -= 1

    emu.app.handle = counting  # type: ignore[method-assign]
    emu.set_latency(0.02)
    try:
        threads = [
            threading.Thread(
                target=lambda i=i: requests.put(
                    emu.url + DATA, json=bulk(row("t%d" % i)), headers=JSON, timeout=5
                )
            )
            for i in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        emu.app.handle = original  # type: ignore[method-assign]
    assert peak[0] == 1 and len(emu.rows("d")) == 6


# test switches (contract 18)


def test_fail_writes_before_and_after(emu: PandaEmulator, web: requests.Session) -> None:
    emu.fail_writes(503, count=2)
    assert [call(web, emu, "PUT", DATA, bulk(row("x"))).status_code for _ in range(3)] == [503, 503, 202]
    emu.fail_writes(504, after_write=True)
    assert call(web, emu, "PUT", DATA, bulk(row("y"))).status_code == 504
    assert sorted(emu.rows("d")) == ["x", "y"]  # the 504 came after a completed write
    assert call(web, emu, "GET", DS).status_code == 200  # reads are not writes


def test_fail_ratio_is_seeded(emu: PandaEmulator, web: requests.Session) -> None:
    def run() -> list[int]:
        emu.fail_ratio(502, 0.5, seed=7)
        return [call(web, emu, "PUT", DATA, bulk()).status_code for _ in range(12)]

    first = run()
    assert run() == first and set(first) == {202, 502}


def test_slow_replies_exceed_a_client_timeout(emu: PandaEmulator, web: requests.Session) -> None:
    emu.slow_replies(1.0, count=1)
    with pytest.raises(requests.Timeout):
        call(web, emu, "PUT", DATA, bulk(row("x")), timeout=0.2)
    assert call(web, emu, "GET", DATA + "x/").status_code == 200


def test_control_endpoints(emu: PandaEmulator, web: requests.Session) -> None:
    def control(method: str, path: str, body: Any = None) -> Any:
        response = web.request(method, emu.url + "/_emulator/" + path, json=body, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    control("POST", "users", {"email": "ctl@example.org", "api_key": "k"})
    control("POST", "datasets", {"slug": "c", "columns": ["a"]})
    control("POST", "datasets/c/lock", {"seconds": 60})
    headers = {"PANDA-EMAIL": "ctl@example.org", "PANDA-API-KEY": "k", "Content-Type": "application/json"}
    assert (
        call(web, emu, "PUT", "/api/1.0/dataset/c/data/", bulk(row("x", ["1"])), headers=headers).status_code
        == 403
    )
    control("POST", "datasets/c/unlock")
    control("POST", "faults", {"status": 504, "after_write": True})
    assert (
        call(web, emu, "PUT", "/api/1.0/dataset/c/data/", bulk(row("x", ["1"])), headers=headers).status_code
        == 504
    )
    assert control("GET", "datasets/c/rows") == {"x": ["1"]}
    assert control("GET", "datasets/c")["row_count"] == 1
    assert [r["status"] for r in control("GET", "requests")][-2:] == [403, 504]
    control("DELETE", "requests")
    assert control("GET", "requests") == []
    control("POST", "latency", {"seconds": 0})
    control("POST", "slow", {"seconds": 0})
    control("POST", "faults/ratio", {"status": 503, "ratio": 0})
    control("POST", "reset")
    assert web.get(emu.url + "/_emulator/datasets/c", timeout=5).status_code == 404
    assert web.post(emu.url + "/_emulator/users", json={}, timeout=5).status_code == 400


def test_command_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge.emulator",
            "--port",
            "0",
            "--dataset",
            "cli:a,b",
            "--user",
            "u@example.org:k",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"listening on (http://\S+)", line)
        assert found, line
        headers = {"PANDA-EMAIL": "u@example.org", "PANDA-API-KEY": "k"}
        response = requests.get(found.group(1) + "/api/1.0/dataset/cli/", headers=headers, timeout=5)
        assert [c["name"] for c in response.json()["column_schema"]] == ["a", "b"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert "GET /api/1.0/dataset/cli/ 200" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
