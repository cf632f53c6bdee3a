"""A scripted server-sent events server for tests: an in-memory event log served over HTTP on 127.0.0.1.

Each connection serves the log after the entry its Last-Event-ID names (all of it for an unknown id), then
waits for appended entries. Faults are switched per connection (a status answer, a cut mid-event, a stall,
a clean end); everything ends on stop().
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = ["Entry", "Plan", "ConnectionRecord", "SseServer"]


@dataclass(frozen=True)
class Entry:
    """One block of the stream: fields written in the order comment, retry, event, id, data."""

    id: str | None = None
    """Written as an `id:` line ("" writes a bare `id`: a reset); also the key Last-Event-ID resumes at."""
    data: str | None = None
    """Written as one `data:` line per "\\n"-separated line; None writes no data line."""
    event: str | None = None
    """Written as an `event:` line."""
    retry: int | None = None
    """Written as a `retry:` line (milliseconds)."""
    comment: str | None = None
    """Written as a `:comment` line."""
    raw: bytes | None = None
    """Bytes written verbatim instead of the fields above (`id` still names the resume point)."""

    def encode(self, newline: bytes) -> bytes:
        if self.raw is not None:
            return self.raw
        lines: list[str] = []
        if self.comment is not None:
            lines.append(f":{self.comment}")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.id is not None:
            lines.append(f"id: {self.id}" if self.id else "id")
        if self.data is not None:
            lines.extend(f"data: {line}" for line in self.data.split("\n"))
        return b"".join(line.encode("utf-8") + newline for line in lines) + newline


@dataclass(frozen=True)
class Plan:
    """What one connection does; connections without a plan serve the log normally."""

    status: int = 200
    content_type: str = "text/event-stream"
    body: bytes = b""
    """The body of a non-200 answer."""
    headers: tuple[tuple[str, str], ...] = ()
    drop_after_events: int | None = None
    """Send this many entries, then half of the next one, then cut the connection."""
    drop_after_bytes: int | None = None
    """Cut the connection once this many bytes of entries were sent (heartbeats not counted)."""
    stall_after_events: int | None = None
    """Send this many entries, then nothing at all (no heartbeats) until the server stops."""
    end_after_events: int | None = None
    """Send this many entries, then end the response cleanly."""


@dataclass(frozen=True)
class ConnectionRecord:
    """One request the server received."""

    last_event_id: str | None
    path: str
    headers: dict[str, str] = field(default_factory=dict)


class _Stopped(Exception):
    pass


class SseServer:
    """The server; use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        entries: Sequence[Entry] = (),
        *,
        newline: str = "\n",
        chunking: int | Sequence[int] | None = None,
        heartbeat: float | None = None,
        chunked: bool = True,
    ) -> None:
        self.newline = newline.encode("ascii")
        """Line end of encoded entries: "\\n", "\\r\\n" or "\\r"."""
        self.chunking = chunking
        """Bytes per write (a sequence cycles over the whole stream); None writes each entry at once."""
        self.heartbeat = heartbeat
        """Seconds of idleness after which a `:heartbeat` comment line is sent; None sends none."""
        self.chunked = chunked
        """Chunked transfer encoding; False sends an HTTP/1.0-style body that ends when the socket closes."""
        self._log: list[Entry] = list(entries)
        self._plans: deque[Plan] = deque()
        self._records: list[ConnectionRecord] = []
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="sse-test-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/events"

    def start(self) -> SseServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end every connection, including stalled ones, and join the handler threads."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SseServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def append(self, *entries: Entry) -> None:
        """Add entries to the log; open connections send them."""
        with self._cond:
            self._log.extend(entries)
            self._cond.notify_all()

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        body: bytes = b'{"error":"unavailable","reason":"scripted"}',
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answer the next `times` connections with `status` (a 200 streams with `content_type`)."""
        with self._cond:
            plan = Plan(status=status, content_type=content_type, body=body, headers=headers)
            self._plans.extend([plan] * times)

    def plan_next(self, plan: Plan) -> None:
        """Apply `plan` to the next connection that has no earlier plan waiting."""
        with self._cond:
            self._plans.append(plan)

    @property
    def connections(self) -> list[ConnectionRecord]:
        with self._cond:
            return list(self._records)

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._records) >= count, timeout)

    # called from handler threads

    def _begin(self, record: ConnectionRecord, sock: socket.socket) -> tuple[Plan, int]:
        with self._cond:
            self._records.append(record)
            self._sockets.add(sock)
            self._cond.notify_all()
            plan = self._plans.popleft() if self._plans else Plan()
            start = 0
            if record.last_event_id is not None:
                for index in range(len(self._log) - 1, -1, -1):
                    if self._log[index].id == record.last_event_id:
                        start = index + 1
                        break
            return plan, start

    def _end(self, sock: socket.socket) -> None:
        with self._cond:
            self._sockets.discard(sock)

    def _entry(self, index: int) -> Entry | None:
        """The entry at `index` once there is one; None when a heartbeat is due. Raises _Stopped."""
        with self._cond:
            while index >= len(self._log):
                if self._stopping.is_set():
                    raise _Stopped
                if not self._cond.wait(self.heartbeat or 0.5) and self.heartbeat:
                    return None
            if self._stopping.is_set():
                raise _Stopped
            return self._log[index]

    def _pieces(self, data: bytes, sizes: Iterator[int] | None) -> Iterator[bytes]:
        if not data:
            return  # an empty HTTP chunk would end a chunked body
        if sizes is None:
            yield data
            return
        while data:
            size = max(1, next(sizes))
            yield data[:size]
            data = data[size:]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    owner: SseServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        header = self.headers.get("Last-Event-ID")
        last_id = header.encode("latin-1").decode("utf-8", "replace") if header is not None else None
        record = ConnectionRecord(last_id, self.path, {k: v for k, v in self.headers.items()})
        plan, index = owner._begin(record, self.connection)
        self.close_connection = True
        try:
            if plan.status != 200:
                self._answer(plan)
            else:
                self._stream(owner, plan, index)
        except (OSError, _Stopped):
            pass
        finally:
            owner._end(self.connection)

    def _answer(self, plan: Plan) -> None:
        self.send_response(plan.status)
        for name, value in plan.headers:
            self.send_header(name, value)
        if plan.status not in (204, 304):
            self.send_header("Content-Type", plan.content_type)
            self.send_header("Content-Length", str(len(plan.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if plan.status not in (204, 304):
            self.wfile.write(plan.body)

    def _stream(self, owner: SseServer, plan: Plan, index: int) -> None:
        chunked = owner.chunked
        chunking = owner.chunking
        sizes = (
            None
            if chunking is None
            else itertools.cycle([chunking] if isinstance(chunking, int) else chunking)
        )
        self.send_response(200)
        self.send_header("Content-Type", plan.content_type)
        self.send_header("Cache-Control", "no-cache")
        for name, value in plan.headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding" if chunked else "Connection", "chunked" if chunked else "close")
        self.end_headers()

        def write(data: bytes) -> None:
            for piece in owner._pieces(data, sizes):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)

        sent_events = sent_bytes = 0
        while True:
            if plan.stall_after_events is not None and sent_events >= plan.stall_after_events:
                owner._stopping.wait()
                return
            if plan.end_after_events is not None and sent_events >= plan.end_after_events:
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
                return
            entry = owner._entry(index)
            if entry is None:
                write(b":heartbeat" + owner.newline)
                continue
            payload = entry.encode(owner.newline)
            if plan.drop_after_events is not None and sent_events >= plan.drop_after_events:
                write(payload[: max(1, len(payload) // 2)])
                return self._cut()
            if plan.drop_after_bytes is not None and sent_bytes + len(payload) > plan.drop_after_bytes:
                write(payload[: plan.drop_after_bytes - sent_bytes])
                return self._cut()
            write(payload)
            index += 1
            sent_events += 1
            sent_bytes += len(payload)

    def _cut(self) -> None:
        """End the connection abruptly: a chunked body loses its terminator, a plain one just stops."""
        self.connection.shutdown(socket.SHUT_RDWR)
