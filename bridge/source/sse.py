"""Reads a server-sent event stream over HTTP, reconnecting with Last-Event-ID, and yields its events.

Parsing is SseParser's (sse_parser.py); this module owns the connection: headers, status classification,
timeouts, stop requests, and the reconnect delays (the server's `retry:`, or backoff after failures).
"""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from http.client import HTTPException
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

from bridge.config.settings import RetrySettings
from bridge.errors import (
    AuthError,
    ConfigError,
    DecodeError,
    FeedInterrupted,
    NotFoundError,
    ProtocolError,
    SourceUnavailable,
    TransientError,
)
from bridge.model import Position, Raw, Seq
from bridge.ops import logcontext
from bridge.ops.events import NO_EVENTS, SOURCE, Events
from bridge.retry import delays
from bridge.sessions import pin_environment
from bridge.source.sse_parser import SseEvent, SseParser

__all__ = ["SseSource", "SseEvent", "SseFeed", "abort", "check_response"]

logger = logging.getLogger(__name__)

_RETRIED_STATUSES = frozenset({408, 412, 425, 429})  # 412 is CouchDB's "nodedown"
_NETWORK_ERRORS = (requests.RequestException, Urllib3Error, HTTPException, OSError)
_TIMEOUTS = (ReadTimeoutError, TimeoutError, requests.Timeout)
_STOP_POLL = 0.1  # seconds between the stop watcher's looks at the stop flag


