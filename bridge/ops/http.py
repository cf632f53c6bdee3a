"""The HTTP endpoint: /metrics (Prometheus), /healthz (liveness), /readyz (readiness); 404 elsewhere.

Served from a daemon thread by the standard library's threading HTTP server, bound only to the address
given (`[http] listen` or `--http`). Nothing it serves comes from the configuration, so no secret can leak.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from bridge.errors import ConfigError
from bridge.ops.metrics import Metrics
from bridge.ops.tracker import Tracker

__all__ = ["OpsServer", "parse_listen"]

logger = logging.getLogger(__name__)


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9464`) as (host, port); raises ConfigError."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"[http] listen must be host:port (e.g. 127.0.0.1:9464), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], tracker: Tracker, metrics: Metrics) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.tracker = tracker
        self.metrics = metrics


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        path = self.path.split("?", 1)[0]
        tracker = self.server.tracker
        if path == "/metrics":
            self._send(200, self.server.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            healthy = tracker.healthy()
            body: dict[str, Any] = {"healthy": healthy}
            if tracker.error is not None:
                body["error"] = type(tracker.error).__name__  # the class only: a message could quote a URL
            self._json(200 if healthy else 503, body)
        elif path == "/readyz":
            readiness = tracker.readiness()
            self._json(200 if readiness.ready else 503, {
                "ready": readiness.ready, "reason": readiness.reason, "pending": tracker.pending(),
                "caught_up": tracker.caught_up,
            })
        else:
            self._json(404, {"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's name)
        logger.debug("http: " + format, *args)


class OpsServer:
    """The endpoint of one pipeline, serving from a daemon thread until closed."""

    def __init__(self, listen: str, tracker: Tracker, metrics: Metrics) -> None:
        address = parse_listen(listen)
        try:
            self._server = _Server(address, tracker, metrics)
        except OSError as exc:
            raise ConfigError(f"[http] cannot listen on {listen}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="bridge-http", daemon=True)

    @property
    def address(self) -> str:
        """host:port actually bound (the port is the kernel's choice for port 0)."""
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"

    def start(self) -> OpsServer:
        self._thread.start()
        logger.info("serving /metrics, /healthz and /readyz on http://%s", self.address)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
