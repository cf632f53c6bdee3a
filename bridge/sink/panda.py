"""Applies upserts and deletes to one PANDA dataset and turns every HTTP outcome into a BridgeError.

Not thread-safe: a PandaSink belongs to one thread, so it never has two writes in flight (PANDA serves one
request at a time anyway, contract 16.12). Credentials travel only in PANDA-EMAIL/PANDA-API-KEY headers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import orjson
import requests

from bridge.config.settings import DEFAULT_MAX_REQUEST_BYTES, PandaSettings, RetrySettings
from bridge.errors import (
    ConfigError,
    NotFoundError,
    ProtocolError,
    RejectedError,
    SinkUnavailable,
)
from bridge.model import Delete, Refusal, Upsert
from bridge.ops.events import NO_EVENTS, PANDA, Events
from bridge.retry import call_with_retry
from bridge.sessions import pin_environment
from bridge.sink.panda_rows import (
    REQUEST_LINE_LIMIT,
    locally_bad,
    longest_id,
    refused_width,
    request_groups,
    too_long,
    undeletable,
)
from bridge.sink.panda_status import classify, snippet

__all__ = ["PandaSink", "MAX_SERVER_ERRORS", "REQUEST_LINE_LIMIT", "LIST_LIMIT"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_SERVER_ERRORS = 3
"""Attempts a request gets while PANDA answers 500, which is often the client's fault (contract 16.7)."""

LIST_LIMIT = 1000
"""The most rows a listing page asks for: PANDA caps meta.limit there (contract 11)."""

_LIST_PAGE = 100
_MAX_LIST_PAGES = 10_000

_Encoded = tuple[Upsert, bytes]
"""A row and its JSON object, serialised once for every request it may go in."""

