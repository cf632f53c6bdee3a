"""PandaSink against the PANDA emulator: dataset checks, upserts with isolated rejections, deletes, faults."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import bridge.sink.panda as sink_module
from bridge.config.settings import PandaSettings, RetrySettings
from bridge.emulator import DEFAULT_API_KEY, DEFAULT_EMAIL, PandaEmulator
from bridge.errors import (
    AuthError,
    ConfigError,
    DatasetLocked,
    NotFoundError,
    ProtocolError,
    RejectedError,
    SinkUnavailable,
    StopRequested,
)
from bridge.model import Delete, Upsert
from bridge.sink.panda import PandaSink
from bridge.sink.panda_status import classify

QUICK = RetrySettings(initial_delay=0.01, max_delay=0.05)
COLUMNS = ["a", "b"]


@pytest.fixture
def emu(panda_server: PandaEmulator) -> PandaEmulator:
    server = panda_server
    server.reset()
    return server


@pytest.fixture
def stop() -> threading.Event:
    return threading.Event()


def make_sink(emu: PandaEmulator, stop: threading.Event, **kw: Any) -> PandaSink:
    options: dict[str, Any] = {"timeout": 2.0, "retry": QUICK, "stop": stop}
    options.update(kw)
    email = options.pop("email", DEFAULT_EMAIL)
    dataset = options.pop("dataset", "d")
    settings = PandaSettings(url=emu.url, email=email, api_key="any-key", dataset=dataset,
                             timeout=options.pop("timeout"))
    return PandaSink(settings, **options)


@pytest.fixture
def sink(emu: PandaEmulator, stop: threading.Event) -> Iterator[PandaSink]:
    emu.create_dataset("d", COLUMNS)
    sink = make_sink(emu, stop)
    sink.ensure_dataset(COLUMNS, create=False)
    emu.clear_requests()
    yield sink
    sink.close()


def up(eid: str, *cells: str | None) -> Upsert:
    return Upsert(eid, tuple(cells) if cells else ("x-" + eid, "y"))


def puts(emu: PandaEmulator) -> list[int]:
    return [r.status for r in emu.requests if r.method == "PUT"]


# ensure_dataset


def test_ensure_dataset_creates_with_get_then_put(emu: PandaEmulator, stop: threading.Event) -> None:
    sink = make_sink(emu, stop, dataset="fresh")
    sink.ensure_dataset(COLUMNS, create=True, name="Fresh rows")
    info = emu.dataset("fresh")
    assert [c["name"] for c in info["column_schema"]] == COLUMNS and info["name"] == "Fresh rows"
    assert [(r.method, r.status) for r in emu.requests] == [("GET", 404), ("PUT", 201), ("GET", 200)]
    assert emu.requests[1].query == {"columns": ["a,b"]}
    assert not any(r.destructive or r.query_credentials for r in emu.requests)


def test_ensure_dataset_leaves_an_existing_dataset_alone(emu: PandaEmulator, stop: threading.Event) -> None:
    emu.create_dataset("d", COLUMNS)
    make_sink(emu, stop).ensure_dataset(COLUMNS, create=True)
    assert [r.method for r in emu.requests] == ["GET"]


@pytest.mark.parametrize("columns", [["a", "c"], ["b", "a"], ["a"], None])
def test_ensure_dataset_refuses_other_columns(
    emu: PandaEmulator, stop: threading.Event, columns: list[str] | None
) -> None:
    emu.create_dataset("d", columns)
    with pytest.raises(ConfigError) as caught:
        make_sink(emu, stop).ensure_dataset(COLUMNS, create=True)
    assert "['a', 'b']" in str(caught.value)
    assert (str(columns) if columns else "no columns") in str(caught.value)
    assert [r.method for r in emu.requests] == ["GET"]


def test_ensure_dataset_missing_without_create(emu: PandaEmulator, stop: threading.Event) -> None:
    with pytest.raises(NotFoundError):
        make_sink(emu, stop).ensure_dataset(COLUMNS, create=False)


def test_ensure_dataset_survives_a_504_after_creation(emu: PandaEmulator, stop: threading.Event) -> None:
    emu.fail_writes(504, after_write=True)
    make_sink(emu, stop).ensure_dataset(COLUMNS, create=True)
    assert [(r.method, r.status) for r in emu.requests] == [("GET", 404), ("PUT", 504), ("GET", 200)]


@pytest.mark.parametrize(
    ("url", "dataset", "columns"),
    [
        ("http://x", "", COLUMNS),
        ("http://x", "a/b", COLUMNS),
        ("http://x", "schema", COLUMNS),
        ("ftp://x", "d", COLUMNS),
        ("http://u:p@x", "d", COLUMNS),
        ("http://x?email=e", "d", COLUMNS),
        ("http://x", "d", []),
        ("http://x", "d", ["a,b"]),
    ],
)
def test_configuration_is_checked_before_any_request(url: str, dataset: str, columns: list[str]) -> None:
    with pytest.raises(ConfigError):
        settings = PandaSettings(url=url, email=DEFAULT_EMAIL, api_key="k", dataset=dataset)
        PandaSink(settings, retry=QUICK, stop=threading.Event()).ensure_dataset(columns, create=True)


def test_auth_error_at_once(emu: PandaEmulator, stop: threading.Event) -> None:
    emu.create_dataset("d", COLUMNS)
    with pytest.raises(AuthError):
        make_sink(emu, stop, email="stranger@example.org").upsert([up("x")])
    assert len(emu.requests) == 1


# upsert


def test_upsert_delivers_in_one_request_with_header_credentials(sink: PandaSink, emu: PandaEmulator) -> None:
    assert sink.upsert([up("x"), up("y", "1", None)]) == []
    assert sink.upsert([]) == []
    assert emu.rows("d") == {"x": ["x-x", "y"], "y": ["1", None]}
    (request,) = emu.requests
    assert (request.method, request.path, request.status) == ("PUT", "/api/1.0/dataset/d/data/", 202)
    assert request.content_type == "application/json" and request.headers["Accept"] == "application/json"
    assert request.query == {} and not request.query_credentials
    assert request.headers.get("PANDA-EMAIL") is None  # recorded without credentials


def test_rejected_rows_are_isolated_and_good_rows_land(sink: PandaSink, emu: PandaEmulator) -> None:
    rows = [up("r%02d" % i) for i in range(20)]
    rows[5] = up("user:42")
    rows[12] = up("r12", "1", "2", "3")
    rejections = sink.upsert(rows)
    assert {r.external_id: r.status for r in rejections} == {"user:42": 400, "r12": 400}
    reasons = {r.external_id: r.reason for r in rejections}
    assert "external_id can only contain" in reasons["user:42"]
    assert "Got 3 data fields. Expected 2." in reasons["r12"]
    assert sorted(emu.rows("d")) == sorted(
        r.external_id for r in rows if r.external_id not in ("user:42", "r12")
    )
    assert len(puts(emu)) <= 5


def test_rejections_without_a_known_width(emu: PandaEmulator, stop: threading.Event) -> None:
    emu.create_dataset("d", COLUMNS)
    sink = make_sink(emu, stop)  # no ensure_dataset: the width comes from PANDA's message
    rejections = sink.upsert([up("a"), up("b c"), up("d", "1"), up("e")])
    assert sorted(r.external_id for r in rejections) == ["b c", "d"]
    assert sorted(emu.rows("d")) == ["a", "e"]


def test_bisection_when_no_row_looks_bad(
    sink: PandaSink, emu: PandaEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "locally_bad", lambda row, width: False)
    rows = [up("r%d" % i) for i in range(9)] + [up("bad:id")]
    rejections = sink.upsert(rows)
    assert [r.external_id for r in rejections] == ["bad:id"]
    assert len(emu.rows("d")) == 9


def test_a_dataset_without_columns_is_a_config_error(emu: PandaEmulator, stop: threading.Event) -> None:
    emu.create_dataset("d", None)
    with pytest.raises(ConfigError):
        make_sink(emu, stop).upsert([up("x"), up("y")])


def test_unavailable_for_a_while_then_delivered(sink: PandaSink, emu: PandaEmulator) -> None:
    emu.fail_writes(503, count=3)
    assert sink.upsert([up("x")]) == []
    assert emu.rows("d") == {"x": ["x-x", "y"]} and puts(emu) == [503, 503, 503, 202]


def test_locked_for_a_while_then_delivered(sink: PandaSink, emu: PandaEmulator) -> None:
    emu.lock("d", seconds=0.5)
    assert sink.upsert([up("x")]) == []
    assert emu.rows("d") == {"x": ["x-x", "y"]} and puts(emu)[0] == 403


def test_slow_reply_past_the_timeout_then_delivered(emu: PandaEmulator, stop: threading.Event) -> None:
    emu.create_dataset("d", COLUMNS)
    sink = make_sink(emu, stop, timeout=0.3)
    emu.slow_replies(1.0, count=1)
    assert sink.upsert([up("x")]) == []
    assert emu.rows("d") == {"x": ["x-x", "y"]} and len(puts(emu)) == 2


def test_504_after_the_write_then_retried(sink: PandaSink, emu: PandaEmulator) -> None:
    emu.fail_writes(504, after_write=True)
    assert sink.upsert([up("x")]) == []
    assert emu.rows("d") == {"x": ["x-x", "y"]} and puts(emu) == [504, 202]


def test_500_is_retried_only_a_few_times(sink: PandaSink, emu: PandaEmulator) -> None:
    emu.fail_writes(500, count=10)
    with pytest.raises(ProtocolError):
        sink.upsert([up("x")])
    assert len(puts(emu)) == 3  # README, failure table: "HTTP 500 | PANDA | 3 tries in all, then stop"


def test_stop_during_retry(emu: PandaEmulator, stop: threading.Event) -> None:
    emu.create_dataset("d", COLUMNS)
    sink = make_sink(emu, stop, retry=RetrySettings(initial_delay=30.0, max_delay=30.0))
    emu.fail_writes(503, count=100)
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    try:
        with pytest.raises(StopRequested):
            sink.upsert([up("x")])
    finally:
        timer.cancel()
    assert emu.rows("d") == {}


def test_unreachable_panda_is_unavailable(stop: threading.Event) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = PandaSink(
        PandaSettings(url="http://127.0.0.1:%d" % port, email=DEFAULT_EMAIL, api_key=DEFAULT_API_KEY, dataset="d"),
        retry=RetrySettings(initial_delay=0.01, max_delay=0.01, max_tries=2),
        stop=stop,
    )
    with pytest.raises(SinkUnavailable):
        sink.dataset_info()


# delete and dataset_info


def test_delete(sink: PandaSink, emu: PandaEmulator) -> None:
    sink.upsert([up("x"), up("y"), up("-z"), up("AND")])
    rejections = sink.delete([Delete("x"), Delete("missing"), Delete("-z"), Delete("AND"), Delete("a:b")])
    assert [r.external_id for r in rejections] == ["-z", "AND", "a:b"]
    assert sorted(emu.rows("d")) == ["-z", "AND", "y"]
    assert [r.status for r in emu.requests if r.method == "DELETE"] == [204, 204]
    assert sink.dataset_info()["row_count"] == 3


def test_delete_on_a_vanished_dataset(sink: PandaSink, emu: PandaEmulator) -> None:
    emu.reset()
    with pytest.raises(NotFoundError):
        sink.delete([Delete("x")])


# classify, case by case (contract 16.7)


def _response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.url = "http://panda.test/api/1.0/dataset/d/data/"
    response.request = requests.Request("PUT", response.url).prepare()
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    ("status", "data_endpoint", "error"),
    [
        (200, True, None),
        (202, True, None),
        (204, True, None),
        (301, True, ProtocolError),
        (400, True, RejectedError),
        (401, True, AuthError),
        (403, True, DatasetLocked),
        (403, False, AuthError),
        (404, True, NotFoundError),
        (405, True, ProtocolError),
        (411, True, ProtocolError),
        (414, True, RejectedError),  # the URL's external_id is too long: dead-lettered
        (429, True, SinkUnavailable),
        (500, True, SinkUnavailable),
        (501, True, ProtocolError),
        (502, True, SinkUnavailable),
        (503, True, SinkUnavailable),
        (504, True, SinkUnavailable),
    ],
)
def test_classify(status: int, data_endpoint: bool, error: type[Exception] | None) -> None:
    response = _response(status, b"Dataset is currently locked by another process.")
    if error is None:
        classify(response, data_endpoint=data_endpoint)
        return
    with pytest.raises(error) as caught:
        classify(response, data_endpoint=data_endpoint)
    assert type(caught.value) is error
    if status == 403 and data_endpoint:
        assert "locked by another process" in str(caught.value)
