"""Issue 5, end to end: a spec-faithful SSE server -> `bridge run` (kind = "sse") -> the PANDA emulator.

The stream drops connections mid-event, splits events at odd byte boundaries and mixes CRLF line ends;
the bridge must resume with Last-Event-ID each time and leave PANDA holding exactly the documents the
events describe, and `--since last` after a restart must resume at the saved event id.
"""

from __future__ import annotations

import json
import signal

import pytest

from tests.support.oracle import expected_id
from tests.support.pipeline import Pipeline, stop, wait_until, written_ids
from tests.support.sse_server import Entry, Plan, SseServer

EVENTS = {"id_path": "key", "doc_path": "body", "delete_events": ["removed"], "ignore_events": ["ping"]}


def upsert(n: int, key: str, name: str, employer: str = "Acme") -> Entry:
    payload = {"key": key, "body": {"first_name": name, "last_name": f"L{n}", "job": {"employer": employer}}}
    return Entry(id=str(n), event="message", data=json.dumps(payload))


def removal(n: int, key: str) -> Entry:
    return Entry(id=str(n), event="removed", data=json.dumps({"key": key}))


def expected(entries: list[Entry]) -> dict[str, list]:
    rows: dict[str, list] = {}
    for entry in entries:
        payload = json.loads(entry.data or "{}")
        if entry.event == "removed":
            rows.pop(expected_id(payload["key"]), None)
        elif entry.event == "message":
            body = payload["body"]
            rows[expected_id(payload["key"])] = [body["first_name"], body["last_name"], body["job"]["employer"]]
    return rows


@pytest.fixture
def script() -> list[Entry]:
    entries = [upsert(n, f"user:{n % 25}", f"Name{n}") for n in range(1, 61)]
    entries.insert(10, Entry(event="ping", data="{}", comment="keep-alive"))
    entries += [removal(61, "user:3"), removal(62, "user:4"), upsert(63, "Zürich 1", "Z")]
    return entries


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_events_mirrored_exactly_across_drops_and_restart(tmp_path, panda, script, newline):
    with SseServer(script, newline=newline, chunking=[1, 7, 3, 64], heartbeat=0.2) as server:
        for after in (5, 17, 30):  # three connections cut mid-event
            server.plan_next(Plan(drop_after_events=after))
        pipeline = Pipeline(source_url=server.url, database="", panda=panda, dir=tmp_path / "bridge",
                            extra={"source": {"kind": "sse", "events": EVENTS, "heartbeat": 0.5,
                                              "min_reconnect": 0.05, "max_reconnect": 0.2}})
        process = pipeline.start()
        wait_until(lambda: pipeline.rows() == expected(script), "every event was mirrored", process=process)
        resumed = [c.last_event_id for c in server.connections]
        assert resumed[0] is None and len(resumed) >= 4
        assert all(r is not None for r in resumed[1:])  # every reconnect resumed from an event id

        code, err = stop(process, signal.SIGTERM)
        assert code == 0, err
        assert "reconnecting" in err.lower() or "retrying" in err.lower(), err

        later = [upsert(64, "user:7", "Changed", "Elsewhere"), removal(65, "user:8")]
        server.append(*later)
        panda.clear_requests()
        connections = len(server.connections)
        process = pipeline.start()  # --since last is the default
        wait_until(lambda: pipeline.rows() == expected(script + later), "the later events were mirrored",
                   process=process)
        assert server.connections[connections].last_event_id == "63"  # the saved event id, sent back
        code, err = stop(process, signal.SIGTERM)
        assert code == 0, err
        assert written_ids(panda, pipeline.dataset) == [expected_id("user:7")]  # nothing old was re-sent


def test_once_is_refused_for_an_event_stream(tmp_path, panda):
    with SseServer([]) as server:
        pipeline = Pipeline(source_url=server.url, database="", panda=panda, dir=tmp_path / "bridge",
                            extra={"source": {"kind": "sse", "events": EVENTS}})
        result = pipeline.once()
        assert result.returncode == 2
        assert "use `bridge run`" in result.stderr
