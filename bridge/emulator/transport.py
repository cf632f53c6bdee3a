"""The HTTP/1.1 side of the emulator: a threading keep-alive server that sends each answer in one write.

nginx's limits come first, as in front of PANDA (contract 14): request line over 8 KB -> 414, one header
over 8 KB -> 400, chunked request bodies -> 411. Strictly: a line counts with its CRLF, since it must fit in
one of nginx's 8192-byte large header buffers, so a client that aims at the limit finds it exactly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

from . import codec
from .app import Request, Response
from .faults import fault_body
from .rules import CANNED_ERROR

__all__ = ["EmulatorHTTPServer", "Serving", "TrackingHTTPServer", "TrackedHandler"]

logger = logging.getLogger(__name__)

_NGINX_LINE_LIMIT = 8192
"""Bytes a request line or a header line may take, CRLF included (large_client_header_buffers 4 8k)."""
_CRLF = 2
_HEADER_SAFE = "/:?&=%#,;@+!$'()*[]~-_."


class Serving(Protocol):
    """What the server needs from the emulator."""

    def serve(self, req: Request) -> Response: ...

    def control(self, method: str, path: str, body: bytes) -> tuple[int, Any]: ...


class TrackingHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its open connections, so close_all() can end idle keep-alive ones.

    Its handlers derive from TrackedHandler (the test suite's fault proxy uses both as well).
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[TrackedHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, sock: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def close_all(self) -> None:
        """Close the listening socket and shut every open connection down."""
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TrackedHandler(BaseHTTPRequestHandler):
    """Registers its connection with its TrackingHTTPServer for as long as it is open."""

    def setup(self) -> None:
        super().setup()
        assert isinstance(self.server, TrackingHTTPServer)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            assert isinstance(self.server, TrackingHTTPServer)
            self.server.track(self.connection, False)


class EmulatorHTTPServer(TrackingHTTPServer):
    """The emulator's server: a TrackingHTTPServer that hands each request to the emulator."""

    def __init__(self, address: tuple[str, int], emulator: Serving) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator


class _Handler(TrackedHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    disable_nagle_algorithm = True

    def _server(self) -> EmulatorHTTPServer:
        assert isinstance(self.server, EmulatorHTTPServer)
        return self.server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug(format, *args)

    def _handle(self) -> None:
        started = time.perf_counter()
        split = urlsplit(self.path)
        try:
            response = self._answer(split.path, split.query)
        except Exception:  # an emulator bug: answer like Django's handler would
            logger.exception("emulator failed on %s %s", self.command, split.path)
            response = Response(500, codec.dumps(CANNED_ERROR), "application/json; charset=utf-8")
            self.close_connection = True
        self._send(response)
        logger.info(
            "%s %s %d %d bytes %.1f ms",
            self.command,
            split.path,
            response.status,
            len(response.body),
            (time.perf_counter() - started) * 1000,
        )

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = do_PATCH = do_TRACE = _handle

    def _nginx(self, status: int) -> Response:
        self.close_connection = True
        body, content_type = fault_body(status)
        return Response(status, body, content_type)

    def _answer(self, path: str, raw_query: str) -> Response:
        if len(self.requestline) + _CRLF > _NGINX_LINE_LIMIT:
            return self._nginx(414)
        if any(len(k) + 2 + len(v) + _CRLF > _NGINX_LINE_LIMIT for k, v in self.headers.items()):
            return self._nginx(400)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._nginx(411)  # nginx 1.1 (contract 14)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._nginx(400)
        if length < 0:
            return self._nginx(400)
        body = self.rfile.read(length) if length else b""
        if path.startswith("/_emulator/"):
            status, payload = self._server().emulator.control(self.command, path, body)
            return Response(status, codec.dumps(payload), "application/json")
        try:
            parsed, ok = codec.loads(body), True
        except ValueError:
            parsed, ok = None, False
        address = self._server().server_address
        host = self.headers.get("Host") or "%s:%s" % (str(address[0]), str(address[1]))
        req = Request(
            method=self.command,
            path=path,
            raw_query=raw_query,
            query=dict(parse_qsl(raw_query, keep_blank_values=True)),
            headers=tuple(self.headers.items()),
            content_type=self.headers.get("Content-Type"),
            accept=self.headers.get("Accept"),
            json=parsed,
            json_ok=ok,
            host=host,
        )
        return self._server().emulator.serve(req)

    def _send(self, response: Response) -> None:
        status = response.status
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = ["HTTP/1.1 %d %s" % (status, phrase), "Server: nginx", "Date: " + self.date_time_string()]
        bodyless = status in (204, 304) or self.command == "HEAD"
        if status not in (204, 304):
            if response.content_type:
                lines.append("Content-Type: " + response.content_type)
            lines.append("Content-Length: %d" % len(response.body))
        for name, value in response.headers:
            if not value.isascii():
                value = quote(value, safe=_HEADER_SAFE)
            lines.append("%s: %s" % (name, value))
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head if bodyless else head + response.body)
        except OSError:  # the client gave up (a timeout) or the emulator is stopping
            self.close_connection = True
