"""A threaded HTTP proxy on 127.0.0.1 in front of one upstream server, with switches that inject faults.

Requests are forwarded as they came (one per connection); answers are streamed back as they arrive,
re-framed as chunked so a fault can end a body without its terminator, as CouchDB's aborts do. Switches
act on the next `count` requests whose path contains `path` (any path when None) and whose query holds
`query`, in the order armed: answer a status, stall (headers, some bytes, then silence), cut a body after
N bytes, inject bytes into a `_changes` body, refuse (reset at once). Every request is recorded on arrival.
stop() ends everything, stalled answers included. With `credentials`, it plays a CouchDB that requires them:
a request without that Basic authorization is answered 401, and the header is replaced before forwarding by
the login in `upstream`'s URL, or removed (so a test can give the bridge a password of its own while the
upstream runs without users, or with an admin). Without `credentials` the client's authorization goes through.
"""

from __future__ import annotations

import base64
import http.client
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from bridge.emulator.transport import TrackedHandler, TrackingHTTPServer

__all__ = ["FaultProxy", "Seen"]

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer",
                         "upgrade", "proxy-connection"})
_UPSTREAM_TIMEOUT = 120.0  # a longpoll upstream is idle between heartbeats only
_STALL_MAX = 120.0  # a stalled answer is held at most this long (or until stop)
_REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
            412: "nodedown", 429: "too_many_requests", 500: "internal_server_error", 502: "bad_gateway",
            503: "service_unavailable", 504: "gateway_timeout"}


@dataclass
class Seen:
    """One request the proxy received (recorded on arrival; `status` is filled in once sent)."""

    method: str
    path: str
    """The path without the query string."""
    query: dict[str, str]
    fault: str | None
    """The switch that acted on it (respond, stall, cut, inject, refuse), or None when forwarded as is."""
    status: int | None
    """The status sent to the client; None when none was (refused, stalled before headers, upstream down)."""
    at: float
    """time.monotonic() on arrival."""


@dataclass
class _Switch:
    kind: str
    count: int | None
    path: str | None
    query: dict[str, str] | None = None
    status: int = 0
    body: bytes = b""
    after_bytes: int | None = None
    data: bytes = b""
    clean_end: bool = False
    skip: int = 0
    """Matching requests to let through untouched first."""
    method: str | None = None

    def matches(self, method: str, path: str, query: dict[str, str]) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.path is not None and self.path not in path:
            return False
        return self.query is None or all(query.get(k) == v for k, v in self.query.items())


