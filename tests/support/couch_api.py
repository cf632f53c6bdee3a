"""What every CouchDB-protocol test server offers: its URL and credentials, and small HTTP helpers.

PouchDB Server (couchdb_server.py) and real Apache CouchDB (real_couchdb.py) both derive from CouchServer,
so a test written against it runs on either. The helpers are for arranging and asserting; the bridge has
its own client. Every call is bounded by a timeout.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

__all__ = ["CouchDatabase", "CouchServer", "CouchServerError", "free_port", "seq_number", "with_credentials"]

_HEADERS = {"Accept-Encoding": "identity", "Accept": "application/json"}
_TIMEOUT = (5.0, 60.0)  # connect, read


class CouchServerError(RuntimeError):
    """The test server could not be started, or a helper request got an unexpected status."""


def free_port() -> int:
    """A port the kernel just handed out; another process may still grab it, hence the callers' retries."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_credentials(base_url: str, credentials: tuple[str, str] | None) -> str:
    """`base_url` with `user:password@` in it (quoted), or unchanged without credentials."""
    if credentials is None:
        return base_url
    parts = urllib.parse.urlsplit(base_url)
    user, password = (urllib.parse.quote(part, safe="") for part in credentials)
    return parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}").geturl()


def seq_number(seq: Any) -> int:
    """The count a seq starts with (`5` of PouchDB, the `5` of CouchDB's `"5-g1AA..."`), for tests only.

    The bridge never reads seqs; a test compares positions through this hint, which on a single-node
    CouchDB is the number of updates the database has seen.
    """
    if isinstance(seq, int):
        return seq
    return int(str(seq).split("-", 1)[0])


