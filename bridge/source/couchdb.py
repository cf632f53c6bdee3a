"""Follows a database's `_changes` feed from a given seq and yields raw change rows and positions.

Catch-up reads `feed=normal` pages of `page_size` rows; following reads `feed=longpoll` with a heartbeat,
each response ending at a known terminator, so a cut-off body is always detected (it does not parse) and
re-read from the last position handed out. Rows are yielded only after their whole page parsed.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import requests

from bridge.config.settings import RetrySettings, SourceSettings, scrub_url
from bridge.errors import (
    AuthError,
    FeedInterrupted,
    NotFoundError,
    ProtocolError,
    SourceUnavailable,
    StopRequested,
)
from bridge.model import Position, Raw, Seq
from bridge.ops.events import NO_EVENTS, SOURCE, Events
from bridge.retry import call_with_retry
from bridge.source.decode import decode_seq
from bridge.source.sse import SseFeed, SseSource, abort
from bridge.source.sse_parser import couchdb_event_seq, couchdb_eventsource_params

__all__ = ["CouchSource", "Page", "RawRow", "classify", "writes_since"]

logger = logging.getLogger(__name__)

RawRow = dict[str, Any]
_READ_CHUNK = 1 << 16


def _split_credentials(url: str, username: str, password: str) -> tuple[str, tuple[str, str] | None]:
    parts = urlsplit(url)
    user = username or (parts.username or "")
    secret = password or (parts.password or "")
    return scrub_url(url).rstrip("/"), (user, secret) if user else None


class CouchSource:
    """A CouchDB (or CouchDB-protocol) database's changes feed. Used from one thread, closed from any."""

    def __init__(
        self,
        settings: SourceSettings,
        *,
        retry: RetrySettings,
        stop: threading.Event,
        session: requests.Session | None = None,
        events: Events = NO_EVENTS,
    ) -> None:
        self._settings = settings
        self._events = events
        self._retry = retry
        self._stop = stop
        self.server, auth = _split_credentials(settings.url, settings.username, settings.password)
        self.db_url = f"{self.server}/{quote(settings.database, safe='')}"
        self._session = session or requests.Session()
        self._session.auth = auth
        # identity: pouchdb-server stalls gzipped continuous feeds, and gzip costs every server CPU.
        self._session.headers.update({"Accept": "application/json", "Accept-Encoding": "identity"})
        self._timeout = (settings.connect_timeout, settings.effective_read_timeout)
        self._response: requests.Response | None = None
        self._closed = False
        self.marker_doc = ""
        self._marker: str | None = None
        self._marker_checked = 0.0

    @property
    def retry(self) -> RetrySettings:
        """How transient faults are retried; the start-up checks switch it for a few quick tries."""
        return self._retry

    @retry.setter
    def retry(self, value: RetrySettings) -> None:
        self._retry = value

    def interrupt(self) -> None:
        """Abort any read in progress; safe from another thread (the reading thread then closes)."""
        self._closed = True  # before reading _response: _page sets it, then looks at this
        response = self._response
        if response is not None:
            abort(response)

    def close(self) -> None:
        """Abort any read and release the connection: from the thread that reads, or after it finished."""
        self.interrupt()
        self._session.close()

    # -- requests and their classification ---------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request with the source's timeouts; network failures become SourceUnavailable."""
        try:
            response = self._session.request(method, url, timeout=self._timeout, **kwargs)
        except requests.Timeout:
            self._events.request(SOURCE, False)
            raise SourceUnavailable(f"CouchDB at {self.server} timed out") from None
        except requests.RequestException as exc:
            self._events.request(SOURCE, False)
            raise SourceUnavailable(f"CouchDB at {self.server} unreachable: {type(exc).__name__}") from None
        self._events.request(SOURCE, response.status_code < 500 and response.status_code not in (412, 429))
        return response

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        response = self._send(method, url, **kwargs)
        classify(response, self._settings.database)
        return response

    def _get_json(self, path: str, **kwargs: Any) -> Any:
        response = self._request("GET", f"{self.db_url}{path}", **kwargs)
        return _parse(response.content, f"GET {path or '/'}")

    def info(self) -> Mapping[str, Any]:
        """The database's info document; raises NotFoundError, AuthError or SourceUnavailable."""
        info = call_with_retry(lambda: self._get_json(""), policy=self._retry, stop=self._stop,
                               on_retry=self._events.retried, what="reading the database info")
        if not isinstance(info, Mapping):
            raise ProtocolError(f"{scrub_url(self.db_url)} did not answer with a database info object")
        return info

    def current_seq(self) -> Seq:
        """The position of the end of the feed right now (for `--since now`)."""
        body = call_with_retry(
            lambda: self._get_json("/_changes", params={"since": "now", "limit": "1"}),
            policy=self._retry, stop=self._stop, on_retry=self._events.retried, what="reading the current seq",
        )
        seq = decode_seq(body.get("last_seq")) if isinstance(body, Mapping) else None
        if seq is None:
            raise ProtocolError("the server gave no last_seq for since=now")
        return seq

    def pending_after(self, since: Seq | None) -> int | None:
        """How many changes the database holds after `since` (before any filter of the bridge's own).

        CouchDB says so itself (`pending`); where a server does not (PouchDB, CouchDB 1.x) and seqs are
        integers, the difference with `update_seq` counts the writes since. None when neither is known.
        """
        params = {"since": since.as_param() if since is not None else "0", "limit": "1"}
        body = call_with_retry(lambda: self._get_json("/_changes", params=params), policy=self._retry,
                               stop=self._stop, on_retry=self._events.retried, what="reading the pending changes")
        if isinstance(body, Mapping):
            pending, results = body.get("pending"), body.get("results")
            if isinstance(pending, int) and not isinstance(pending, bool) and isinstance(results, list):
                return pending + len(results)
        return writes_since(self.info(), since)

    def get_doc(self, doc_id: str) -> Mapping[str, Any] | None:
        """The current winning revision of a document, or None when it is deleted or missing."""
        return call_with_retry(lambda: self._get_doc(doc_id), policy=self._retry, stop=self._stop,
                               on_retry=self._events.retried, what="reading a document")

    def _get_doc(self, doc_id: str) -> Mapping[str, Any] | None:
        response = self._send("GET", f"{self.db_url}/{quote(doc_id, safe='')}")
        if response.status_code == 404:
            return None
        classify(response, self._settings.database)
        doc = _parse(response.content, "GET document")
        return doc if isinstance(doc, Mapping) else None

    def get_docs(self, doc_ids: list[str]) -> dict[str, Mapping[str, Any] | None]:
        """The current winning revision of each document (None: deleted or missing), in one request.

        POST `_all_docs` with `keys`, so checking a thousand documents costs one round trip, not a thousand.
        """
        if not doc_ids:
            return {}

        def read() -> dict[str, Mapping[str, Any] | None]:
            response = self._request("POST", f"{self.db_url}/_all_docs", params={"include_docs": "true"},
                                     json={"keys": doc_ids})
            body = _parse(response.content, "POST _all_docs")
            rows = body.get("rows") if isinstance(body, Mapping) else None
            if not isinstance(rows, list):
                raise ProtocolError("POST _all_docs answered without rows")
            found: dict[str, Mapping[str, Any] | None] = dict.fromkeys(doc_ids)
            for row in rows:
                doc = row.get("doc") if isinstance(row, Mapping) else None
                if isinstance(doc, Mapping) and isinstance(row.get("key"), str):
                    found[row["key"]] = doc
            return found

        return call_with_retry(read, policy=self._retry, stop=self._stop, what="reading documents")

    # -- database identity ---------------------------------------------------------------------------------

    def ensure_marker(self, pipeline_id: str, expected: str | None) -> str | None:
        """Check (or, with `expected` None, set) the marker that identifies this database incarnation.

        The marker is a `_local` document: invisible to `_changes`, and gone when the database is deleted,
        so a recreated database is detected even where seqs silently restart (CouchDB 1.x, PouchDB).
        Returns the marker's token: the one found, a new one written when none was found and `expected`
        is None, or None when the marker is gone (`expected` set) or cannot be written (no check possible).
        """
        self.marker_doc = f"_local/bridge-{pipeline_id}"
        url = f"{self.db_url}/{self.marker_doc}"
        current = self._send("GET", url)
        if current.status_code == 200:
            body = _parse(current.content, "GET marker")
            if not isinstance(body, Mapping):
                raise ProtocolError(f"CouchDB answered GET {self.marker_doc} with JSON that is not an object")
            token = body.get("token")
            self._marker = token if isinstance(token, str) else None
            self._marker_checked = time.monotonic()
            return self._marker
        if current.status_code != 404:
            classify(current, self._settings.database)
        if expected is not None:
            return None
        token = uuid.uuid4().hex
        put = self._send("PUT", url, json={"token": token, "note": "written by bridge; marks this database"})
        if put.status_code in (401, 403):
            logger.warning("cannot write %s (status %d): a recreated database will not be detected",
                           self.marker_doc, put.status_code)
            return None
        classify(put, self._settings.database)
        self._marker = token
        self._marker_checked = time.monotonic()
        return token

    def marker_intact(self) -> bool:
        """True unless the database lost the marker written or read by `ensure_marker`."""
        if self._marker is None:
            return True
        response = self._send("GET", f"{self.db_url}/{self.marker_doc}")
        if response.status_code == 404:
            return False
        classify(response, self._settings.database)
        body = _parse(response.content, "GET marker")
        self._marker_checked = time.monotonic()
        return isinstance(body, Mapping) and body.get("token") == self._marker

    # -- the feed ------------------------------------------------------------------------------------------

    def changes(self, since: Seq | None, *, follow: bool) -> Iterator[Raw | Position]:
        """Rows after `since` (None: from the start), each with its share of its page's bytes, and a Position
        after each page.

        Pages are read with `feed=normal` until caught up, then (with `follow`) with `feed=longpoll`, or
        with `feed=eventsource` when so configured (its events are decoded by decode_couch_item).
        Without `follow` it stops at the first page that leaves nothing pending. Transient faults are
        retried from the last position handed out; StopRequested ends it when a stop is requested.
        """
        position = since
        caught_up = False
        while not self._stop.is_set():
            if caught_up and follow and self._settings.feed == "eventsource":
                yield from self._eventsource(position)
                return
            longpoll = caught_up and follow
            page = call_with_retry(
                functools.partial(self._page, position, longpoll),
                policy=self._retry, stop=self._stop, on_retry=self._events.retried, what="reading the changes feed",
            )
            size = page.nbytes // max(1, len(page.rows))
            for row in page.rows:
                yield row, size
            if page.last_seq is not None:
                position = page.last_seq
            if page.pending is not None:
                caught_up = page.pending == 0
            else:
                caught_up = len(page.rows) < self._settings.page_size
            if position is not None:
                yield Position(position, caught_up=caught_up, pending=page.pending)
            if caught_up and not follow:
                return
            if longpoll and time.monotonic() - self._marker_checked > 30 and not call_with_retry(
                self.marker_intact, policy=self._retry, stop=self._stop, on_retry=self._events.retried,
                what="checking the database marker",
            ):
                raise NotFoundError(
                    f"database {self._settings.database!r} was deleted or recreated while the bridge followed it "
                    f"(its marker {self.marker_doc} is gone)"
                )

    def _eventsource(self, since: Seq | None) -> Iterator[Raw | Position]:
        """Follow with `feed=eventsource`: each event's id is its seq, sent back as Last-Event-ID."""
        settings = self._settings
        params = couchdb_eventsource_params(since, int(settings.heartbeat * 1000))
        params.update(self._filter_params())
        stream = SseSource(
            f"{self.db_url}/_changes", params=params, connect_timeout=settings.connect_timeout,
            read_timeout=settings.effective_read_timeout, retry=self._retry, stop=self._stop,
            min_reconnect=settings.min_reconnect, max_reconnect=settings.max_reconnect, session=self._session,
            events=self._events,
        )
        yield from SseFeed(stream, seq_of=couchdb_event_seq).changes(since, follow=True)

    def check_filter(self) -> None:
        """Raise NotFoundError unless the configured design-document filter exists (nothing to check without one).

        Reads the design document instead of trying `_changes`: after a failed `_changes` request PouchDB
        Server crashes on the next one (couchdb-changes.md, section 9).
        """
        if not self._settings.filter:
            return
        ddoc, name = self._settings.filter.split("/", 1)

        def read() -> Any:
            response = self._send("GET", f"{self.db_url}/_design/{quote(ddoc, safe='')}")
            if response.status_code == 404:
                raise self._missing_filter(_reason(response))
            classify(response, self._settings.database)
            return _parse(response.content, "GET design document")

        design = call_with_retry(read, policy=self._retry, stop=self._stop, on_retry=self._events.retried,
                                 what="reading the filter's design document")
        filters = design.get("filters") if isinstance(design, Mapping) else None
        if not isinstance(filters, Mapping) or not isinstance(filters.get(name), str):
            raise self._missing_filter(f"_design/{ddoc} has no filters.{name}")

    def _missing_filter(self, reason: str) -> NotFoundError:
        return NotFoundError(
            f"CouchDB: the changes filter {self._settings.filter!r} of database {self._settings.database!r} "
            f"was not found, or the database was ({reason}); [source] filter names `filters.<name>` of "
            "`_design/<ddoc>` as 'ddoc/name'",
            status=404,
        )

    def _filter_params(self) -> dict[str, str]:
        if self._settings.doc_ids:
            return {"filter": "_doc_ids", "doc_ids": orjson.dumps(self._settings.doc_ids).decode()}
        if self._settings.filter:
            return {"filter": self._settings.filter, **self._settings.filter_params}
        return {}

    def _params(self, since: Seq | None, longpoll: bool) -> dict[str, str]:
        settings = self._settings
        params = {
            "feed": "longpoll" if longpoll else "normal",
            "include_docs": "true",
            "limit": str(settings.page_size),
            "since": since.as_param() if since is not None else "0",
        }
        if longpoll:
            params["heartbeat"] = str(int(settings.heartbeat * 1000))
        if settings.doc_ids:
            params["filter"] = "_doc_ids"  # the ids travel in the POST body
        elif settings.filter:
            params["filter"] = settings.filter
            params.update(settings.filter_params)
        return params

    def _page(self, since: Seq | None, longpoll: bool) -> Page:
        params = self._params(since, longpoll)
        url = f"{self.db_url}/_changes"
        if self._settings.doc_ids:
            response = self._send("POST", url, params=params, json={"doc_ids": self._settings.doc_ids},
                                  stream=True)
        else:
            response = self._send("GET", url, params=params, stream=True)
        if response.status_code == 404 and self._settings.filter:
            raise self._missing_filter(_reason(response))
        classify(response, self._settings.database)
        self._response = response
        if self._closed or self._stop.is_set():  # closed while waiting for the headers: a longpoll may never end
            self._response = None
            response.close()
            raise StopRequested("stop requested while reading the changes feed")
        try:
            body = b"".join(response.iter_content(_READ_CHUNK))
        except requests.RequestException as exc:
            self._events.request(SOURCE, False)
            raise FeedInterrupted(f"the changes feed broke off: {type(exc).__name__}", seq=since) from None
        finally:
            self._response = None
            response.close()
        parsed = _parse(body, "the changes feed", interrupted=True)
        if not isinstance(parsed, Mapping) or not isinstance(parsed.get("results"), list):
            raise FeedInterrupted("the changes feed answered without a results list", seq=since)
        pending = parsed.get("pending")
        return Page(
            rows=parsed["results"],
            last_seq=decode_seq(parsed.get("last_seq")),
            pending=pending if isinstance(pending, int) and not isinstance(pending, bool) else None,
            nbytes=len(body),
        )


