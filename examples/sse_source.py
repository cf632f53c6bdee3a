"""Mirror a Server-Sent Events stream into PANDA: a local SSE server and the PANDA emulator on loopback.

Run it with `.venv/bin/python examples/sse_source.py` after `./dev test` (or `./dev demo`) installed things.
The stream drops its connection mid-event once; the bridge reconnects with Last-Event-ID and loses nothing.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _local import rows, show, start_bridge, stop_bridge, wait_for

from bridge.emulator import PandaEmulator
from tests.support.sse_server import Entry, Plan, SseServer

COLUMNS = ["first_name", "last_name", "employer"]


def event(n: int, key: str, first: str, last: str, employer: str) -> Entry:
    body = {"first_name": first, "last_name": last, "job": {"employer": employer}}
    return Entry(id=str(n), event="message", data=json.dumps({"key": key, "body": body}))


def main() -> int:
    events = [
        event(1, "user:1", "Ada", "Lovelace", "Analytical Engines"),
        event(2, "user:2", "Grace", "Hopper", "US Navy"),
        event(3, "user:3", "Alan", "Turing", "NPL"),
        event(4, "user:2", "Grace", "Hopper", "Yale"),  # an update of user:2
        Entry(id="5", event="removed", data=json.dumps({"key": "user:3"})),  # a deletion
    ]
    with tempfile.TemporaryDirectory(prefix="bridge-sse-") as tmp, SseServer(events, heartbeat=1.0) as server, \
            PandaEmulator(port=0) as emulator:
        server.plan_next(Plan(drop_after_events=2))  # the first connection breaks in the middle of event 3
        config = Path(tmp) / "sse.toml"
        text = (Path(__file__).parent / "sse.toml").read_text()
        text = text.replace('url = "https://changes.example.org/events"', f'url = "{server.url}"')
        text = text.replace('url = "http://127.0.0.1:8000"', f'url = "{emulator.url}"')
        text = text.replace('headers = { Authorization = "Bearer <token>" }', "")
        text = text.replace('path = "state/events.checkpoint"', f'path = "{Path(tmp) / "events.checkpoint"}"')
        config.write_text(text)
        print(f"SSE stream: {server.url}\nPANDA emulator: {emulator.url}\n")
        bridge = start_bridge(config)
        try:
            wait_for("the events were mirrored", lambda: set(rows(emulator, "events")) == {"_user_3a_1", "_user_3a_2"}
                     and rows(emulator, "events")["_user_3a_2"][2] == "Yale")
            show(emulator, "events", "after five events and one dropped connection", COLUMNS)
            print("\nLast-Event-ID sent on each connection:", [c.last_event_id for c in server.connections])
        finally:
            code = stop_bridge(bridge)
        print(f"bridge stopped with exit code {code}")
        return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