def abort(response: requests.Response) -> None:
    """Shut down the socket under a streaming response, so a read blocked on it in another thread ends now.

    urllib3 2.3+ offers `shutdown()`, which works even when the server said `Connection: close` and the
    connection object no longer holds the socket; older ones are reached through the connection.
    """
    shutdown = getattr(response.raw, "shutdown", None)
    if shutdown is not None:
        try:
            shutdown()
            return
        except (ValueError, RuntimeError, OSError):
            pass
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def check_response(status: int, content_type: str | None, body: str = "") -> None:
    """Classify the answer to a stream request: return only for 200 with a text/event-stream body.

    Raises ProtocolError for 204 (the SSE spec's "stop reconnecting"), 400, any other unexpected status and
    a wrong content type; AuthError for 401/403 (never retried); NotFoundError for 404/410; and the retried
    SourceUnavailable for 408, 412, 425, 429 and 5xx.
    """
    detail = f": {body.strip()[:200]}" if body.strip() else ""
    if status == 200:
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type != "text/event-stream":
            raise ProtocolError(
                f"expected text/event-stream, got {content_type or 'no content type'}", status=status
            )
        return
    if status == 204:
        raise ProtocolError("the event stream answered 204 No Content: do not reconnect", status=status)
    if status in (401, 403):
        raise AuthError(f"the event stream refused the credentials (HTTP {status}){detail}", status=status)
    if status in (404, 410):
        raise NotFoundError(f"the event stream does not exist (HTTP {status}){detail}", status=status)
    if status in _RETRIED_STATUSES or status >= 500:
        raise SourceUnavailable(f"the event stream is unavailable (HTTP {status}){detail}", status=status)
    raise ProtocolError(f"unexpected HTTP {status} from the event stream{detail}", status=status)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if it has a usable one."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class SseSource:
    """Follows one event stream for ever: reconnects after every end or failure until `stop` is set.

    Every (re)connect sends the last event ID seen as Last-Event-ID. A clean end of the stream waits the
    server's `retry:` (default: the policy's initial delay); failures (network errors, no bytes within
    `read_timeout`, a cut mid-event, retried statuses) wait for the policy's backoff, at least the server's
    `retry:` or Retry-After. Every wait is clamped to [min_reconnect, max_reconnect] and ends when `stop`
    is set. Fatal statuses raise (see check_response); so does the last failure after `retry.max_tries`,
    and `guard`, called before every (re)connect, when it raises.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 75.0,
        retry: RetrySettings,
        min_reconnect: float = 0.1,
        max_reconnect: float = 60.0,
        stop: threading.Event,
        session: requests.Session | None = None,
        events: Events = NO_EVENTS,
        guard: Callable[[], None] | None = None,
    ) -> None:
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ConfigError("SSE timeouts must be positive")
        if not 0 < min_reconnect <= max_reconnect:
            raise ConfigError("SSE reconnect bounds must satisfy 0 < min_reconnect <= max_reconnect")
        self._url = url
        parts = urlsplit(url)  # logs name the stream without credentials or query
        port = f":{parts.port}" if parts.port else ""
        self._where = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
        self._headers = dict(headers or {})
        self._params = dict(params or {})
        self._timeout = (connect_timeout, read_timeout)
        self._retry = retry
        self._min_reconnect = min_reconnect
        self._max_reconnect = max_reconnect
        self._stop = stop
        self._session = session
        self._events = events
        self._guard = guard
        self._last_event_id = ""
        self._server_retry: int | None = None
        self._retry_after: float | None = None
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._drained = False

    @property
    def drained(self) -> bool:
        """True when the event just yielded was the last one the server had sent so far."""
        return self._drained

    @property
    def last_event_id(self) -> str | None:
        """The id the next reconnect sends as Last-Event-ID: that of the last event yielded (None if none)."""
        return self._last_event_id or None

    @property
    def reconnect_delay(self) -> float:
        """Seconds to wait after a clean end: the server's `retry:` or the policy's initial delay, clamped."""
        if self._server_retry is None:
            return self._clamp(self._retry.initial_delay)
        return self._clamp(self._server_retry / 1000)

    def events(self, last_event_id: str | None) -> Generator[SseEvent, None, None]:
        """Yield dispatched events from `last_event_id` on (None: from wherever the server starts).

        Ends only when `stop` is set (also while blocked reading: the connection is then shut down) or the
        consumer closes the generator. Raises FatalError subclasses at once, TransientError after max_tries.
        """
        self._last_event_id = last_event_id or ""
        session = self._session or pin_environment(requests.Session(), self._url)
        done = threading.Event()
        logcontext.thread(self._watch_stop, args=(done,), name="sse-stop-watch").start()
        schedule, failures = delays(self._retry), 0
        logger.info("following event stream %s from Last-Event-ID %r", self._where, self.last_event_id)
        try:
            while not self._stop.is_set():
                progressed = False
                try:
                    for event in self._stream(session):
                        progressed = True
                        yield event
                except TransientError as exc:
                    if self._stop.is_set():
                        return
                    if progressed:
                        schedule, failures = delays(self._retry), 0
                    failures += 1
                    if self._retry.max_tries is not None and failures >= self._retry.max_tries:
                        raise
                    floor = max(self._server_retry or 0, 0) / 1000
                    delay = self._clamp(max(next(schedule), floor, self._retry_after or 0.0))
                    self._retry_after = None
                    self._log_reconnect(logging.WARNING, type(exc).__name__, str(exc), delay, failures)
                    self._events.retried("reading the event stream", type(exc).__name__)
                else:
                    if self._stop.is_set():
                        return
                    schedule, failures = delays(self._retry), 0
                    delay = self.reconnect_delay
                    self._log_reconnect(logging.INFO, "EndOfStream", "the server ended the stream", delay, 0)
                if self._stop.wait(delay):
                    return
        finally:
            done.set()
            if self._session is None:
                session.close()
            logger.info(
                "stopped following event stream %s at Last-Event-ID %r", self._where, self.last_event_id
            )

    def _stream(self, session: requests.Session) -> Iterator[SseEvent]:
        """One connection's events; raises FeedInterrupted if it breaks, returns at a clean end."""
        response = self._open(session)
        parser = SseParser(self._last_event_id)
        try:
            for chunk in self._chunks(response):
                events = parser.feed(chunk)
                if parser.retry is not None:
                    self._server_retry = parser.retry
                for index, event in enumerate(events, 1):
                    self._last_event_id = event.id or ""
                    self._drained = index == len(events)
                    yield event
                self._last_event_id = parser.last_event_id
        finally:
            with self._lock:
                self._response = None
            response.close()
        if parser.pending:
            raise FeedInterrupted(
                "the stream ended in the middle of an event (the partial event is discarded)"
            )

    def interrupt(self) -> None:
        """Shut the open connection down (safe from any thread); the stream reconnects unless guarded."""
        with self._lock:
            response = self._response
        if response is not None:
            abort(response)

    def _open(self, session: requests.Session) -> requests.Response:
        if self._guard is not None:
            self._guard()  # raises a FatalError when there is no point reconnecting
        headers: dict[str, str | bytes] = {
            **self._headers,
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "Accept-Encoding": "identity",
        }
        if self._last_event_id:
            headers["Last-Event-ID"] = self._last_event_id.encode("utf-8")  # the spec sends it UTF-8 encoded
        try:
            response = session.get(
                self._url, params=self._params, headers=headers, timeout=self._timeout, stream=True
            )
        except requests.Timeout as exc:
            self._events.request(SOURCE, False)
            raise SourceUnavailable(f"timed out connecting to {self._where}") from exc
        except _NETWORK_ERRORS as exc:
            self._events.request(SOURCE, False)
            raise SourceUnavailable(f"cannot reach {self._where}: {type(exc).__name__}") from exc
        self._events.request(SOURCE, response.status_code < 500 and response.status_code != 429)
        try:
            body = ""
            if response.status_code != 200:
                body = next(response.iter_content(1024), b"").decode("utf-8", "replace")
                self._retry_after = _retry_after(response.headers.get("Retry-After"))
            check_response(response.status_code, response.headers.get("Content-Type"), body)
        except _NETWORK_ERRORS as exc:
            response.close()
            raise SourceUnavailable(
                f"HTTP {response.status_code} from {self._where}, body unreadable"
            ) from exc
        except BaseException:
            response.close()
            raise
        with self._lock:
            self._response = response
        logger.debug("connected to %s (Last-Event-ID %r)", self._where, self.last_event_id)
        return response

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        """The body's bytes as they arrive; FeedInterrupted on a read error, timeout or truncated body."""
        # read1 returns what one read brings (an HTTP chunk, or a TCP segment of a close-delimited body);
        # iter_content(None) would wait for the end of a body that is not chunked.
        read1: Callable[[], bytes] | None = getattr(response.raw, "read1", None)
        content = response.iter_content(chunk_size=None) if read1 is None else iter(read1, b"")
        while True:
            try:
                chunk = next(content, b"")
            except _NETWORK_ERRORS as exc:
                raise self._interrupted(exc) from exc
            if not chunk:
                return
            yield chunk

    def _interrupted(self, exc: BaseException) -> FeedInterrupted:
        # urllib3 raises ReadTimeoutError from the socket's timeout; requests wraps it in its args
        if any(isinstance(cause, _TIMEOUTS) for cause in (exc, exc.__context__, *exc.args)):
            return FeedInterrupted(f"the stream stalled: no bytes for {self._timeout[1]:g}s")
        return FeedInterrupted(f"the connection broke: {exc}")

    def _watch_stop(self, done: threading.Event) -> None:
        """Shut the open connection down once `stop` is set, so a read blocked on a quiet stream ends now."""
        while not done.is_set():
            if self._stop.wait(_STOP_POLL):
                with self._lock:
                    response = self._response
                if response is not None:
                    abort(response)
                return

    def _clamp(self, seconds: float) -> float:
        return min(max(seconds, self._min_reconnect), self._max_reconnect)

    def _log_reconnect(self, level: int, error: str, cause: str, delay: float, attempt: int) -> None:
        logger.log(
            level,
            "reconnecting to %s in %.2fs with Last-Event-ID %r after %s: %s",
            self._where,
            delay,
            self.last_event_id,
            error,
            cause,
            extra={"what": self._where, "error": error, "delay": delay, "attempt": attempt},
        )


class SseFeed:
    """An event stream as a pipeline source: its events, and a caught-up Position whenever it is drained.

    `seq_of` gives an event's resume token (its id, decoded as the source needs). A stream has no end, so
    only following is possible.
    """

    def __init__(self, source: SseSource, seq_of: Callable[[SseEvent], Seq | None]) -> None:
        self._source = source
        self._seq_of = seq_of

    def changes(self, since: Seq | None, *, follow: bool) -> Iterator[Raw | Position]:
        """The stream's events from `since` (sent as Last-Event-ID) on. A stream has no end, so it always
        follows: the builder refuses `bridge once` for an event stream before anything starts."""
        for event in self._source.events(since.as_param() if since is not None else None):
            yield event, len(event.data.encode("utf-8"))
            if self._source.drained:
                try:
                    seq = self._seq_of(event)
                except DecodeError:
                    continue  # the event itself is dead-lettered by the pipeline; no position from it
                if seq is not None:
                    yield Position(seq, caught_up=True)

    def interrupt(self) -> None:
        """Nothing to do: the stream's own stop watcher shuts the connection down once `stop` is set."""

    def close(self) -> None:
        """Nothing to do: the stream closes its session when its events end, in the thread that read them."""
