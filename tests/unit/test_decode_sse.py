"""SSE framing (SseParser) and event decoding, fed the same bytes split at every boundary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import ConfigError, DecodeError, MappingError
from bridge.model import Change, Seq
from bridge.source.sse_parser import (
    SseEvent,
    SseEventSpec,
    SseParser,
    couchdb_eventsource_params,
    decode_couchdb_event,
    decode_sse_event,
)

SAMPLE = Path(__file__).resolve().parents[1] / "support" / "samples" / "couchdb3-eventsource.txt"


def parse(chunks: list[bytes], start_id: str = "") -> tuple[list[SseEvent], str, int | None, bool]:
    parser = SseParser(start_id)
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events, parser.last_event_id, parser.retry, parser.pending


def splits(data: bytes) -> list[list[bytes]]:
    """The bytes in one piece, in two pieces at every boundary, and one byte at a time."""
    return [[data[:i], data[i:]] for i in range(len(data) + 1)] + [
        [data[i : i + 1] for i in range(len(data))]
    ]


def E(data: str, id: str | None = None, event: str = "message", retry: int | None = None) -> SseEvent:
    return SseEvent(id=id, event=event, data=data, retry=retry)


# name, stream bytes, events, last event id, reconnection time (ms), event pending at the end
FRAMING = [
    ("LF", b"data: a\n\n", [E("a")], "", None, False),
    ("CRLF", b"data: a\r\n\r\n", [E("a")], "", None, False),
    ("CR", b"data: a\r\r", [E("a")], "", None, False),
    ("mixed line ends", b"data: a\n\r\ndata: b\r\rdata: c\r\n\n", [E("a"), E("b"), E("c")], "", None, False),
    ("multi-line data", b"data: a\ndata:\ndata: b\n\n", [E("a\n\nb")], "", None, False),
    ("one space stripped", b"data:a\n\ndata:  b\n\n", [E("a"), E(" b")], "", None, False),
    ("data without colon", b"data\n\n", [E("")], "", None, False),
    (
        "empty data line dispatches",
        b"event: heartbeat\ndata: \n\n",
        [E("", event="heartbeat")],
        "",
        None,
        False,
    ),
    ("no data: not dispatched", b"event: x\n\n", [], "", None, False),
    ("comments ignored", b": hello\n:\ndata: a\n: mid\n\n: hb\n\n", [E("a")], "", None, False),
    ("unknown field ignored", b"foo: bar\nDATA: x\ndata: a\n\n", [E("a")], "", None, False),
    ("empty event name", b"event:\ndata: a\n\n", [E("a")], "", None, False),
    ("event type", b"event: update\ndata: a\n\n", [E("a", event="update")], "", None, False),
    ("type resets", b"event: x\ndata: a\n\ndata: b\n\n", [E("a", event="x"), E("b")], "", None, False),
    ("id persists", b"id: 1\ndata: a\n\ndata: b\n\n", [E("a", "1"), E("b", "1")], "1", None, False),
    ("id resets", b"id: 1\ndata: a\n\nid\ndata: b\n\n", [E("a", "1"), E("b")], "", None, False),
    (
        "id with NUL ignored",
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
        [E("a", "1"), E("b", "1")],
        "1",
        None,
        False,
    ),
    ("id-only block", b"id: 7\n\n", [], "7", None, False),
    ("id spaces kept", b"id:  x y \ndata: a\n\n", [E("a", " x y ")], " x y ", None, False),
    ("retry-only block", b"retry: 2500\n\n", [], "", 2500, False),
    ("retry on the event", b"retry: 10\ndata: a\n\ndata: b\n\n", [E("a", retry=10), E("b")], "", 10, False),
    ("retry not digits", b"retry: 1.5\nretry: x\nretry: -1\nretry:\n\n", [], "", None, False),
    ("retry non-ASCII digits", "retry: \u0661\u0662\n\n".encode(), [], "", None, False),
    ("BOM dropped once", b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n", [E("a")], "", None, False),
    ("bad UTF-8 replaced", b"data: \xff\xc3\n\n", [E("\ufffd\ufffd")], "", None, False),
    ("UTF-8", "data: café ✓ 😀\n\n".encode(), [E("café ✓ 😀")], "", None, False),
    ("lone newline first", b"\ndata: a\n\n", [E("a")], "", None, False),
    ("partial event discarded", b"data: a\n\nid: 9\ndata: b\n", [E("a")], "", None, True),
    ("partial line discarded", b"id: 1\ndata: a\n\ndata: b", [E("a", "1")], "1", None, True),
    ("comment is not pending", b"data: a\n\n: keep-alive\n", [E("a")], "", None, False),
    ("split multibyte pending", b"data: a\n\n" + "é".encode()[:1], [E("a")], "", None, True),
]


@pytest.mark.parametrize(
    "stream, events, last_id, retry, pending",
    [case[1:] for case in FRAMING],
    ids=[case[0] for case in FRAMING],
)
def test_framing_at_every_split(
    stream: bytes, events: list[SseEvent], last_id: str, retry: int | None, pending: bool
) -> None:
    for chunks in splits(stream):
        assert parse(chunks) == (events, last_id, retry, pending), chunks


def test_last_event_id_carries_over_from_the_previous_connection() -> None:
    events, last_id, _, _ = parse([b"data: a\n\n\n"], start_id="41")
    assert events == [E("a", "41")]
    assert last_id == "41"


def test_last_event_id_advances_only_at_dispatch() -> None:
    parser = SseParser("1")
    assert parser.feed(b"id: 2\ndata: cut") == []
    assert parser.last_event_id == "1"  # what a reconnect after a cut here sends
    assert parser.feed(b"\n\n") == [E("cut", "2")]
    assert parser.last_event_id == "2"


# ---- the recorded CouchDB 3 eventsource stream ----

SAMPLE_BYTES = SAMPLE.read_bytes()


def sample_rows() -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in SAMPLE_BYTES.decode().splitlines() if line.startswith("data: {")]


def test_sample_parses_to_rows_and_heartbeats() -> None:
    events, last_id, _, pending = parse([SAMPLE_BYTES])
    assert [event.event for event in events] == ["message"] * 2 + ["heartbeat"] + ["message"] * 3 + [
        "heartbeat",
        "message",
        "heartbeat",
    ]
    assert [json.loads(event.data) for event in events if event.event == "message"] == sample_rows()
    assert last_id == json.dumps(sample_rows()[-1]["seq"])
    assert not pending


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_sample_at_every_split(newline: bytes) -> None:
    stream = SAMPLE_BYTES.replace(b"\n", newline)  # the rows hold no raw newline, only JSON escapes
    expected = parse([SAMPLE_BYTES])[0]
    for chunks in splits(stream):
        assert parse(chunks)[0] == expected


def test_sample_decodes_to_changes() -> None:
    changes = [decode_couchdb_event(event) for event in parse([SAMPLE_BYTES])[0]]
    rows = iter(sample_rows())
    for change in changes:
        if change is None:
            continue
        row = next(rows)
        assert change.seq == Seq(row["seq"])
        assert isinstance(change.seq.value, str) and not change.seq.value.startswith('"')
        assert (change.doc_id, change.deleted, change.doc) == (
            row["id"],
            row.get("deleted", False),
            row["doc"],
        )
        assert change.rev == row["changes"][0]["rev"]
    assert [change is None for change in changes].count(True) == 3  # the heartbeats
    by_id = [change.doc_id for change in changes if change is not None]
    assert by_id == [
        "invoice-1001",
        "invoice-1002",
        "_design/reports",
        "invoice-1001",
        "invoice-1002",
        "invoice-café-7",
    ]
    assert [change.deleted for change in changes if change is not None] == [False] * 4 + [True, False]


# ---- decode_couchdb_event ----

ROW = '{"seq":%s,"id":"a","changes":[{"rev":"1-x"}],"doc":{"_id":"a","_rev":"1-x","n":1}}'


def couch(data: str, id: str | None = None, event: str = "message") -> SseEvent:
    return SseEvent(id=id, event=event, data=data)


@pytest.mark.parametrize(
    "event, seq",
    [
        (couch(ROW % '"12-g1AA"', '"12-g1AA"'), Seq("12-g1AA")),
        (couch(ROW % "12", "12"), Seq(12)),  # CouchDB 1.x
        (couch(ROW % '"5::7"', '"5::7"'), Seq("5::7")),
        (couch(ROW % "null", "null"), None),  # seq_interval: no seq, never saved
        (couch(ROW % '"3-abc"'), Seq("3-abc")),  # no id line: the row's own seq
    ],
    ids=["3.x string", "1.x integer", "opaque", "null", "row seq"],
)
def test_couchdb_seq(event: SseEvent, seq: Seq | None) -> None:
    change = decode_couchdb_event(event)
    assert change == Change(
        seq=seq,
        doc_id="a",
        deleted=False,
        doc={"_id": "a", "_rev": "1-x", "n": 1},
        rev="1-x",
        size=len(event.data),
    )


def test_couchdb_deleted_row_without_doc() -> None:
    change = decode_couchdb_event(
        couch('{"seq":"9-x","id":"b","changes":[{"rev":"2-y"}],"deleted":true}', '"9-x"')
    )
    assert change is not None
    assert (change.deleted, change.doc, change.rev, change.seq) == (True, None, "2-y", Seq("9-x"))


@pytest.mark.parametrize(
    "event",
    [couch("", event="heartbeat"), couch("", None), couch(" "), couch(ROW % '"1-a"', '"1-a"', event="other")],
    ids=["heartbeat", "empty data", "blank data", "other type"],
)
def test_couchdb_ignored(event: SseEvent) -> None:
    assert decode_couchdb_event(event) is None


@pytest.mark.parametrize(
    "event",
    [
        couch('{"seq":"1-a","id":"a"', '"1-a"'),
        couch("[1, 2]", '"1-a"'),
        couch('{"seq":"1-a","changes":[]}', '"1-a"'),
        couch('{"seq":"1-a","id":""}', '"1-a"'),
        couch(ROW % '"1-a"', "1-a"),  # an id CouchDB would have JSON-encoded
        couch(ROW % "true", "true"),
        couch(ROW % '""', '""'),
        couch(ROW % "1.5", "1.5"),
    ],
    ids=[
        "torn JSON",
        "not an object",
        "no id",
        "empty id",
        "unquoted id",
        "boolean seq",
        "empty seq",
        "float seq",
    ],
)
def test_couchdb_corrupt(event: SseEvent) -> None:
    with pytest.raises(DecodeError):
        decode_couchdb_event(event)


def test_couchdb_params() -> None:
    assert couchdb_eventsource_params(None, 30000) == {
        "feed": "eventsource",
        "include_docs": "true",
        "heartbeat": "30000",
    }
    assert couchdb_eventsource_params(Seq("7-g1AA"), 5000)["since"] == "7-g1AA"
    assert couchdb_eventsource_params(Seq(7), 5000)["since"] == "7"
    with pytest.raises(ConfigError):
        couchdb_eventsource_params(None, 0)


# ---- decode_sse_event ----

DEFAULT = SseEventSpec()
FLAGGED = SseEventSpec(id_path="key", doc_path="", deleted_path="meta.gone", deleted_value="yes")
ONLY_UPDATES = SseEventSpec(event_types=("update",))


def sse(data: str, event: str = "message", id: str | None = "e1") -> SseEvent:
    return SseEvent(id=id, event=event, data=data)


DECODED = [
    ("default", sse('{"id":"a","doc":{"x":1}}'), DEFAULT, Change(Seq("e1"), "a", False, {"x": 1})),
    ("no event id", sse('{"id":"a","doc":{"x":1}}', id=None), DEFAULT, Change(None, "a", False, {"x": 1})),
    ("integer id", sse('{"id":42,"doc":{}}'), DEFAULT, Change(Seq("e1"), "42", False, {})),
    ("delete event", sse('{"id":"a"}', event="delete"), DEFAULT, Change(Seq("e1"), "a", True, None)),
    (
        "delete with doc",
        sse('{"id":"a","doc":{"x":1}}', "delete"),
        DEFAULT,
        Change(Seq("e1"), "a", True, {"x": 1}),
    ),
    (
        "delete null doc",
        sse('{"id":"a","doc":null}', event="delete"),
        DEFAULT,
        Change(Seq("e1"), "a", True, None),
    ),
    ("heartbeat", sse("", event="heartbeat"), DEFAULT, None),
    ("blank data", sse(" "), DEFAULT, None),
    ("whole payload", sse('{"key":"k","v":2}'), FLAGGED, Change(Seq("e1"), "k", False, {"key": "k", "v": 2})),
    (
        "flagged",
        sse('{"key":"k","meta":{"gone":"yes"}}'),
        FLAGGED,
        Change(Seq("e1"), "k", True, {"key": "k", "meta": {"gone": "yes"}}),
    ),
    (
        "nested id",
        sse('{"d":{"ids":["x","y"]},"doc":{}}'),
        SseEventSpec(id_path="d.ids.1"),
        Change(Seq("e1"), "y", False, {}),
    ),
    (
        "allowed type",
        sse('{"id":"a","doc":{}}', event="update"),
        ONLY_UPDATES,
        Change(Seq("e1"), "a", False, {}),
    ),
    ("other type", sse('{"id":"a","doc":{}}', event="create"), ONLY_UPDATES, None),
    (
        "delete always decoded",
        sse('{"id":"a"}', event="delete"),
        ONLY_UPDATES,
        Change(Seq("e1"), "a", True, None),
    ),
]


@pytest.mark.parametrize("event, spec, change", [c[1:] for c in DECODED], ids=[c[0] for c in DECODED])
def test_decode_sse_event(event: SseEvent, spec: SseEventSpec, change: Change | None) -> None:
    decoded = decode_sse_event(event, spec)
    if change is not None:
        change = Change(change.seq, change.doc_id, change.deleted, change.doc, size=len(event.data.encode()))
    assert decoded == change


def test_deleted_value_compares_as_json() -> None:
    spec = SseEventSpec(deleted_path="deleted")
    assert decode_sse_event(sse('{"id":"a","deleted":true}'), spec) == Change(
        Seq("e1"), "a", True, None, size=25
    )
    change = decode_sse_event(sse('{"id":"a","deleted":1,"doc":{}}'), spec)
    assert change is not None and not change.deleted


MALFORMED = [
    ("not JSON", sse('{"id":'), "not JSON"),
    ("no id", sse('{"doc":{}}'), "no document id"),
    ("empty id", sse('{"id":"","doc":{}}'), "no document id"),
    ("boolean id", sse('{"id":true,"doc":{}}'), "no document id"),
    ("payload not object", sse("[1]"), "no document id"),
    ("no doc", sse('{"id":"a"}'), "no document"),
    ("doc not object", sse('{"id":"a","doc":[1]}'), "not an object"),
]


@pytest.mark.parametrize("event, reason", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_payload_is_dead_lettered(event: SseEvent, reason: str) -> None:
    with pytest.raises(MappingError, match=reason) as caught:
        decode_sse_event(event, DEFAULT)
    assert caught.value.seq == Seq("e1")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id_path": ""},
        {"id_path": "a..b"},
        {"doc_path": "x."},
        {"deleted_path": ""},
        {"ignore_events": ("delete",)},
    ],
)
def test_spec_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SseEventSpec(**kwargs)
