"""PandaEmulator: a strict PANDA API (contracts 1-14) on an HTTP/1.1 keep-alive server in a thread.

Writes are handled one at a time, like PANDA's single uWSGI worker; reads may run beside them. Test switches
(contract 18) are methods here and HTTP endpoints under /_emulator/ (control.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from .app import HTML_TYPE, PandaApp, Request, Response
from .control import dispatch
from .faults import Faults, fault_body
from .routes import match_route
from .rules import plain_columns
from .state import Store
from .transport import EmulatorHTTPServer

__all__ = ["PandaEmulator", "RecordedRequest", "DEFAULT_EMAIL", "DEFAULT_API_KEY"]

logger = logging.getLogger(__name__)

DEFAULT_EMAIL = "panda@pandaproject.net"
DEFAULT_API_KEY = "panda-demo-key"
_WRITES = frozenset({"PUT", "POST", "DELETE"})
_SECRET_PARAMS = frozenset({"email", "api_key"})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One API request the emulator received (control requests are not recorded)."""

    method: str
    path: str
    """The raw path, without the query string."""
    query: dict[str, list[str]]
    """Query parameters without `email` and `api_key`."""
    body: Any
    """The parsed JSON body, or None when empty or not JSON."""
    status: int
    """The status the emulator answered with."""
    timestamp: float
    """time.time() on arrival."""
    query_credentials: bool = False
    """True when `email` or `api_key` came in the query string (they leak into logs, contract 3)."""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Request headers, minus the credential headers."""

    @property
    def destructive(self) -> bool:
        """True for the calls of contract 13 that delete datasets or POST to the dataset list."""
        route = match_route(self.path) or match_route(self.path + "/")
        if route is None:
            return False
        if route.kind == "dataset_list":
            return self.method in ("PUT", "DELETE", "POST")
        return route.kind == "dataset" and self.method == "DELETE"

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "body": self.body,
            "status": self.status,
            "timestamp": self.timestamp,
            "query_credentials": self.query_credentials,
            "content_type": self.content_type,
            "headers": self.headers,
            "destructive": self.destructive,
        }


class PandaEmulator:
    """An in-memory PANDA for tests and benchmarks; start() it, then point clients at `url`.

    The default user panda@pandaproject.net (key "panda-demo-key") exists from the start. Like PANDA,
    any non-empty key authenticates an existing user unless `strict_keys` (contract 3); `behind_nginx`
    drops headers whose names contain '_' as nginx does.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        strict_keys: bool = False,
        *,
        behind_nginx: bool = True,
        max_recorded: int | None = 10_000,
    ) -> None:
        self.host = host
        self.port = port
        self.store = Store()
        self.app = PandaApp(self.store, strict_keys=strict_keys, behind_nginx=behind_nginx)
        self.faults = Faults(latency)
        self._write_gate = threading.Lock()  # PANDA's single worker: one write at a time
        self._recorded: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._recorded_lock = threading.Lock()
        self._stopping = threading.Event()
        self._on_write: Callable[[str, str], None] | None = None
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self.peak_concurrent_requests = 0
        """The most API requests ever being answered at once (PANDA serves one at a time)."""
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_user(DEFAULT_EMAIL, DEFAULT_API_KEY)

    # lifecycle

    def start(self) -> PandaEmulator:
        """Bind and serve in a daemon thread; `port` 0 picks a free port."""
        self._stopping.clear()
        self._server = EmulatorHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="panda-emulator",
            daemon=True,
        )
        self._thread.start()
        logger.info("PANDA emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, end sleeping replies and close open connections."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_all()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> PandaEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8000 (valid once started)."""
        return "http://%s:%d" % (self.host, self.port)

    # test switches (contract 18)

    def add_user(self, email: str, api_key: str, active: bool = True) -> None:
        with self.store.mutex:
            self.store.add_user(email, api_key, active)

    def create_dataset(self, slug: str, columns: Sequence[str] | None, name: str | None = None) -> None:
        """Create a dataset directly, replacing one with that slug; None gives a dataset without columns."""
        with self.store.mutex:
            creator = self.store.users.get(DEFAULT_EMAIL) or next(iter(self.store.users.values()))
            if slug in self.store.datasets:
                self.store.delete_dataset(self.store.datasets[slug])
            ds = self.store.create_dataset(slug, name or slug, None, creator)
            ds.columns = None if columns is None else plain_columns(columns)

    def rows(self, slug: str) -> dict[str, list[Any]]:
        """external_id -> data of a dataset (a copy); KeyError for an unknown slug."""
        with self.store.mutex:
            return self.store.rows(slug)

    def dataset(self, slug: str) -> dict[str, Any]:
        """The dataset object as GET returns it; KeyError for an unknown slug."""
        with self.store.mutex:
            return self.store.dataset_json(self.store.datasets[slug])

    @property
    def requests(self) -> list[RecordedRequest]:
        """API requests received so far, oldest first."""
        with self._recorded_lock:
            return list(self._recorded)

    def clear_requests(self) -> None:
        with self._recorded_lock:
            self._recorded.clear()

    def lock(self, slug: str, seconds: float | None = None) -> None:
        """Hold the dataset's lock for `seconds`, or until unlock() when None (contract 10)."""
        with self.store.mutex:
            self.store.lock(self.store.datasets[slug], seconds)

    def unlock(self, slug: str) -> None:
        with self.store.mutex:
            self.store.unlock(self.store.datasets[slug])

    def fail_writes(self, status: int, count: int = 1, after_write: bool = False) -> None:
        """Answer the next `count` writes with `status`, before the write or after it completed."""
        self.faults.fail_writes(status, count, after_write)

    def fail_ratio(self, status: int, ratio: float, seed: int = 0, after_write: bool = False) -> None:
        """Answer a share of writes with `status`, chosen by a RNG seeded with `seed`."""
        self.faults.fail_ratio(status, ratio, seed, after_write)

    def set_latency(self, seconds: float) -> None:
        """Seconds each write takes, holding the single-worker lock."""
        self.faults.set_latency(seconds)

    def slow_replies(self, seconds: float, count: int | None = None) -> None:
        """Wait `seconds` before sending each of the next `count` answers (all when None)."""
        self.faults.slow_replies(seconds, count)

    def reject_rows(self, pattern: str | None, problem: str = "external_id") -> None:
        """Bulk rows whose external_id matches `pattern` fail PANDA's validation (see Faults.reject_rows)."""
        self.faults.reject_rows(pattern, problem)

    def watch_writes(self, callback: Callable[[str, str], None] | None) -> None:
        """Call `callback(method, path)` in the serving thread as each write arrives, before any fault,
        latency or slow reply applies (None stops). Lets a test act at a known point of a client's write,
        e.g. kill it while the write is held by `set_latency`."""
        self._on_write = callback

    def reset(self) -> None:
        """Drop datasets, rows, recorded requests and every switch; users stay."""
        with self.store.mutex:
            self.store.clear_data()
        self.faults.reset()
        self.clear_requests()
        self._on_write = None

    # serving

    def control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """Answer a request under /_emulator/ (see control.py)."""
        return dispatch(self, method, path, body)

    def serve(self, req: Request) -> Response:
        """Answer one API request with faults, latency and slow replies applied, and record it."""
        with self._in_flight_lock:
            self._in_flight += 1
            self.peak_concurrent_requests = max(self.peak_concurrent_requests, self._in_flight)
        try:
            return self._serve(req)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _serve(self, req: Request) -> Response:
        arrived = time.time()
        is_write = req.method in _WRITES
        on_write = self._on_write
        if is_write and on_write is not None:
            on_write(req.method, req.path)
        fault = self.faults.next_write_fault() if is_write else None
        if fault is not None and not fault.after_write:
            response = _fault_response(fault.status)
        else:
            if is_write:
                handled = req
                if req.method == "PUT" and req.json_ok and req.path.endswith("/data/"):
                    handled = replace(req, json=self.faults.rewrite_bulk(req.json))
                with self._write_gate:
                    latency = self.faults.latency
                    if latency > 0:
                        self._stopping.wait(latency)
                    response = self.app.handle(handled)
            else:
                response = self.app.handle(req)
            if fault is not None:
                response = _fault_response(fault.status)
        self._record(req, response.status, arrived)
        delay = self.faults.next_delay()
        if delay > 0:
            self._stopping.wait(delay)
        return response

    def _record(self, req: Request, status: int, arrived: float) -> None:
        query = parse_qs(req.raw_query, keep_blank_values=True)
        secret = _SECRET_PARAMS.intersection(query)
        for name in secret:
            del query[name]
        headers = {
            k: v
            for k, v in req.headers
            if k.lower().replace("_", "-") not in ("panda-email", "panda-api-key")
        }
        recorded = RecordedRequest(
            req.method,
            req.path,
            query,
            req.json if req.json_ok else None,
            status,
            arrived,
            bool(secret),
            req.content_type,
            headers,
        )
        with self._recorded_lock:
            self._recorded.append(recorded)


def _fault_response(status: int) -> Response:
    body, content_type = fault_body(status)
    return Response(status, body, content_type or HTML_TYPE)
