"""Follows a database's `_changes` feed from a given seq and yields raw change rows and positions.

Catch-up reads `feed=normal` pages of `page_size` rows. Where the server says that more than a page is
pending (CouchDB 2+), it reads the backlog in one `feed=continuous` request instead (`catch_up_feed`),
line by line (changes_stream.py), with a Position every page's worth of rows: CouchDB spends less CPU on
one stream than on the same rows in pages, and the socket's back-pressure bounds what is held. A stream
that breaks off is read on from the last Position handed out, with a page and its retries.
Following reads `feed=longpoll` with a heartbeat
(or `feed=eventsource`), each longpoll response ending at a known terminator, so a cut-off body is always
detected (it does not parse) and re-read from the last position handed out. Rows are yielded only after
their whole page parsed. While following, the database marker is checked on a timer (marker.py).
Pages are also bounded by bytes: after a big page the next ask for fewer rows (`page_bytes`, core/paging.py).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests

from bridge.config.settings import RetrySettings, SourceSettings, scrub_url
from bridge.core.paging import PageSizer
from bridge.errors import DecodeError, FeedInterrupted, NotFoundError, ProtocolError, StopRequested
from bridge.model import Position, Raw, Seq
from bridge.ops.events import NO_EVENTS, Events
from bridge.retry import call_with_retry
from bridge.source.changes_page import Page, RawRow, changes_params, filter_params, parse_page, read_tail
from bridge.source.changes_stream import Lines, StreamEnd, parse_line
from bridge.source.couch_http import CouchHttp, classify, parse_json, reason
from bridge.source.decode import decode_seq
from bridge.source.marker import DatabaseMarker, MarkerWatch
from bridge.source.read_ahead import ReadAhead
from bridge.source.sse import SseFeed, SseSource, abort
from bridge.source.sse_parser import couchdb_event_seq, couchdb_eventsource_params

__all__ = ["CouchSource", "Page", "RawRow", "classify", "writes_since"]

logger = logging.getLogger(__name__)

_READ_CHUNK = 1 << 16

STREAM_PAGES = 100
"""A continuous catch-up request asks for at most this many pages' worth of rows (`limit`), so that a
feed written to all the time still ends now and then with a `last_seq` and a fresh `pending`."""

STREAM_IDLE_MS = 200
"""A continuous catch-up request ends after this long without a change (`timeout`), with its last line: its
`limit` is what the server said was pending, so it ends by the limit unless that was too many. `timeout=0`
is no shortcut: on CouchDB 3.4 it ends a stream within its backlog, so a 50,000-row backlog took hundreds of
requests and more than twice the server's CPU (a scratch run: 4,700-5,600 rows/s against 11,000-13,000)."""


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
        self._http = CouchHttp(settings, session, events)
        self.server, self.db_url = self._http.server, self._http.db_url
        self._held: list[requests.Response | None] = [None, None]
        """The responses being read: this thread's, and the one fetched ahead (index True)."""
        self._ahead = ReadAhead()
        self._stream: SseSource | None = None
        self._closed = False
        self._marker = DatabaseMarker(self._http)
        self._watch = MarkerWatch(settings, self._marker, on_lost=self._abort_reads)
        self._following = False

    @property
    def marker_doc(self) -> str:
        return self._marker.doc

    @property
    def retry(self) -> RetrySettings:
        """How transient faults are retried; the start-up checks switch it for a few quick tries."""
        return self._retry

    @retry.setter
    def retry(self, value: RetrySettings) -> None:
        self._retry = value

    def interrupt(self) -> None:
        """Abort any read in progress; safe from another thread (the reading thread then closes)."""
        self._closed = True  # before reading _held: _fetch sets it, then looks at this
        self._abort_reads()

    def close(self) -> None:
        """Abort any read and release the connection: from the thread that reads, or after it finished."""
        self.interrupt()
        self._watch.stop()
        self._http.close()

    def _abort_reads(self) -> None:
        """Shut the connection of a read in progress, so the reader notices a stop or a lost marker now."""
        responses, stream = list(self._held), self._stream
        for response in responses:
            if response is not None:
                abort(response)
        if stream is not None:
            stream.interrupt()

    # -- single requests -----------------------------------------------------------------------------------

    def info(self) -> Mapping[str, Any]:
        """The database's info document; raises NotFoundError, AuthError or SourceUnavailable."""
        info = call_with_retry(lambda: self._http.get_json(""), policy=self._retry, stop=self._stop,
                               on_retry=self._events.retried, what="reading the database info")
        if not isinstance(info, Mapping):
            raise ProtocolError(f"{scrub_url(self.db_url)} did not answer with a database info object")
        return info

    def current_seq(self) -> Seq:
        """The position of the end of the feed right now (for `--since now`)."""
        body = call_with_retry(
            lambda: self._http.get_json("/_changes", params={"since": "now", "limit": "1"}),
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
        body = call_with_retry(lambda: self._http.get_json("/_changes", params=params), policy=self._retry,
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
        response = self._http.send("GET", f"{self.db_url}/{quote(doc_id, safe='')}")
        if response.status_code == 404:
            return None
        classify(response, self._settings.database)
        doc = parse_json(response.content, "GET document")
        return doc if isinstance(doc, Mapping) else None

    def get_docs(self, doc_ids: list[str]) -> dict[str, Mapping[str, Any] | None]:
        """The current winning revision of each document (None: deleted or missing), in one request.

        POST `_all_docs` with `keys`, so checking a thousand documents costs one round trip, not a thousand.
        """
        if not doc_ids:
            return {}

        def read() -> dict[str, Mapping[str, Any] | None]:
            response = self._http.send("POST", f"{self.db_url}/_all_docs", params={"include_docs": "true"},
                                       json={"keys": doc_ids})
            classify(response, self._settings.database)
            body = parse_json(response.content, "POST _all_docs")
            rows = body.get("rows") if isinstance(body, Mapping) else None
            if not isinstance(rows, list):
                raise ProtocolError("POST _all_docs answered without rows")
            found: dict[str, Mapping[str, Any] | None] = dict.fromkeys(doc_ids)
            for row in rows:
                doc = row.get("doc") if isinstance(row, Mapping) else None
                if isinstance(doc, Mapping) and isinstance(row.get("key"), str):
                    found[row["key"]] = doc
            return found

        return call_with_retry(read, policy=self._retry, stop=self._stop, on_retry=self._events.retried,
                               what="reading documents")

    # -- database identity (marker.py) ---------------------------------------------------------------------

    def ensure_marker(self, pipeline_id: str, expected: str | None) -> str | None:
        """See DatabaseMarker.ensure; the marker found or written is the one watched while following."""
        return self._marker.ensure(pipeline_id, expected)

    def marker_intact(self) -> bool:
        """True unless the database lost the marker written or read by `ensure_marker`."""
        return self._marker.intact()

    def check_filter(self) -> None:
        """Raise NotFoundError unless the configured design-document filter exists (nothing to check without one).

        Reads the design document instead of trying `_changes`: after a failed `_changes` request PouchDB
        Server crashes on the next one (couchdb-changes.md, section 9).
        """
        if not self._settings.filter:
            return
        ddoc, name = self._settings.filter.split("/", 1)

        def read() -> Any:
            response = self._http.send("GET", f"{self.db_url}/_design/{quote(ddoc, safe='')}")
            if response.status_code == 404:
                raise self._missing_filter(reason(response))
            classify(response, self._settings.database)
            return parse_json(response.content, "GET design document")

        design = call_with_retry(read, policy=self._retry, stop=self._stop, on_retry=self._events.retried,
                                 what="reading the filter's design document")
        filters = design.get("filters") if isinstance(design, Mapping) else None
        if not isinstance(filters, Mapping) or not isinstance(filters.get(name), str):
            raise self._missing_filter(f"_design/{ddoc} has no filters.{name}")

    def _missing_filter(self, why: str) -> NotFoundError:
        return NotFoundError(
            f"CouchDB: the changes filter {self._settings.filter!r} of database {self._settings.database!r} "
            f"was not found, or the database was ({why}); [source] filter names `filters.<name>` of "
            "`_design/<ddoc>` as 'ddoc/name'",
            status=404,
        )

    # -- the feed ------------------------------------------------------------------------------------------

    def changes(self, since: Seq | None, *, follow: bool) -> Iterator[Raw | Position]:
        """Rows after `since` (None: from the start), each with its share of its page's bytes, and a Position
        after each page.

        Pages are read with `feed=normal` until caught up, then (with `follow`) with `feed=longpoll`, or
        with `feed=eventsource` when so configured (its events are decoded by decode_couch_item).
        Without `follow` it stops at the first page that leaves nothing pending. Transient faults are
        retried from the last position handed out; StopRequested ends it when a stop is requested.
        While following, a lost marker or a database gone (404) raises NotFoundError.
        """
        try:
            yield from self._changes(since, follow)
        except NotFoundError as exc:
            if self._watch.lost or not self._following:
                raise
            raise NotFoundError(f"database {self._settings.database!r} is gone: it was deleted while the bridge "
                                f"followed it ({exc.message})", status=exc.status) from None
        finally:
            self._ahead.settle()  # in the reading thread: a page fetched ahead is not left running
            self._watch.stop()

    def _changes(self, since: Seq | None, follow: bool) -> Iterator[Raw | Position]:
        position = since
        caught_up = False
        pending: int | None = None
        broke = False
        sizer = PageSizer(self._settings.page_size, self._settings.page_bytes)
        while not self._stop.is_set():
            if caught_up and follow:
                self._following = True
                self._watch.start()
                if self._settings.feed == "eventsource":
                    yield from self._eventsource(position)
                    return
            if not caught_up and not broke and self._streams(pending, sizer.limit):
                assert pending is not None  # _streams says so
                try:
                    for item in self._continuous(position, pending, sizer):
                        if type(item) is Position:
                            position, pending, caught_up = item.seq, item.pending, item.caught_up
                        yield item
                except FeedInterrupted as exc:  # read on from the last position with a page, and its retries
                    if self._stop.is_set():
                        return
                    broke = True
                    self._events.retried("reading the changes feed", type(exc).__name__)
                    logger.warning("the continuous changes feed broke off (%s); reading on with pages from the "
                                   "last position handed out", exc.message)
                    continue
                if caught_up and not follow:
                    return
                continue
            broke = False
            longpoll = caught_up and follow
            limit = sizer.limit
            page = call_with_retry(
                functools.partial(self._page, position, longpoll, sizer),
                policy=self._retry, stop=self._stop, on_retry=self._events.retried, what="reading the changes feed",
            )
            size = page.nbytes // max(1, len(page.rows))
            sizer.read(len(page.rows), page.nbytes)
            for row in page.rows:
                yield row, size
            if page.last_seq is not None:
                position = page.last_seq
            pending = page.pending
            if page.pending is not None:
                caught_up = page.pending == 0
            else:
                caught_up = len(page.rows) < limit
            if position is not None:
                yield Position(position, caught_up=caught_up, pending=page.pending)
            if caught_up and not follow:
                return

    def _eventsource(self, since: Seq | None) -> Iterator[Raw | Position]:
        """Follow with `feed=eventsource`: each event's id is its seq, sent back as Last-Event-ID."""
        settings = self._settings
        params = couchdb_eventsource_params(since, int(settings.heartbeat * 1000))
        params.update(filter_params(settings))
        self._stream = SseSource(
            f"{self.db_url}/_changes", params=params, connect_timeout=settings.connect_timeout,
            read_timeout=settings.effective_read_timeout, retry=self._retry, stop=self._stop,
            min_reconnect=settings.min_reconnect, max_reconnect=settings.max_reconnect,
            session=self._http.session, events=self._events, guard=self._watch.check,
        )
        yield from SseFeed(self._stream, seq_of=couchdb_event_seq).changes(since, follow=True)

    def _page(self, since: Seq | None, longpoll: bool, sizer: PageSizer) -> Page:
        """One page: the body fetched ahead for exactly this request, else read now; the next catch-up page
        is asked for (read_ahead.py) before this one is parsed."""
        limit = sizer.limit
        body = self._ahead.take((since, longpoll, limit))
        if body is None:
            body = self._fetch(since, longpoll, limit, ahead=False)
        tail = None if longpoll or self._stop.is_set() else read_tail(body)
        next_limit = sizer.after(limit, len(body))  # the limit if the page was full
        if tail is not None and tail.pending != 0 and not self._streams(tail.pending, next_limit):
            # more to read in pages (or the server does not say: PouchDB)
            after = tail.last_seq
            self._ahead.start((after, False, next_limit),
                              functools.partial(self._fetch, after, False, next_limit, ahead=True))
        return parse_page(body, since)

    def _streams(self, pending: int | None, limit: int) -> bool:
        """Whether the backlog is read with one continuous request: when so configured and the server said
        more than the next page's rows are pending."""
        return self._settings.catch_up_feed == "continuous" and pending is not None and pending > limit

    def _continuous(self, since: Seq | None, pending: int, sizer: PageSizer) -> Iterator[Raw | Position]:
        """The rows after `since` from one `feed=continuous` request that ends after `limit` rows (what the
        server said was pending) or when it goes idle, with a Position after each page's worth of rows (the sizer's
        row limit, or its bytes) and one from the feed's last line. Raises FeedInterrupted when it breaks off.

        Each row's seq is a complete resume token in CouchDB 2+ (couchdb-changes.md, section 5), so the
        Positions inside the stream are safe to record; their `pending` is what the server last said, less
        the rows read since.
        """
        rows = min(pending, STREAM_PAGES * self._settings.page_size)
        response = self._open(since, "continuous", rows, ahead=False)
        lines, count, nbytes, streamed = Lines(), 0, 0, 0
        try:
            self._check_open()
            try:
                for chunk in response.iter_content(_READ_CHUNK):
                    for line in lines.feed(chunk):
                        item = parse_line(line, since)
                        if item is None:
                            continue
                        if type(item) is StreamEnd:
                            yield Position(item.last_seq, caught_up=item.pending == 0, pending=item.pending)
                            return
                        size = len(line) + 1
                        yield item, size
                        count, nbytes = count + 1, nbytes + size
                        if count >= sizer.limit or nbytes >= self._settings.page_bytes:
                            seq = _row_seq(item) if type(item) is dict else None  # not an UnreadableRow's
                            if seq is not None:  # else at a later row, or at the end
                                streamed += count
                                sizer.read(count, nbytes)
                                count = nbytes = 0
                                yield Position(seq, pending=max(0, pending - streamed))
            except requests.RequestException as exc:
                self._http.failed()
                self._watch.check()
                raise FeedInterrupted(f"the continuous changes feed broke off: {type(exc).__name__}",
                                      seq=since) from None
            self._watch.check()
            raise FeedInterrupted(f"the continuous changes feed ended without its last line ({lines.held} bytes "
                                  "of a line unfinished)", seq=since)
        finally:
            self._held[False] = None
            response.close()

    def _fetch(self, since: Seq | None, longpoll: bool, limit: int, *, ahead: bool) -> bytes:
        """A `_changes` request's whole body; the response is held where `_abort_reads` can shut it."""
        response = self._open(since, "longpoll" if longpoll else "normal", limit, ahead=ahead)
        try:
            self._check_open()
            try:
                return b"".join(response.iter_content(_READ_CHUNK))
            except requests.RequestException as exc:
                self._http.failed()
                self._watch.check()
                raise FeedInterrupted(f"the changes feed broke off: {type(exc).__name__}", seq=since) from None
        finally:
            self._held[ahead] = None
            response.close()

    def _open(self, since: Seq | None, feed: str, limit: int, *, ahead: bool) -> requests.Response:
        """A `_changes` request whose status says it answers; held where `_abort_reads` can shut it."""
        self._watch.check()  # before every (re)try: a lost marker is final
        params = changes_params(self._settings, since, feed == "longpoll")
        params["limit"] = str(limit)  # core/paging.py: at most page_size, fewer after big pages
        if feed == "continuous":
            params.update(feed="continuous", timeout=str(STREAM_IDLE_MS))
        url = f"{self.db_url}/_changes"
        if self._settings.doc_ids:
            response = self._http.send("POST", url, params=params, json={"doc_ids": self._settings.doc_ids},
                                       stream=True)
        else:
            response = self._http.send("GET", url, params=params, stream=True)
        try:
            if response.status_code == 404 and self._settings.filter:
                raise self._missing_filter(reason(response))
            classify(response, self._settings.database)
        except BaseException:
            response.close()
            raise
        self._held[ahead] = response
        return response

    def _check_open(self) -> None:
        """After the headers came: stop if closed or stopped meanwhile (a longpoll may never end), and raise
        a marker lost meanwhile."""
        if self._closed or self._stop.is_set():
            raise StopRequested("stop requested while reading the changes feed")
        if self._watch.lost:
            self._watch.check()


def _row_seq(row: RawRow) -> Seq | None:
    """A row's own seq, where it is one (None: `null`, or not a seq, which decoding the row reports)."""
    try:
        return decode_seq(row.get("seq"))
    except DecodeError:
        return None


def writes_since(info: Mapping[str, Any], since: Seq | None) -> int | None:
    """Writes to the database after `since`, from its info's `update_seq`, where seqs are integers
    (PouchDB, CouchDB 1.x); None for CouchDB 2+'s opaque seqs, whose pages say `pending` themselves."""
    update = decode_seq(info.get("update_seq"))
    start = 0 if since is None else since.value
    if update is not None and isinstance(update.value, int) and isinstance(start, int):
        return max(0, update.value - start)
    return None