def writes_since(info: Mapping[str, Any], since: Seq | None) -> int | None:
    """Writes to the database after `since`, from its info's `update_seq`, where seqs are integers
    (PouchDB, CouchDB 1.x); None for CouchDB 2+'s opaque seqs, whose pages say `pending` themselves."""
    update = decode_seq(info.get("update_seq"))
    start = 0 if since is None else since.value
    if update is not None and isinstance(update.value, int) and isinstance(start, int):
        return max(0, update.value - start)
    return None


@dataclass(frozen=True, slots=True)
class Page:
    """One parsed `_changes` response."""

    rows: list[RawRow]
    last_seq: Seq | None
    pending: int | None
    """Changes left after this page; None where the server does not say (1.x, PouchDB)."""
    nbytes: int


def _parse(body: bytes, what: str, *, interrupted: bool = False) -> Any:
    """Parse a response body; one that is not JSON (cut off, or a proxy's error page) is read again."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        if interrupted:
            raise FeedInterrupted(f"{what} ended before its terminator ({len(body)} bytes read)") from None
        raise SourceUnavailable(f"{what} answered with something that is not JSON ({len(body)} bytes)") from None


def classify(response: requests.Response, database: str) -> None:
    """Raise the BridgeError a CouchDB status means; return for 2xx.

    400/401/403/404 are final (never hot-retried: CouchDB locks accounts after failed logins);
    412, 429 and 5xx are transient.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = _reason(response)
    if status in (401, 403):
        raise AuthError(f"CouchDB refused the credentials for database {database!r} ({status}: {reason})",
                        status=status)
    if status == 404:
        raise NotFoundError(f"CouchDB: {database!r} not found ({reason})", status=status)
    if status == 400:
        hint = " The saved seq is not valid here; run `bridge checkpoint reset`." if "seq" in reason.lower() else ""
        raise ProtocolError(f"CouchDB rejected the request (400: {reason}).{hint}", status=status)
    if status in (412, 429) or status >= 500:
        raise SourceUnavailable(f"CouchDB answered {status}: {reason}", status=status)
    raise ProtocolError(f"CouchDB answered {status}: {reason}", status=status)


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason or ""
    if isinstance(body, Mapping):
        return str(body.get("reason") or body.get("error") or body)[:200]
    return str(body)[:200]
