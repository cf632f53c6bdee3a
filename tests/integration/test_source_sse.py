"""SseSource against the scripted SSE server: framing, resuming with Last-Event-ID, reconnects, stopping."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bridge.config.settings import RetrySettings
from bridge.errors import AuthError, BridgeError, NotFoundError, ProtocolError, SourceUnavailable
from bridge.source.sse import SseSource
from bridge.source.sse_parser import SseEvent
from tests.support.sse_server import Entry, Plan, SseServer

FAST = RetrySettings(initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def server() -> Iterator[SseServer]:
    with SseServer() as running:
        yield running


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


SourceFactory = Callable[..., SseSource]


@pytest.fixture
def make_source(server: SseServer, stop: threading.Event) -> SourceFactory:
    def make(**kwargs: Any) -> SseSource:
        options: dict[str, Any] = {"read_timeout": 5.0, "retry": FAST, "min_reconnect": 0.01, "stop": stop}
        return SseSource(server.url, **{**options, **kwargs})

    return make


def collect(
    source: SseSource, count: int, last_event_id: str | None = None, timeout: float = 10.0
) -> list[SseEvent]:
    """The first `count` events, read in a thread that closes the generator; fails after `timeout`."""
    events: list[SseEvent] = []
    errors: list[BaseException] = []

    def read() -> None:
        stream = source.events(last_event_id)
        try:
            for event in stream:
                events.append(event)
                if len(events) >= count:
                    break
        except BaseException as exc:
            errors.append(exc)
        finally:
            stream.close()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        source._stop.set()
        thread.join(5)
        pytest.fail(f"read {len(events)} of {count} events in {timeout}s")
    if errors:
        raise errors[0]
    return events


def E(data: str, id: str | None = None, event: str = "message", retry: int | None = None) -> SseEvent:
    return SseEvent(id=id, event=event, data=data, retry=retry)


SHAPES = [
    Entry(retry=40),
    Entry(comment=" hello"),
    Entry(id="1", data="one"),
    Entry(data="two\nlines\n"),
    Entry(event="update", id="3", data='{"x": 1}'),
    Entry(id="", data="no id"),
    Entry(event="heartbeat", data=""),
    Entry(event="no-data"),
    Entry(id="7"),
    Entry(id="8\x009", data="NUL id ignored"),
    Entry(id="é-9", data="unicode ✓", retry=60),
]
SHAPE_EVENTS = [
    E("one", "1"),
    E("two\nlines\n", "1"),
    E('{"x": 1}', "3", "update"),
    E("no id"),
    E("", None, "heartbeat"),
    E("NUL id ignored", "7"),
    E("unicode ✓", "é-9", retry=60),
]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
@pytest.mark.parametrize("chunking", [None, 1, (3, 1, 7, 2)], ids=["whole", "bytes", "mixed"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_event_shapes(
    server: SseServer, make_source: SourceFactory, newline: str, chunking: Any, chunked: bool
) -> None:
    server.newline, server.chunking, server.chunked = newline.encode(), chunking, chunked
    server.append(*SHAPES)
    source = make_source()
    assert collect(source, len(SHAPE_EVENTS)) == SHAPE_EVENTS
    assert source.last_event_id == "é-9"
    assert source.reconnect_delay == 0.06
    assert len(server.connections) == 1


def test_request_headers_and_start_id(server: SseServer, make_source: SourceFactory) -> None:
    server.append(Entry(id="1", data="a"), Entry(id="2", data="b"))
    source = make_source(
        headers={"Authorization": "Basic eDp5"}, params={"feed": "eventsource", "since": "1"}
    )
    assert collect(source, 1, last_event_id="1") == [E("b", "2")]
    (record,) = server.connections
    assert record.last_event_id == "1"
    assert record.path == "/events?feed=eventsource&since=1"
    headers = {name.lower(): value for name, value in record.headers.items()}
    assert headers["accept"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["accept-encoding"] == "identity"
    assert headers["authorization"] == "Basic eDp5"


def test_no_last_event_id_without_a_start(server: SseServer, make_source: SourceFactory) -> None:
    server.append(Entry(data="a"))
    assert collect(make_source(), 1, last_event_id=None) == [E("a")]
    assert server.connections[0].last_event_id is None


LOG = [Entry(id=f"é{i}", data=f"event {i} " + "x" * 40 + f"\nline 2 of {i}") for i in range(1, 7)]
EXPECTED = [E(f"event {i} " + "x" * 40 + f"\nline 2 of {i}", f"é{i}") for i in range(1, 7)]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
@pytest.mark.parametrize(
    "plan, resumed_at",
    [
        (Plan(drop_after_events=2), "é2"),
        (Plan(drop_after_bytes=sum(len(e.encode(b"\n")) for e in LOG[:3]) + 5), "é3"),
        (
            Plan(drop_after_bytes=sum(len(e.encode(b"\n")) for e in LOG[:4]) - 1),
            "é3",
        ),  # only the last \n lost
    ],
    ids=["after 2 events", "5 bytes into the 4th", "1 byte short of the 4th"],
)
def test_drop_mid_event_resumes_without_loss_or_duplicate(
    server: SseServer,
    make_source: SourceFactory,
    caplog: pytest.LogCaptureFixture,
    chunked: bool,
    plan: Plan,
    resumed_at: str,
) -> None:
    server.chunked, server.chunking = chunked, 16
    server.append(*LOG)
    server.plan_next(plan)
    caplog.set_level(logging.INFO, logger="bridge.source.sse")
    assert collect(make_source(), len(EXPECTED)) == EXPECTED
    assert [record.last_event_id for record in server.connections] == [None, resumed_at]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "FeedInterrupted" in warnings[0].getMessage()


def test_resume_from_a_start_id_after_a_drop(server: SseServer, make_source: SourceFactory) -> None:
    server.append(*LOG)
    server.plan_next(Plan(drop_after_events=1))
    assert collect(make_source(), 3, last_event_id="é2") == EXPECTED[2:5]
    assert [record.last_event_id for record in server.connections] == ["é2", "é3"]


@pytest.mark.parametrize(
    "retry_ms, bounds, logged",
    [(30, {}, "0.03s"), (600_000, {"max_reconnect": 0.2}, "0.20s"), (0, {"min_reconnect": 0.05}, "0.05s")],
    ids=["as sent", "clamped down", "clamped up"],
)
def test_clean_end_reconnects_after_the_server_retry(
    server: SseServer,
    make_source: SourceFactory,
    caplog: pytest.LogCaptureFixture,
    retry_ms: int,
    bounds: dict[str, float],
    logged: str,
) -> None:
    server.append(Entry(retry=retry_ms, id="1", data="a"), Entry(id="2", data="b"))
    server.plan_next(Plan(end_after_events=1))
    caplog.set_level(logging.INFO, logger="bridge.source.sse")
    source = make_source(**bounds)
    assert collect(source, 2) == [E("a", "1", retry=retry_ms), E("b", "2")]
    assert [record.last_event_id for record in server.connections] == [None, "1"]
    (reconnect,) = [record for record in caplog.records if "reconnecting" in record.getMessage()]
    assert reconnect.levelno == logging.INFO
    assert f"in {logged}" in reconnect.getMessage() and "ended the stream" in reconnect.getMessage()
    assert f"{source.reconnect_delay:.2f}s" == logged


def test_stall_reconnects_after_the_read_timeout(
    server: SseServer, make_source: SourceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.append(Entry(id="1", data="a"), Entry(id="2", data="b"))
    server.plan_next(Plan(stall_after_events=1))
    caplog.set_level(logging.INFO, logger="bridge.source.sse")
    assert collect(make_source(read_timeout=0.5), 2) == [E("a", "1"), E("b", "2")]
    assert [record.last_event_id for record in server.connections] == [None, "1"]
    assert any("stalled" in record.getMessage() for record in caplog.records)


def test_comment_heartbeats_keep_a_quiet_stream_open(server: SseServer, make_source: SourceFactory) -> None:
    server.heartbeat = 0.1
    threading.Timer(1.5, server.append, [Entry(id="1", data="late")]).start()
    assert collect(make_source(read_timeout=0.5), 1) == [E("late", "1")]
    assert len(server.connections) == 1


def test_unavailable_twice_then_ok(server: SseServer, make_source: SourceFactory) -> None:
    server.append(Entry(id="0", data="seen"), Entry(id="1", data="new"))
    server.fail_next(503, 2, headers=(("Retry-After", "0"),))
    assert collect(make_source(), 1, last_event_id="0") == [E("new", "1")]
    assert [record.last_event_id for record in server.connections] == ["0", "0", "0"]


def test_gives_up_after_max_tries(server: SseServer, make_source: SourceFactory) -> None:
    server.fail_next(502, 5)
    with pytest.raises(SourceUnavailable):
        collect(make_source(retry=RetrySettings(initial_delay=0.01, max_delay=0.01, max_tries=2)), 1)
    assert len(server.connections) == 2


@pytest.mark.parametrize(
    "status, content_type, error",
    [
        (401, "application/json", AuthError),
        (403, "application/json", AuthError),
        (404, "application/json", NotFoundError),
        (400, "application/json", ProtocolError),
        (204, "text/event-stream", ProtocolError),
        (200, "text/html", ProtocolError),
    ],
)
def test_fatal_answers_are_not_retried(
    server: SseServer, make_source: SourceFactory, status: int, content_type: str, error: type[BridgeError]
) -> None:
    server.append(Entry(id="1", data="a"))
    server.fail_next(status, content_type=content_type)
    with pytest.raises(error):
        collect(make_source(), 1)
    assert len(server.connections) == 1


def test_stop_ends_a_blocked_read_promptly(server: SseServer, stop: threading.Event) -> None:
    source = SseSource(server.url, read_timeout=30.0, retry=FAST, stop=stop)
    events: list[SseEvent] = []
    reader = threading.Thread(target=lambda: events.extend(source.events(None)))
    reader.start()
    assert server.wait_for_connections(1)
    time.sleep(0.2)  # let the reader block on the quiet stream
    started = time.monotonic()
    stop.set()
    reader.join(5)
    assert not reader.is_alive() and time.monotonic() - started < 2
    assert events == []


def test_stop_ends_a_reconnect_wait_promptly(server: SseServer, stop: threading.Event) -> None:
    server.fail_next(503, 10)
    source = SseSource(
        server.url, retry=RetrySettings(initial_delay=20, max_delay=20), stop=stop, min_reconnect=20
    )
    reader = threading.Thread(target=lambda: list(source.events(None)))
    reader.start()
    assert server.wait_for_connections(1)
    started = time.monotonic()
    stop.set()
    reader.join(5)
    assert not reader.is_alive() and time.monotonic() - started < 2
    assert len(server.connections) == 1
