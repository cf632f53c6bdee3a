"""The databases of a CouchDB server: `_all_dbs` at start, `_db_updates` while running (the I/O of patterns).

`_db_updates` needs an admin and, on CouchDB 3, the `_global_changes` database; where the server answers
it with 400, 401, 403, 404 or 501 (PouchDB Server has none), `DatabaseWatch` lists `_all_dbs` every
`POLL_SECONDS` instead and reports the difference, so a pattern still finds new databases, only later.
Every request has a timeout; foreign exceptions become BridgeErrors here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from bridge.config.settings import SourceSettings, scrub_url
from bridge.errors import AuthError, ProtocolError, SourceUnavailable
from bridge.sessions import pin_environment

__all__ = ["DatabaseList", "DatabaseWatch", "POLL_SECONDS"]

logger = logging.getLogger(__name__)

POLL_SECONDS = 10.0
_LONGPOLL_MS = 25_000


class DatabaseList:
    """Asks one CouchDB server which databases it has."""

    def __init__(self, settings: SourceSettings) -> None:
        self.server = scrub_url(settings.url).rstrip("/")
        parts = urlsplit(settings.url)
        user = settings.username or (parts.username or "")
        password = settings.password or (parts.password or "")
        self._session = requests.Session()
        if user:
            self._session.auth = (user, password)
        pin_environment(self._session, self.server)
        self._connect = settings.connect_timeout

    def _get(self, path: str, read_timeout: float, **params: str) -> requests.Response:
        try:
            response = self._session.get(f"{self.server}/{path}", params=params,
                                         timeout=(self._connect, read_timeout))
        except requests.RequestException as exc:
            raise SourceUnavailable(f"CouchDB {self.server}/{path} failed: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise AuthError(f"CouchDB refused {path} ({response.status_code}): check [source] username")
        if response.status_code >= 500 and response.status_code != 501:
            raise SourceUnavailable(f"CouchDB {path} answered {response.status_code}")
        return response

    def all_dbs(self) -> list[str]:
        """Every database name; raises SourceUnavailable, AuthError or ProtocolError."""
        response = self._get("_all_dbs", 30.0)
        body = _json(response, "_all_dbs")
        if response.status_code != 200 or not isinstance(body, list):
            raise ProtocolError(f"CouchDB _all_dbs answered {response.status_code} without a list")
        return [name for name in body if isinstance(name, str)]

    def exists(self, database: str) -> bool:
        """False only when the server says the database is not there (404)."""
        return self._get(quote(database, safe=""), 30.0).status_code != 404

    def updates(self, since: str) -> tuple[list[tuple[str, str]], str] | None:
        """One long poll of `_db_updates`: ([(type, db_name)], last_seq); None when the server has none."""
        response = self._get("_db_updates", _LONGPOLL_MS / 1000 + 10, feed="longpoll", since=since,
                             timeout=str(_LONGPOLL_MS))
        if response.status_code in (400, 404, 405, 501):
            return None
        body = _json(response, "_db_updates")
        if response.status_code != 200 or not isinstance(body, dict):
            raise ProtocolError(f"CouchDB _db_updates answered {response.status_code}")
        events = [(str(row.get("type")), str(row.get("db_name"))) for row in body.get("results") or []
                  if isinstance(row, dict) and isinstance(row.get("db_name"), str)]
        return events, str(body.get("last_seq", since))

    def close(self) -> None:
        self._session.close()


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProtocolError(f"CouchDB {what} did not answer JSON") from None


class DatabaseWatch:
    """Follows a server's databases from a daemon thread, calling `created(db)` and `deleted(db)`."""

    def __init__(self, databases: DatabaseList, known: set[str], *, created: Callable[[str], None],
                 deleted: Callable[[str], None], stop: threading.Event) -> None:
        self._list = databases
        self._known = set(known)
        self._created = created
        self._deleted = deleted
        self._stop = stop
        self.thread = threading.Thread(target=self._follow, name="bridge-databases", daemon=True)

    def start(self) -> DatabaseWatch:
        self.thread.start()
        return self

    def _follow(self) -> None:
        since = "now"
        polling = False
        while not self._stop.is_set():
            try:
                if not polling:
                    answer = self._list.updates(since)
                    if answer is None:
                        logger.info("%s has no _db_updates: listing _all_dbs every %.0f s instead",
                                    self._list.server, POLL_SECONDS)
                        polling = True
                        continue
                    events, since = answer
                    for kind, name in events:
                        self._tell(name, present=kind != "deleted")
                else:
                    self._compare(set(self._list.all_dbs()))
                    self._stop.wait(POLL_SECONDS)
            except (SourceUnavailable, ProtocolError, AuthError) as exc:
                logger.warning("following the databases of %s: %s: %s (again in %.0f s)", self._list.server,
                               type(exc).__name__, exc, POLL_SECONDS)
                self._stop.wait(POLL_SECONDS)
        self._list.close()

    def _compare(self, now: set[str]) -> None:
        for name in sorted(now - self._known):
            self._tell(name, present=True)
        for name in sorted(self._known - now):
            self._tell(name, present=False)

    def _tell(self, name: str, *, present: bool) -> None:
        if present and name not in self._known:
            self._known.add(name)
            self._created(name)
        elif not present and name in self._known:
            self._known.discard(name)
            self._deleted(name)
