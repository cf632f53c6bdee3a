"""The database marker: a `_local` document that tells this incarnation of the database from a recreated one.

`DatabaseMarker` writes or checks it at start-up. `MarkerWatch` checks it again on a timer while the bridge
follows the feed, in a thread of its own, because a quiet feed may never end by itself (CouchDB's heartbeat
keeps a longpoll open; an eventsource stream has no end), and a marker removed by hand, or a server that
does not close its feeds when the database is deleted, would otherwise go unnoticed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping

from bridge.config.settings import SourceSettings
from bridge.errors import BridgeError, NotFoundError, ProtocolError
from bridge.ops import logcontext
from bridge.source.couch_http import CouchHttp, classify, parse_json, reason

__all__ = ["DatabaseMarker", "MarkerWatch"]

logger = logging.getLogger(__name__)


class DatabaseMarker:
    """The marker document of one pipeline in one database."""

    def __init__(self, http: CouchHttp) -> None:
        self._http = http
        self.doc = ""
        """`_local/bridge-<pipeline hash>`, once `ensure` or `adopt` named it."""
        self.token: str | None = None
        """The token the database must hold; None when there is nothing to check."""

    def _url(self) -> str:
        return f"{self._http.db_url}/{self.doc}"

    def ensure(self, pipeline_id: str, expected: str | None) -> str | None:
        """Check (or, with `expected` None, set) the marker that identifies this database incarnation.

        The marker is invisible to `_changes` and gone when the database is deleted, so a recreated
        database is detected even where seqs silently restart (CouchDB 1.x, PouchDB) or rewind to 0
        (CouchDB 2+). Returns the token found, a new one written when none was found and `expected` is
        None, or None when the marker is gone (`expected` set) or cannot be written (no check possible:
        logged once, here, at WARNING).
        """
        self.doc = f"_local/bridge-{pipeline_id}"
        current = self._http.send("GET", self._url())
        if current.status_code == 200:
            body = parse_json(current.content, "GET marker")
            if not isinstance(body, Mapping):
                raise ProtocolError(f"CouchDB answered GET {self.doc} with JSON that is not an object")
            token = body.get("token")
            self.token = token if isinstance(token, str) else None
            return self.token
        if current.status_code != 404:
            classify(current, self._http.database)
        if expected is not None:
            return None
        token = uuid.uuid4().hex
        body = {"token": token, "note": "written by bridge; marks this database"}
        put = self._http.send("PUT", self._url(), json=body)
        if put.status_code in (401, 403):
            logger.warning(
                "cannot write the marker %s in database %r (%d: %s): the bridge mirrors without it, but it cannot "
                "detect that the database was deleted and recreated, between runs or while it follows (a "
                "recreated database would be read again from its start); a deleted database is still noticed",
                self.doc, self._http.database, put.status_code, reason(put),
            )
            self.token = None
            return None
        classify(put, self._http.database)
        self.token = token
        return token

    def adopt(self, doc: str, token: str | None) -> None:
        """Watch the marker another instance checked at start-up."""
        self.doc = doc
        self.token = token

    def intact(self) -> bool:
        """True unless the database lost the marker (trivially True when there is none to check)."""
        if self.token is None:
            return True
        response = self._http.send("GET", self._url())
        if response.status_code == 404:
            return False
        classify(response, self._http.database)
        body = parse_json(response.content, "GET marker")
        return isinstance(body, Mapping) and body.get("token") == self.token

    def lost_error(self) -> NotFoundError:
        return NotFoundError(
            f"database {self._http.database!r} was deleted or recreated while the bridge followed it "
            f"(its marker {self.doc} is gone)",
            status=404,
        )


class MarkerWatch:
    """Checks a marker every `interval` seconds from its own thread and session; `on_lost` once it is gone.

    A check that fails for any other reason (server down, a timeout) is not a verdict: the next one decides,
    and the feed reports a server that stays unreachable.
    """

    def __init__(self, settings: SourceSettings, marker: DatabaseMarker, on_lost: Callable[[], None]) -> None:
        self._settings = settings
        self._marker = marker
        self._on_lost = on_lost
        self._lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        """Raise NotFoundError if a check found the marker gone."""
        if self._lost.is_set():
            raise self._marker.lost_error()

    def start(self) -> None:
        """Start checking (once; nothing to do without a marker token)."""
        if self._thread is not None or self._marker.token is None:
            return
        self._thread = logcontext.thread(self._run, name="bridge-marker-watch")
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        http = CouchHttp(self._settings)  # a session of its own: the feed's is busy in another thread
        marker = DatabaseMarker(http)
        marker.adopt(self._marker.doc, self._marker.token)
        try:
            while not self._done.wait(self._settings.marker_interval):
                try:
                    intact = marker.intact()
                except BridgeError as exc:
                    logger.debug("could not check the marker %s: %s", marker.doc, exc)
                    continue
                if not intact:
                    logger.debug("the marker %s is gone", marker.doc)
                    self._lost.set()
                    self._on_lost()
                    return
        finally:
            http.close()