_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class PandaSink:
    """One PANDA dataset reached over one keep-alive requests.Session, with retries for transient faults."""

    def __init__(
        self,
        settings: PandaSettings,
        *,
        retry: RetrySettings,
        stop: threading.Event,
        session: requests.Session | None = None,
        width: int | None = None,
        events: Events = NO_EVENTS,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        """The settings are validated already (PandaSettings). `width` is the cells per row of the
        configured mapping (ensure_dataset checks it against the dataset); a refusal that expects another
        count then means the dataset changed under the bridge. No bulk PUT body exceeds
        `max_request_bytes`, except one holding a single row that is bigger by itself."""
        base = settings.url.rstrip("/")
        if base.endswith("/api/1.0"):
            base = base[: -len("/api/1.0")]
        self.slug = settings.dataset
        self._dataset_url = "%s/api/1.0/dataset/%s/" % (base, quote(settings.dataset, safe=""))
        self._headers = {
            "PANDA-EMAIL": settings.email,  # hyphens: nginx drops '_' names (contract 3)
            "PANDA-API-KEY": settings.api_key,
            "Accept": "application/json",
        }
        self._timeout = settings.timeout
        self.retry = retry
        """How transient faults are retried; the start-up checks switch it for a few quick tries."""
        self._stop = stop
        self._owns_session = session is None
        self._session = session if session is not None else pin_environment(requests.Session(), base)
        self._width: int | None = width
        self._events = events
        self.max_request_bytes = max_request_bytes
        self.max_id_length = longest_id(urlsplit(self._dataset_url).path)
        """The longest external_id this dataset's rows may have: a longer one could never be deleted."""

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
        began = time.perf_counter()
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
            self._events.request(PANDA, False, method, time.perf_counter() - began)
            raise SinkUnavailable(
                "PANDA %s %s failed: %s" % (method, urlsplit(url).path, type(exc).__name__)
            ) from exc
        except requests.RequestException as exc:
            self._events.request(PANDA, False, method, time.perf_counter() - began)
            raise ProtocolError("PANDA %s %s failed: %s" % (method, urlsplit(url).path, exc)) from exc
        seconds = time.perf_counter() - began
        try:
            classify(response, data_endpoint=data_endpoint)
        except SinkUnavailable:  # 5xx, 429, locked: PANDA is not accepting writes now
            self._events.request(PANDA, False, method, seconds)
            raise
        self._events.request(PANDA, True, method, seconds)
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

        return call_with_retry(attempt, policy=self.retry, stop=self._stop, what=what, on_retry=self._events.retried)

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        try:
            value = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(
                "PANDA sent a non-JSON body (%d): %s" % (response.status_code, snippet(response))
            ) from exc
        if not isinstance(value, dict):
            raise ProtocolError("PANDA sent JSON that is not an object: %s" % snippet(response))
        return value

    # datasets

    def dataset_info(self) -> dict[str, Any]:
        """The dataset object (row_count, column_schema, locked...); NotFoundError when it does not exist."""
        return self._retrying(
            lambda: self._json(self._once("GET", self._dataset_url, data_endpoint=False)), "PANDA GET dataset"
        )

    def dataset_slugs(self) -> list[str]:
        """The slugs of every dataset this user can see, page by page (contract 4's list, Tastypie paging).

        Raises what dataset_info raises, and ProtocolError for a listing without `objects`.
        """
        listing = self._dataset_url.rsplit("/", 2)[0] + "/"
        slugs: list[str] = []
        for _page in range(_MAX_LIST_PAGES):  # bounded: a PANDA holds far fewer datasets
            params = {"limit": str(_LIST_PAGE), "offset": str(len(slugs))}
            body = self._retrying(
                partial(self._listing_page, listing, params), "PANDA GET datasets"
            )
            objects = body.get("objects")
            if not isinstance(objects, list) or not all(
                isinstance(obj, dict) and isinstance(obj.get("slug"), str) for obj in objects
            ):
                raise ProtocolError("PANDA listed datasets without an objects list of datasets with slugs")
            slugs += [obj["slug"] for obj in objects]
            meta = body.get("meta")
            if not objects or (isinstance(meta, dict) and meta.get("next") is None):
                break  # counting what came, not what was asked: a server may cap `limit`
        return slugs

    def _listing_page(self, url: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self._json(self._once("GET", url, data_endpoint=False, params=params))

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

    def upsert(self, rows: Sequence[Upsert]) -> list[Refusal]:
        """Create or replace rows with bulk PUTs (contract 16.6); return the rows PANDA refused.

        Rows go in bulk PUTs of at most `max_request_bytes` each (a row bigger than that alone in its own).
        One bad object makes PANDA refuse the whole batch (contract 6), so on a 400 the refused rows are
        isolated (likely culprits are sent alone, the rest together; bisection when none is evident) and
        every good row is delivered. A row whose external_id is too long to DELETE later is refused unsent.
        Raises FatalError subclasses, StopRequested, or the last TransientError.
        """
        rejections: list[Refusal] = []
        sendable: list[_Encoded] = []
        for row in rows:
            problem = too_long(row.external_id, self.max_id_length)
            if problem is None:
                # orjson writes a tuple as a JSON array: no per-row copy into a list
                sendable.append((row, orjson.dumps({"external_id": row.external_id, "data": row.data})))
                continue
            logger.warning("not writing PANDA row %s...: %s", row.external_id[:40], problem)
            rejections.append(Refusal.of(row, problem))
        for request in request_groups(sendable, self.max_request_bytes):
            self._deliver(request, rejections)
        return rejections

    def _put_rows(self, rows: Sequence[_Encoded]) -> str | None:
        """PUT rows once (with retries); None when accepted, else PANDA's 400 body."""
        body = b"".join((b'{"objects":[', b",".join([encoded for _row, encoded in rows]), b"]}"))
        url = self._dataset_url + "data/"
        try:
            self._retrying(lambda: self._once("PUT", url, data_endpoint=True, body=body), "PANDA PUT data")
        except RejectedError as exc:
            return exc.message
        logger.debug("PANDA accepted %d rows (%d bytes)", len(rows), len(body))
        return None

    def _deliver(self, rows: list[_Encoded], rejections: list[Refusal]) -> None:
        refusal = self._put_rows(rows)
        if refusal is None:
            return
        width = refused_width(refusal, self._width, self.slug)
        if len(rows) == 1:
            logger.warning("PANDA refused row %s: %s", rows[0][0].external_id, refusal)
            rejections.append(Refusal.of(rows[0][0], refusal, status=400))
            return
        suspects = [r for r in rows if locally_bad(r[0], width)]
        if suspects and len(suspects) < len(rows):
            self._deliver([r for r in rows if not locally_bad(r[0], width)], rejections)
        if suspects:
            for row in suspects:
                self._deliver([row], rejections)
            return
        middle = len(rows) // 2  # nothing evident: bisect
        self._deliver(rows[:middle], rejections)
        self._deliver(rows[middle:], rejections)

    def delete(self, rows: Sequence[Delete]) -> list[Refusal]:
        """Delete rows, one DELETE each (there is no bulk delete, contract 12); a missing row is success.

        Ids PANDA cannot delete (not URL-safe, a leading '-', AND/OR/NOT) are returned as rejections unsent.
        Raises NotFoundError when the dataset is gone, other FatalErrors, StopRequested or a TransientError.
        """
        rejections: list[Refusal] = []
        for op in rows:
            problem = undeletable(op.external_id) or too_long(op.external_id, self.max_id_length)
            if problem is not None:
                logger.warning("cannot delete PANDA row %r: %s", op.external_id[:200], problem)
                rejections.append(Refusal.of(op, problem))
                continue
            url = "%sdata/%s/" % (self._dataset_url, quote(op.external_id, safe=""))
            try:
                self._retrying(partial(self._once, "DELETE", url, data_endpoint=True), "PANDA DELETE row")
            except RejectedError as exc:
                if exc.status == 414:  # this id's fault, not PANDA's: dead-letter it and go on
                    logger.warning("cannot delete PANDA row %r: %s", op.external_id[:200], exc.message)
                    rejections.append(Refusal.of(op, exc.message, status=414))
                    continue
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
        no such row. An id PANDA cannot address (not URL-safe, or one its query parser may answer with another
        row, contracts 1 and 17.4) raises ValueError: it cannot be read by id."""
        problem = undeletable(external_id)
        if problem is not None:
            raise ValueError("external_id %r cannot be read by id: %s" % (external_id, problem))
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
