"""Applies upserts and deletes to one PANDA dataset and turns every HTTP outcome into a BridgeError.

Not thread-safe: a PandaSink belongs to one thread, so it never has two writes in flight (PANDA serves one
request at a time anyway, contract 16.12). Credentials travel only in PANDA-EMAIL/PANDA-API-KEY headers.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import orjson
import requests

from bridge.errors import (
    AuthError,
    ConfigError,
    DatasetLocked,
    NotFoundError,
    ProtocolError,
    RejectedError,
    SinkUnavailable,
)
from bridge.model import Delete, Rejection, Upsert
from bridge.retry import RetryPolicy, call_with_retry

__all__ = ["PandaSink", "classify", "MAX_SERVER_ERRORS", "LIST_LIMIT"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_SERVER_ERRORS = 3
"""Attempts a request gets while PANDA answers 500, which is often the client's fault (contract 16.7)."""

LIST_LIMIT = 1000
"""The most rows a listing page asks for: PANDA caps meta.limit there (contract 11)."""

_SLUG = re.compile(r"[\w-]+")
_BULK_ID = re.compile(r"^[\w\d_-]+$", re.ASCII)  # contract 7, Python 2 semantics ($ allows a final "\n")
_URL_ID = re.compile(r"[\w\d_-]+")  # contract 1: what a URL segment may hold
_COUNT = re.compile(r"Got \d+ data fields\. Expected (\d+)\.")  # contract 8
_TRANSIENT = (429, 502, 503, 504)
_UNKNOWN_OUTCOME = (502, 504)  # contract 14: the write may have completed; retrying is safe (idempotent)
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _snippet(response: requests.Response, limit: int = 300) -> str:
    text = response.content.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def classify(response: requests.Response, *, data_endpoint: bool) -> None:
    """Return for a 2xx answer, else raise the BridgeError its status means (contract 16.7).

    400 -> RejectedError (the batch's fault; its message is PANDA's body), 401 -> AuthError,
    403 -> DatasetLocked on a data endpoint (AuthError elsewhere), 404 -> NotFoundError,
    429/502/503/504 and other 5xx -> SinkUnavailable, 500 -> SinkUnavailable with status 500 (the caller
    caps its retries), 3xx and any other 4xx or 501 -> ProtocolError.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    where = "%s %s" % (response.request.method, urlsplit(response.url).path)
    if status == 400:
        raise RejectedError(response.content.decode("utf-8", "replace"), status=400)
    if status == 401:
        raise AuthError(
            "PANDA refused the credentials (401) for %s: unknown or inactive user" % where, status=401
        )
    if status == 403:
        if data_endpoint:  # contract 10: no throttling is configured, so 403 on data means locked
            raise DatasetLocked(
                "PANDA dataset locked (403) on %s: %s" % (where, _snippet(response)), status=403
            )
        raise AuthError("PANDA refused %s (403): %s" % (where, _snippet(response)), status=403)
    if status == 404:
        raise NotFoundError("PANDA answered 404 for %s: the dataset does not exist" % where, status=404)
    if status in _TRANSIENT or (status >= 500 and status not in (500, 501, 505)):
        note = " (outcome unknown; retrying is safe)" if status in _UNKNOWN_OUTCOME else ""
        raise SinkUnavailable("PANDA answered %d for %s%s" % (status, where, note), status=status)
    if status == 500:
        raise SinkUnavailable("PANDA answered 500 for %s: %s" % (where, _snippet(response)), status=500)
    if status == 300:  # contract 5: a POST reused the slug
        raise ProtocolError("PANDA answered 300 for %s: several datasets share this slug" % where, status=300)
    if 300 <= status < 400:  # contract 1: only a missing trailing slash redirects; our URLs all end in /
        location = response.headers.get("Location", "")
        raise ProtocolError("PANDA redirected %s (%d) to %s" % (where, status, location), status=status)
    raise ProtocolError("PANDA answered %d for %s: %s" % (status, where, _snippet(response)), status=status)


def _header_safe(name: str, value: str) -> str:
    if not value or value != value.strip() or not value.isascii() or not value.isprintable():
        raise ConfigError("PANDA %s must be non-empty printable ASCII without surrounding spaces" % name)
    return value


class PandaSink:
    """One PANDA dataset reached over one keep-alive requests.Session, with retries for transient faults."""

    def __init__(
        self,
        url: str,
        email: str,
        api_key: str,
        dataset: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy,
        stop: threading.Event,
        session: requests.Session | None = None,
        width: int | None = None,
    ) -> None:
        """`width` is the cells per row of the configured mapping (ensure_dataset checks it against the
        dataset); a refusal that expects another count then means the dataset changed under the bridge."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError("PANDA URL must be http(s)://host[:port][/prefix], got %r" % url)
        if parts.username or parts.password:
            raise ConfigError("PANDA URL must not hold credentials; use the email and API key settings")
        base = url.rstrip("/")
        if base.endswith("/api/1.0"):
            base = base[: -len("/api/1.0")]
        # contract 16.10: never build /api/1.0/dataset/ without a slug; "schema" is Tastypie's (contract 1)
        if not dataset or not _SLUG.fullmatch(dataset) or dataset == "schema":
            raise ConfigError(
                "PANDA dataset slug must be letters, digits, '_' or '-' (and not 'schema'): %r" % dataset
            )
        if timeout <= 0:
            raise ConfigError("PANDA timeout must be positive")
        self.slug = dataset
        self._dataset_url = "%s/api/1.0/dataset/%s/" % (base, quote(dataset, safe=""))
        self._headers = {
            "PANDA-EMAIL": _header_safe("email", email),  # hyphens: nginx drops '_' names (contract 3)
            "PANDA-API-KEY": _header_safe("API key", api_key),
            "Accept": "application/json",
        }
        self._timeout = timeout
        self._retry = retry
        self._stop = stop
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._width: int | None = width

    # plumbing

    def _once(
        self,
        method: str,
        url: str,
        *,
        data_endpoint: bool,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> requests.Response:
        headers = self._headers if body is None else {**self._headers, "Content-Type": "application/json"}
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except _NETWORK_ERRORS as exc:
            raise SinkUnavailable(
                "PANDA %s %s failed: %s" % (method, urlsplit(url).path, type(exc).__name__)
            ) from exc
        except requests.RequestException as exc:
            raise ProtocolError("PANDA %s %s failed: %s" % (method, urlsplit(url).path, exc)) from exc
        classify(response, data_endpoint=data_endpoint)
        return response

    def _retrying(self, fn: Callable[[], T], what: str) -> T:
        """call_with_retry, except that a 500 is retried only MAX_SERVER_ERRORS times (contract 16.7)."""
        server_errors = 0

        def attempt() -> T:
            nonlocal server_errors
            try:
                return fn()
            except SinkUnavailable as exc:
                if exc.status == 500:
                    server_errors += 1
                    if server_errors >= MAX_SERVER_ERRORS:
                        raise ProtocolError(
                            "%s; gave up after %d tries (a 500 is often the request's fault)"
                            % (exc, server_errors),
                            status=500,
                        ) from exc
                raise

        return call_with_retry(attempt, policy=self._retry, stop=self._stop, what=what)

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            value = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(
                "PANDA sent a non-JSON body (%d): %s" % (response.status_code, _snippet(response))
            ) from exc
        if not isinstance(value, dict):
            raise ProtocolError("PANDA sent JSON that is not an object: %s" % _snippet(response))
        return value

    # datasets

    def dataset_info(self) -> dict[str, Any]:
        """The dataset object (row_count, column_schema, locked...); NotFoundError when it does not exist."""
        return self._retrying(
            lambda: self._json(self._once("GET", self._dataset_url, data_endpoint=False)), "PANDA GET dataset"
        )

    def ensure_dataset(self, columns: Sequence[str], *, create: bool, name: str | None = None) -> None:
        """Check that the dataset exists with exactly these columns, creating it first when `create`.

        GET first and PUT ?columns= only on 404, so an existing dataset is never PUT (contract 13).
        Raises NotFoundError (missing and not `create`), ConfigError (column_schema null or different),
        AuthError.
        """
        wanted = list(columns)
        if not wanted or any(not isinstance(c, str) or not c or "," in c for c in wanted):
            raise ConfigError("PANDA columns must be non-empty names without commas: %r" % (wanted,))

        def attempt() -> dict[str, Any]:
            try:
                return self._json(self._once("GET", self._dataset_url, data_endpoint=False))
            except NotFoundError:
                if not create:
                    raise NotFoundError(
                        "PANDA dataset %r does not exist and creating it is off" % self.slug
                    ) from None
            body = orjson.dumps({"name": name or self.slug})
            self._once(
                "PUT", self._dataset_url, data_endpoint=False, params={"columns": ",".join(wanted)}, body=body
            )
            logger.info("created PANDA dataset %s with %d columns", self.slug, len(wanted))
            # verify what PANDA stored: a 400 over columns leaves a dataset without any (contract 5)
            return self._json(self._once("GET", self._dataset_url, data_endpoint=False))

        try:
            info = self._retrying(attempt, "PANDA ensure dataset")
        except RejectedError as exc:
            raise ConfigError(
                "PANDA refused to create dataset %r: %s" % (self.slug, exc.message), status=400
            ) from exc
        schema = info.get("column_schema")
        if schema is None:
            raise ConfigError(
                "PANDA dataset %r has no columns (column_schema null; delete it and create it again); "
                "configured: %s" % (self.slug, wanted)
            )
        have = [c.get("name") if isinstance(c, dict) else c for c in schema]
        if have != wanted:  # contract 16.4: columns are fixed at creation, so this cannot be repaired here
            raise ConfigError(
                "PANDA dataset %r has columns %s but the bridge is configured with %s"
                % (self.slug, have, wanted)
            )
        self._width = len(wanted)

    # rows

    def upsert(self, rows: Sequence[Upsert]) -> list[Rejection]:
        """Create or replace rows with bulk PUTs (contract 16.6); return the rows PANDA refused.

        One bad object makes PANDA refuse the whole batch (contract 6), so on a 400 the refused rows are
        isolated (likely culprits are sent alone, the rest together; bisection when none is evident) and
        every good row is delivered. Raises FatalError subclasses, StopRequested, or the last TransientError.
        """
        rejections: list[Rejection] = []
        if rows:
            self._deliver(list(rows), rejections)
        return rejections

    def _put_rows(self, rows: Sequence[Upsert]) -> str | None:
        """PUT rows once (with retries); None when accepted, else PANDA's 400 body."""
        # orjson writes a tuple as a JSON array: no per-row copy into a list
        body = orjson.dumps({"objects": [{"external_id": r.external_id, "data": r.data} for r in rows]})
        url = self._dataset_url + "data/"
        try:
            self._retrying(lambda: self._once("PUT", url, data_endpoint=True, body=body), "PANDA PUT data")
        except RejectedError as exc:
            return exc.message
        logger.debug("PANDA accepted %d rows", len(rows))
        return None

    def _deliver(self, rows: list[Upsert], rejections: list[Rejection]) -> None:
        refusal = self._put_rows(rows)
        if refusal is None:
            return
        width = self._refusal_width(refusal)
        if len(rows) == 1:
            logger.warning("PANDA refused row %s: %s", rows[0].external_id, refusal)
            rejections.append(Rejection(rows[0], reason=refusal, status=400))
            return
        suspects = [r for r in rows if _locally_bad(r, width)]
        if suspects and len(suspects) < len(rows):
            self._deliver([r for r in rows if not _locally_bad(r, width)], rejections)
        if suspects:
            for row in suspects:
                self._deliver([row], rejections)
            return
        middle = len(rows) // 2  # nothing evident: bisect
        self._deliver(rows[:middle], rejections)
        self._deliver(rows[middle:], rejections)

    def _refusal_width(self, refusal: str) -> int | None:
        """The column count a row-level 400 implies; raises for a 400 not about rows (contracts 6, 8)."""
        try:
            body = orjson.loads(refusal)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict) and "dataset" in body:
            raise ConfigError(
                "PANDA refuses every write to dataset %r: %s" % (self.slug, refusal), status=400
            )
        if not isinstance(body, dict) or "data" not in body:  # e.g. "Invalid data sent." or an nginx 400
            raise ProtocolError(
                "PANDA refused a bulk write with an unexpected 400: %s" % refusal[:300], status=400
            )
        found = _COUNT.search(refusal)
        if found is None:
            return self._width
        width = int(found.group(1))
        if self._width is not None and width != self._width:
            # Every row the bridge builds has the width checked at start: dead-lettering them all would
            # empty the feed into the dead-letter file, so stop and let the operator fix the dataset.
            raise ConfigError(
                "PANDA dataset %r now expects %d cells per row, not the %d columns it had when the bridge "
                "started: it was changed or recreated. Recreate it with the configured columns, run `bridge "
                "checkpoint reset` (its rows must be sent again), then start again" % (self.slug, width, self._width),
                status=400,
            )
        return width

    def delete(self, rows: Sequence[Delete]) -> list[Rejection]:
        """Delete rows, one DELETE each (there is no bulk delete, contract 12); a missing row is success.

        Ids PANDA cannot delete (not URL-safe, a leading '-', AND/OR/NOT) are returned as rejections unsent.
        Raises NotFoundError when the dataset is gone, other FatalErrors, StopRequested or a TransientError.
        """
        rejections: list[Rejection] = []
        for op in rows:
            problem = _undeletable(op.external_id)
            if problem is not None:
                logger.warning("cannot delete PANDA row %r: %s", op.external_id, problem)
                rejections.append(Rejection(op, reason=problem))
                continue
            url = "%sdata/%s/" % (self._dataset_url, quote(op.external_id, safe=""))
            try:
                self._retrying(partial(self._once, "DELETE", url, data_endpoint=True), "PANDA DELETE row")
            except RejectedError as exc:
                raise ProtocolError(
                    "PANDA answered 400 to a DELETE: %s" % exc.message[:300], status=400
                ) from exc
        return rejections

    # reading, for verification (contract 11)

    def list_page(self, offset: int, limit: int = LIST_LIMIT) -> tuple[list[tuple[str, Any]], int]:
        """One page of the dataset's rows, newest first, as (external_id, data) pairs, and the total count.

        Built so the listing pitfalls of contract 11 cannot invent differences: `limit` is always sent (at
        most 1000, where meta.limit is capped); `q=*:*` keeps Solr out of edismax's fallback that may mix in
        other datasets' rows, and rows naming another dataset or no external_id are dropped anyway;
        `sort=_docid_ desc` puts a row updated while the listing runs at the front, so rows not yet read
        shift back (read twice, which a caller deduplicates) instead of forward (skipped). A row that is
        still skipped (a delete meanwhile) is found again by `get_row` when the caller rechecks.
        """
        if not 0 < limit <= LIST_LIMIT or offset < 0:
            raise ValueError("limit must be 1..%d and offset non-negative" % LIST_LIMIT)
        params = {"limit": str(limit), "offset": str(offset), "q": "*:*", "sort": "_docid_ desc"}
        url = self._dataset_url + "data/"
        body = self._retrying(
            lambda: self._json(self._once("GET", url, data_endpoint=True, params=params)), "PANDA GET data"
        )
        objects, meta = body.get("objects"), body.get("meta")
        if not isinstance(objects, list) or not isinstance(meta, dict):
            raise ProtocolError("PANDA listed rows without objects and meta")
        total = meta.get("total_count")
        own = "/dataset/%s/" % self.slug
        rows = [
            (obj["external_id"], obj.get("data"))
            for obj in objects
            if isinstance(obj, dict) and isinstance(obj.get("external_id"), str)
            and str(obj.get("dataset") or own).endswith(own)
        ]
        return rows, total if isinstance(total, int) else 0

    def get_row(self, external_id: str) -> Any | None:
        """The `data` of one row read by id (the trustworthy read, contract 16.11), or None when PANDA has
        no such row. An id that cannot appear in a URL raises ValueError: it cannot be read by id."""
        if not _URL_ID.fullmatch(external_id):
            raise ValueError("external_id %r cannot appear in a PANDA URL" % external_id)
        url = "%sdata/%s/" % (self._dataset_url, quote(external_id, safe=""))

        def attempt() -> Any | None:
            try:
                body = self._json(self._once("GET", url, data_endpoint=True))
            except NotFoundError:
                return None  # contract 11: an unknown row is a 404; the dataset was checked before
            return body.get("data")

        return self._retrying(attempt, "PANDA GET row")

    def close(self) -> None:
        """Close the session if this sink created it."""
        if self._owns_session:
            self._session.close()


def _locally_bad(row: Upsert, width: int | None) -> bool:
    """True when PANDA's bulk checks (contracts 6-8) must refuse this row."""
    if not row.data or not _BULK_ID.match(row.external_id):
        return True
    return width is not None and len(row.data) != width


def _undeletable(external_id: str) -> str | None:
    if not _URL_ID.fullmatch(external_id):
        return "external_id cannot appear in a PANDA URL, so it cannot be deleted (contract 1)"
    if external_id.startswith("-") or external_id in ("AND", "OR", "NOT"):
        return "PANDA answers 500 to deleting this external_id (Solr query syntax, contract 12)"
    return None
