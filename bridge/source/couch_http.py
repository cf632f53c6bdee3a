"""HTTP to one CouchDB database: the session, its timeouts, and what each answer means (status, body).

Every request goes through `CouchHttp.send`, which translates requests' exceptions into SourceUnavailable,
and `classify`, the one place a CouchDB status becomes a BridgeError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import requests

from bridge.config.settings import SourceSettings, scrub_url
from bridge.errors import AuthError, FeedInterrupted, NotFoundError, ProtocolError, SourceUnavailable
from bridge.ops.events import NO_EVENTS, SOURCE, Events
from bridge.sessions import pin_environment
from bridge.source.wide_reads import WideReadAdapter

__all__ = ["CouchHttp", "classify", "parse_json", "reason"]


def _split_credentials(url: str, username: str, password: str) -> tuple[str, tuple[str, str] | None]:
    parts = urlsplit(url)
    user = username or (parts.username or "")
    secret = password or (parts.password or "")
    return scrub_url(url).rstrip("/"), (user, secret) if user else None


class CouchHttp:
    """A session to one database with the source's timeouts and credentials (never in a logged URL)."""

    def __init__(self, settings: SourceSettings, session: requests.Session | None = None,
                 events: Events = NO_EVENTS) -> None:
        self.database = settings.database
        self._events = events
        self.server, auth = _split_credentials(settings.url, settings.username, settings.password)
        self.db_url = f"{self.server}/{quote(settings.database, safe='')}"
        owned = session is None
        if session is None:
            session = requests.Session()
            for prefix in ("http://", "https://"):
                session.mount(prefix, WideReadAdapter())  # fewer GIL hand-overs per page (wide_reads.py)
        self.session = session
        self.session.auth = auth
        if owned:
            pin_environment(session, self.server)  # proxies, CA bundle, netrc: once, not per request
        # identity: pouchdb-server stalls gzipped continuous feeds, and gzip costs every server CPU.
        self.session.headers.update({"Accept": "application/json", "Accept-Encoding": "identity"})
        self.timeout = (settings.connect_timeout, settings.effective_read_timeout)

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request with the source's timeouts; network failures become SourceUnavailable."""
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            self.failed()
            raise SourceUnavailable(f"CouchDB at {self.server} timed out") from None
        except requests.RequestException as exc:
            self.failed()
            raise SourceUnavailable(f"CouchDB at {self.server} unreachable: {type(exc).__name__}") from None
        self._events.request(SOURCE, response.status_code < 500 and response.status_code not in (412, 429))
        return response

    def failed(self) -> None:
        """Report a request that got no answer (or a body cut off) to the operating surface."""
        self._events.request(SOURCE, False)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        """GET a path under the database and parse the answer; raises the BridgeError a status means."""
        response = self.send("GET", f"{self.db_url}{path}", **kwargs)
        classify(response, self.database)
        return parse_json(response.content, f"GET {path or '/'}")

    def close(self) -> None:
        self.session.close()


def parse_json(body: bytes, what: str, *, interrupted: bool = False) -> Any:
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
    why = reason(response)
    if status in (401, 403):
        raise AuthError(f"CouchDB refused the credentials for database {database!r} ({status}: {why})",
                        status=status)
    if status == 404:
        raise NotFoundError(f"CouchDB: {database!r} not found ({why})", status=status)
    if status == 400:
        hint = " The saved seq is not valid here; run `bridge checkpoint reset`." if "seq" in why.lower() else ""
        raise ProtocolError(f"CouchDB rejected the request (400: {why}).{hint}", status=status)
    if status in (412, 429) or status >= 500:
        raise SourceUnavailable(f"CouchDB answered {status}: {why}", status=status)
    raise ProtocolError(f"CouchDB answered {status}: {why}", status=status)


def reason(response: requests.Response) -> str:
    """The `reason` (or `error`) of a CouchDB error body, or the start of whatever else it sent."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason or ""
    if isinstance(body, Mapping):
        return str(body.get("reason") or body.get("error") or body)[:200]
    return str(body)[:200]