class FaultProxy:
    """Forwards http://127.0.0.1:<port>/... to `upstream` (a base URL such as http://127.0.0.1:5984/)."""

    def __init__(self, upstream: str, credentials: tuple[str, str] | None = None) -> None:
        parts = urlsplit(upstream)
        self.authorization = ("Basic " + base64.b64encode(":".join(credentials).encode()).decode()
                              if credentials else None)
        # Credentials in `upstream` are what the proxy itself sends on (real CouchDB needs a login).
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        self.upstream_authorization = ("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                                       if parts.username else None)
        if parts.hostname is None or parts.port is None:
            raise ValueError("upstream must be http://host:port/, got %r" % upstream)
        self.upstream = (parts.hostname, parts.port)
        self._switches: list[_Switch] = []
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end stalled answers and close every open connection (both sides)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_all()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The proxy's base URL with a trailing slash."""
        assert self._server is not None, "proxy not started"
        return "http://127.0.0.1:%d/" % self._server.server_address[1]

    # -- switches ----------------------------------------------------------------------------------------

    def respond(self, status: int, *, count: int | None = 1, path: str | None = None,
                query: dict[str, str] | None = None, body: Any = None, method: str | None = None) -> None:
        """Answer `status` with a CouchDB-shaped error body (or `body`, JSON-encoded unless bytes), to
        requests of `method` only when given (a read-only gateway answers 403 to every PUT)."""
        if body is None:
            body = {"error": _REASONS.get(status, "error"), "reason": "injected by the fault proxy"}
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        self._arm(_Switch("respond", count, path, query, status=status, body=raw, method=method))

    def stall(self, *, count: int | None = 1, path: str | None = None, query: dict[str, str] | None = None,
              after_bytes: int | None = 0) -> None:
        """Forward, then go silent: before the headers (after_bytes None), or after headers and N body bytes."""
        self._arm(_Switch("stall", count, path, query, after_bytes=after_bytes))

    def cut(self, after_bytes: int, *, count: int | None = 1, path: str | None = "/_changes",
            query: dict[str, str] | None = None, clean_end: bool = False, skip: int = 0) -> None:
        """Forward the first `after_bytes` body bytes, then reset the connection (no chunked terminator);
        with `clean_end`, end the response properly instead: a body that simply lacks its closing part.
        `skip` lets that many matching requests through first (to reach a page whose seq is opaque)."""
        self._arm(_Switch("cut", count, path, query, after_bytes=after_bytes, clean_end=clean_end, skip=skip))

    def inject(self, data: bytes, *, count: int | None = 1, path: str | None = "/_changes",
               query: dict[str, str] | None = None) -> None:
        """Insert `data` into the body right after `"results":[` (at the start when that is absent)."""
        self._arm(_Switch("inject", count, path, query, data=data))

    def refuse(self, *, count: int | None = 1, path: str | None = None,
               query: dict[str, str] | None = None) -> None:
        """Accept, read the request, then reset the connection without answering."""
        self._arm(_Switch("refuse", count, path, query))

    def clear(self) -> None:
        """Disarm every switch (requests in progress keep the fault they got)."""
        with self._lock:
            self._switches.clear()

    def _arm(self, switch: _Switch) -> None:
        if switch.count is not None and switch.count < 1:
            raise ValueError("count must be at least 1 (or None for every matching request)")
        with self._lock:
            self._switches.append(switch)

    def _take(self, method: str, path: str, query: dict[str, str]) -> _Switch | None:
        """The first armed switch matching this request; every matching switch still skipping counts it."""
        taken = None
        with self._lock:
            for switch in list(self._switches):
                if not switch.matches(method, path, query):
                    continue
                if switch.skip > 0:
                    switch.skip -= 1
                    continue
                if taken is None:
                    taken = switch
                    if switch.count is not None:
                        switch.count -= 1
                        if switch.count == 0:
                            self._switches.remove(switch)
        return taken

    @property
    def armed(self) -> int:
        """Switches still waiting for a request."""
        with self._lock:
            return len(self._switches)

    # -- records -----------------------------------------------------------------------------------------

    @property
    def seen(self) -> list[Seen]:
        """Every request received, oldest first."""
        with self._lock:
            return list(self._seen)

    def seen_paths(self, contains: str) -> list[Seen]:
        return [s for s in self.seen if contains in s.path]

    def clear_seen(self) -> None:
        with self._lock:
            self._seen.clear()

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)