class CouchServer:
    """A CouchDB-protocol server under test. Subclasses start and stop it; this class talks to it."""

    kind = "couchdb-protocol"
    """`pouchdb` or `couchdb`: the fixture parameter a test runs under."""
    db_prefix = "t_"
    """Every database the suite creates on this server starts with it."""
    logs_requests = False
    """True when log_tail() shows the requests the server received."""

    def __init__(self) -> None:
        self.credentials: tuple[str, str] | None = None
        """Admin (name, password) where the server needs a login; None for PouchDB Server."""
        self._http = requests.Session()
        self._http.headers.update(_HEADERS)

    # -- what subclasses provide -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Base URL without credentials, with a trailing slash, e.g. http://127.0.0.1:41234/."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """What the server is, for the suite's summary line."""
        return self.kind

    @property
    def running(self) -> bool:
        return True

    def restart(self) -> CouchServer:
        raise CouchServerError(f"{self.label} cannot be restarted by the suite")

    def stop(self, timeout: float = 10.0) -> None:
        raise CouchServerError(f"{self.label} cannot be stopped by the suite")

    def kill(self) -> None:
        raise CouchServerError(f"{self.label} cannot be killed by the suite")

    def close(self) -> None:
        self._http.close()

    def log_tail(self, lines: int = 40) -> str:
        return ""

    # -- addresses ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL with the admin credentials in it (what a test hands the bridge and requests)."""
        return with_credentials(self.base_url, self.credentials)

    @property
    def port(self) -> int:
        port = urllib.parse.urlsplit(self.base_url).port
        if port is None:
            raise CouchServerError("no port in %s" % self.base_url)
        return port

    def url_via(self, base_url: str) -> str:
        """Another base URL (a proxy in front of this server) with this server's credentials in it."""
        return with_credentials(base_url, self.credentials)

    def __enter__(self) -> CouchServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- HTTP helpers ------------------------------------------------------------------------------------

    def all_dbs(self) -> list[str]:
        names = _checked_any(self._send("GET", "_all_dbs"), (200,))
        return [str(name) for name in names]

    def create_db(self, name: str, *, partitioned: bool = False) -> None:
        params = {"partitioned": "true"} if partitioned else None
        self._request("PUT", _quote(name), ok=(201, 202), params=params)

    def delete_db(self, name: str, *, missing_ok: bool = True) -> None:
        self._request("DELETE", _quote(name), ok=(200, 202, 404) if missing_ok else (200, 202))

    def put_doc(self, db: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update one document (`_rev` needed to update); returns {"ok", "id", "rev"}."""
        if "_id" in doc:
            return self._request("PUT", "%s/%s" % (_quote(db), _doc_path(str(doc["_id"]))), json=doc,
                                 ok=(201, 202))
        return self._request("POST", _quote(db), json=doc, ok=(201, 202))

    def get_doc(self, db: str, doc_id: str) -> dict[str, Any] | None:
        """The current revision of a document, or None when it is missing or deleted."""
        resp = self._send("GET", "%s/%s" % (_quote(db), _doc_path(doc_id)))
        if resp.status_code == 404:
            return None
        return _checked(resp, (200,))

    def delete_doc(self, db: str, doc_id: str) -> dict[str, Any]:
        """Delete the current revision of a document; returns {"ok", "id", "rev"} of the tombstone."""
        current = self.get_doc(db, doc_id)
        if current is None:
            raise CouchServerError("cannot delete %r in %r: no such document" % (doc_id, db))
        return self._request("DELETE", "%s/%s" % (_quote(db), _doc_path(doc_id)),
                             params={"rev": current["_rev"]}, ok=(200, 202))

    def bulk_docs(self, db: str, docs: Sequence[Mapping[str, Any]], **options: Any) -> list[dict[str, Any]]:
        """POST _bulk_docs (options such as new_edits=False go in the body); the per-document results."""
        body = {"docs": list(docs), **options}
        result = _checked_any(self._send("POST", "%s/_bulk_docs" % _quote(db), json=body), (201, 202))
        if not isinstance(result, list):
            raise CouchServerError("_bulk_docs answered %r" % (result,))
        return result

    def changes_all(self, db: str, *, include_docs: bool = True) -> dict[str, Any]:
        """The whole normal feed, {"results": [...], "last_seq": ...}, seqs as the server sent them."""
        params = {"feed": "normal", "style": "main_only", "include_docs": "true" if include_docs else "false"}
        return self._request("GET", "%s/_changes" % _quote(db), params=params, ok=(200,))

    def live_docs(self, db: str) -> dict[str, dict[str, Any]]:
        """Every non-deleted document by id, read from the feed (pouchdb's _all_docs skips ids >= U+0100)."""
        return {row["id"]: row["doc"] for row in self.changes_all(db)["results"] if not row.get("deleted")}

    def db_info(self, db: str) -> dict[str, Any]:
        return self._request("GET", _quote(db), ok=(200,))

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self._http.request(method, self.base_url + path, timeout=_TIMEOUT, auth=self.credentials,
                                  **kwargs)

    def _request(self, method: str, path: str, *, ok: tuple[int, ...], **kwargs: Any) -> dict[str, Any]:
        return _checked(self._send(method, path, **kwargs), ok)


@dataclass(frozen=True)
class CouchDatabase:
    """A database on a test server (what the `couch_db` fixture yields), with helpers bound to it."""

    server: CouchServer
    name: str

    @property
    def url(self) -> str:
        """The database URL (credentials included where needed), without a trailing slash."""
        return self.server.url + _quote(self.name)

    def create(self, *, partitioned: bool = False) -> None:
        self.server.create_db(self.name, partitioned=partitioned)

    def delete(self) -> None:
        self.server.delete_db(self.name)

    def bulk_docs(self, docs: Sequence[Mapping[str, Any]], **options: Any) -> list[dict[str, Any]]:
        return self.server.bulk_docs(self.name, docs, **options)

    def put_doc(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return self.server.put_doc(self.name, doc)

    def get_doc(self, doc_id: str) -> dict[str, Any] | None:
        return self.server.get_doc(self.name, doc_id)

    def delete_doc(self, doc_id: str) -> dict[str, Any]:
        return self.server.delete_doc(self.name, doc_id)

    def live_docs(self) -> dict[str, dict[str, Any]]:
        return self.server.live_docs(self.name)

    def changes_all(self, *, include_docs: bool = True) -> dict[str, Any]:
        return self.server.changes_all(self.name, include_docs=include_docs)

    def db_info(self) -> dict[str, Any]:
        return self.server.db_info(self.name)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _doc_path(doc_id: str) -> str:
    for prefix in ("_design/", "_local/"):
        if doc_id.startswith(prefix):
            return prefix + _quote(doc_id[len(prefix):])
    return _quote(doc_id)


def _checked_any(resp: requests.Response, ok: tuple[int, ...]) -> Any:
    if resp.status_code not in ok:
        raise CouchServerError("%s %s -> %d %s" % (resp.request.method, resp.url, resp.status_code,
                                                   resp.text[:500]))
    return resp.json() if resp.content else {}


def _checked(resp: requests.Response, ok: tuple[int, ...]) -> dict[str, Any]:
    body = _checked_any(resp, ok)
    if not isinstance(body, dict):
        raise CouchServerError("expected a JSON object from %s, got %r" % (resp.url, body))
    return body