class _Server(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        super().__init__(address, _Handler)
        self.proxy = proxy


class _Handler(TrackedHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault-proxy"
    sys_version = ""

    @property
    def _proxy(self) -> FaultProxy:
        assert isinstance(self.server, _Server)
        return self.server.proxy

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def _handle(self) -> None:
        self.close_connection = True  # one request per connection keeps the switches simple
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        query = dict(parse_qsl(split.query))
        switch = self._proxy._take(self.command, split.path, query)
        seen = Seen(self.command, split.path, query, switch.kind if switch is not None else None, None,
                    time.monotonic())
        self._proxy._record(seen)
        self._seen = seen
        try:
            wanted = self._proxy.authorization
            if wanted is not None and self.headers.get("Authorization") != wanted:
                self._send_head(401, [("Content-Type", "application/json")])
                self._send_chunk(b'{"error":"unauthorized","reason":"Name or password is incorrect."}')
                self._end()
            elif switch is not None and switch.kind == "refuse":
                self._reset()
            elif switch is not None and switch.kind == "respond":
                self._send_head(switch.status, [("Content-Type", "application/json")])
                self._send_chunk(switch.body)
                self._end()
            elif switch is not None and switch.kind == "stall" and switch.after_bytes is None:
                self._proxy._stopping.wait(_STALL_MAX)
            else:
                self._forward(body, switch)
        except OSError:
            pass  # the client went away

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    # -- forwarding --------------------------------------------------------------------------------------

    def _forward(self, body: bytes, switch: _Switch | None) -> None:
        host, port = self._proxy.upstream
        upstream = http.client.HTTPConnection(host, port, timeout=_UPSTREAM_TIMEOUT)
        try:
            # Playing a CouchDB with its own users, the proxy sends its upstream login instead of the client's;
            # otherwise the client's own authorization goes through (a wrong password reaches the server).
            dropped = _HOP_BY_HOP | ({"authorization"} if self._proxy.authorization is not None else set())
            headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
            if self._proxy.authorization is not None and self._proxy.upstream_authorization is not None:
                headers["Authorization"] = self._proxy.upstream_authorization
            headers["Host"] = "%s:%d" % (host, port)
            try:
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
            except (OSError, http.client.HTTPException):
                self._reset()  # the upstream is down: the client sees what a dead server gives
                return
            head = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            self._send_head(response.status, head)
            if self.command != "HEAD":
                self._stream(_read_all(response), switch)
        except (OSError, http.client.HTTPException):
            pass  # either side went away (a timeout, a stop, a dead server): drop both
        finally:
            upstream.close()

    def _stream(self, chunks: Iterator[bytes], switch: _Switch | None) -> None:
        sent = 0
        injected = False
        pending = b""
        for chunk in chunks:
            if switch is not None and switch.kind == "inject" and not injected:
                pending += chunk
                at = pending.find(b'"results":[')
                if at < 0 and len(pending) < 64:
                    continue  # the anchor may straddle chunks
                cut = at + len(b'"results":[') if at >= 0 else 0
                chunk = pending[:cut] + switch.data + pending[cut:]
                injected = True
            if switch is not None and switch.kind in ("cut", "stall") and switch.after_bytes is not None:
                room = switch.after_bytes - sent
                if len(chunk) >= room:
                    self._send_chunk(chunk[:room])
                    if switch.kind == "cut" and switch.clean_end:
                        self._end()
                    elif switch.kind == "cut":
                        self._reset()
                    else:
                        self._proxy._stopping.wait(_STALL_MAX)
                    return
            self._send_chunk(chunk)
            sent += len(chunk)
        if switch is not None and switch.kind == "inject" and not injected:
            self._send_chunk(pending[:0] + switch.data + pending)
        if switch is not None and switch.kind == "stall":
            self._proxy._stopping.wait(_STALL_MAX)  # the body was shorter than after_bytes: hold the end back
            return
        self._end()

    # -- writing -----------------------------------------------------------------------------------------

    def _send_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._seen.status = status
        lines = ["HTTP/1.1 %d %s" % (status, self.responses.get(status, ("Unknown",))[0])]
        lines += ["%s: %s" % (k, v) for k, v in headers]
        lines += ["Transfer-Encoding: chunked", "Connection: close"]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.wfile.flush()

    def _send_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0, no FIN first): the client sees a reset, not a clean end."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # the descriptor closes once finish() drops rfile and wfile
        except OSError:
            pass


def _read_all(response: http.client.HTTPResponse) -> Iterator[bytes]:
    """The body as it arrives (read1 returns what is there, so heartbeats pass at once)."""
    while True:
        chunk = response.read1(65536)
        if not chunk:
            return
        yield chunk
