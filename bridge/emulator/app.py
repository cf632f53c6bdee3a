"""PANDA's request handling as one function from a parsed Request to a Response (no sockets, no sleeps).

Steps run in contract 2's order: URL match, method check, authentication, then the handler, which parses
the body, looks up the dataset, validates, checks the lock and writes (contracts 4-12).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from . import codec, rules
from .routes import ALLOWED_METHODS, Route, credentials, match_route, slash_redirect, wants_json
from .rules import CANNED_ERROR, LOCKED_TEXT, SERVER_ERROR, Refusal, Refused
from .state import Dataset, Store, User, dataset_uri

__all__ = ["Request", "Response", "PandaApp", "JSON_TYPE", "HTML_TYPE"]

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
_NO_CACHE = (("Cache-Control", "max-age=0,no-cache,no-store"),)
_SORRY = b'Sorry, not implemented yet. Please append "?format=json" to your URL.'
_DISAGREE = "Dataset specified in request body does not agree with dataset API endpoint used."
_HTML_404 = b"<h1>Not Found</h1><p>The requested URL was not found on this server.</p>"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the emulator's handler sees it."""

    method: str
    path: str
    """The raw (percent-encoded) path, without the query string."""
    raw_query: str
    query: Mapping[str, str]
    """Query parameters; the last value wins, as with Django's QueryDict.get."""
    headers: tuple[tuple[str, str], ...]
    content_type: str | None
    accept: str | None
    json: Any
    """The parsed body, when `json_ok`."""
    json_ok: bool
    host: str
    """The Host header, for absolute Location URLs."""


@dataclass(frozen=True, slots=True)
class Response:
    """What the emulator answers."""

    status: int
    body: bytes = b""
    content_type: str | None = HTML_TYPE
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, codec.dumps(value), JSON_TYPE, headers)


def _text(status: int, text: str = "") -> Response:
    return Response(status, text.encode("utf-8"), HTML_TYPE)


def refusal_response(refusal: Refusal) -> Response:
    """The HTTP answer of a Refusal: JSON or text/html (contract 2's table of error shapes)."""
    if refusal.json is not None:
        return _json(refusal.status, refusal.json)
    return _text(refusal.status, refusal.text)


class PandaApp:
    """The handler half of the emulator: a Store plus PANDA's rules."""

    def __init__(self, store: Store, *, strict_keys: bool = False, behind_nginx: bool = True) -> None:
        self.store = store
        self.strict_keys = strict_keys
        self.behind_nginx = behind_nginx

    def handle(self, req: Request) -> Response:
        """Answer one API request as PANDA would."""
        route = match_route(req.path)
        if route is None:
            if slash_redirect(req.path):  # contract 1: before authentication
                location = "http://%s%s/%s" % (
                    req.host,
                    req.path,
                    "?" + req.raw_query if req.raw_query else "",
                )
                return Response(301, b"", HTML_TYPE, (("Location", location),))
            return Response(404, _HTML_404, HTML_TYPE)
        allowed = ("GET",) if route.kind == "schema" else ALLOWED_METHODS
        if req.method not in allowed:  # contract 2, step 2
            status = 200 if req.method == "OPTIONS" else 405
            return Response(status, ",".join(allowed).encode(), HTML_TYPE, (("Allow", ",".join(allowed)),))
        email, api_key = credentials(req.headers, req.query, behind_nginx=self.behind_nginx)
        with self.store.mutex:
            user = self.store.authenticate(email, api_key, strict_keys=self.strict_keys)
            if user is None:
                return Response(401, b"", HTML_TYPE)  # contract 3: empty body, no WWW-Authenticate
            try:
                response = self._dispatch(req, route, user)
            except Refused as exc:
                response = refusal_response(exc.refusal)
        if response.content_type == JSON_TYPE and not wants_json(req.query, req.accept):
            return Response(response.status, _SORRY, HTML_TYPE, response.headers)  # contract 1
        return response

    def _dispatch(self, req: Request, route: Route, user: User) -> Response:
        kind, method = route.kind, req.method
        if kind == "schema":
            return _json(
                200, {"default_format": "application/json", "default_limit": 20, "fields": {}}, _NO_CACHE
            )
        if method == "POST" and kind in ("dataset", "data_detail"):
            return _text(501)  # contract 2: POST to a detail URL, after authentication
        if kind == "dataset_list":
            return self._dataset_list(req, user)
        if kind == "dataset":
            return self._dataset_detail(req, route.slug, user)
        if kind == "data_list":
            if method == "PUT":
                return self._put_bulk(req, route.slug, user)
            if method == "POST":
                return self._put_single(req, route.slug, None, user, created=True)
            ds = self._data_dataset(route.slug)
            return self._list_rows(req, ds) if method == "GET" else self._delete_all(ds, user)
        if method == "PUT":
            return self._put_single(req, route.slug, route.external_id, user, created=False)
        ds = self._data_dataset(route.slug)
        if method == "DELETE":
            return self._delete_row(ds, route.external_id, user)
        doc = self.store.get_row(ds, route.external_id)
        if doc is None:
            return _json(404, CANNED_ERROR)
        return _json(200, self.store.row_json(ds.slug, doc.external_id, doc.data), _NO_CACHE)

    # helpers

    @staticmethod
    def _body(req: Request) -> Any:
        """The parsed JSON body; 500 for a wrong Content-Type or invalid JSON (contracts 1, 2)."""
        if not rules.content_type_ok(req.content_type) or not req.json_ok:
            raise Refused(SERVER_ERROR)
        return req.json

    def _data_dataset(self, slug: str) -> Dataset:
        """The dataset of a data call: 404 canned JSON when unknown, 500 for a shared slug (contract 5)."""
        ds = self.store.datasets.get(slug)
        if ds is None:
            raise Refused(Refusal(404, json=CANNED_ERROR))
        if ds.copies > 1:
            raise Refused(SERVER_ERROR)
        return ds

    def _check_lock(self, ds: Dataset) -> None:
        if self.store.is_locked(ds):
            raise Refused(Refusal(403, text=LOCKED_TEXT))  # contract 10

    # datasets (contracts 4, 5, 13)

    def _dataset_list(self, req: Request, user: User) -> Response:
        store = self.store
        if req.method == "GET":
            # Tastypie's Paginator (D): `limit` defaults to API_LIMIT_PER_PAGE, 20; 0 means every dataset
            limit, offset = rules.parse_list_paging(req.query)
            every = list(store.datasets.values())
            chosen = every[offset:] if limit == 0 else every[offset : offset + limit]
            meta: dict[str, Any] = {"limit": limit, "offset": offset, "total_count": len(every),
                                    "previous": None, "next": None}
            if limit and offset + limit < len(every):
                meta["next"] = self._page_uri(req, limit, offset + limit)
            if limit and offset:
                meta["previous"] = self._page_uri(req, limit, max(0, offset - limit))
            objects = [store.dataset_json(ds) for ds in chosen]
            return _json(200, {"meta": meta, "objects": objects}, _NO_CACHE)
        if req.method in ("PUT", "DELETE"):
            # contract 13: PANDA would delete every dataset. Not emulated: recorded so tests can catch it.
            logger.warning("destructive %s on the dataset list received (not carried out)", req.method)
            return _text(202 if req.method == "PUT" else 204)
        body = self._body(req)
        if not isinstance(body, dict):
            raise Refused(SERVER_ERROR)
        if not body.get("name"):
            raise Refused(Refusal(400, json=rules.NAME_REQUIRED))
        slug = body.get("slug")
        if not slug:
            base = slug = rules.slugify(str(body["name"]))
            n = 1
            while slug in store.datasets:
                n += 1
                slug = "%s-%d" % (base, n)
        return self._create(req, str(slug), body, user)

    def _create(self, req: Request, slug: str, body: Mapping[str, Any], user: User) -> Response:
        ds = self.store.create_dataset(slug, str(body["name"]), None, user, str(body.get("description", "")))
        if ds.copies == 1:
            columns, error = rules.column_schema(req.query)
            if error is not None:
                return _text(400, error)  # the dataset stays, without columns (contract 5)
            ds.columns = columns
        location = "http://%s%s" % (req.host, dataset_uri(slug))
        return _json(201, self.store.dataset_json(ds), (("Location", location),) + _NO_CACHE)

    def _dataset_detail(self, req: Request, slug: str, user: User) -> Response:
        ds = self.store.datasets.get(slug)
        if req.method == "PUT":
            body = self._body(req)
            if not isinstance(body, dict):
                raise Refused(SERVER_ERROR)
            if not body.get("name"):
                raise Refused(Refusal(400, json=rules.NAME_REQUIRED))
            if ds is None or ds.copies > 1:
                return self._create(req, slug, body, user)
            # contract 5: the update path ignores every column parameter
            ds.name = str(body["name"])
            ds.description = str(body.get("description", ds.description))
            return _json(202, self.store.dataset_json(ds), _NO_CACHE)
        if ds is None:
            return _text(404)  # contract 4: empty text/html
        if req.method == "DELETE":
            self.store.delete_dataset(ds)  # ignores the lock (contract 10); rows purged at once here
            return _text(204)
        if ds.copies > 1:
            return _text(300, "More than one resource is found at this URI.")
        return _json(200, self.store.dataset_json(ds), _NO_CACHE)

    # data (contracts 6-12)

    def _put_bulk(self, req: Request, slug: str, user: User) -> Response:
        objects = rules.bulk_objects(self._body(req))
        ds = self._data_dataset(slug)
        refusal = rules.check_bulk_objects(objects, ds.columns)
        if refusal is not None:
            raise Refused(refusal)
        self._check_lock(ds)  # after validation: a bad batch gets 400 even when locked (contract 10)
        if rules.typing_fails(ds.columns, [obj["data"] for obj in objects]):
            raise Refused(SERVER_ERROR)
        rows = self.store.write_rows(ds, user, [(obj["data"], obj.get("external_id")) for obj in objects])
        return _json(202, {"objects": rows}, _NO_CACHE)

    def _put_single(
        self, req: Request, slug: str, url_id: str | None, user: User, *, created: bool
    ) -> Response:
        body = self._body(req)
        if not isinstance(body, dict):
            raise Refused(SERVER_ERROR)
        named = body.pop("dataset", None)
        if named:
            target = match_route(str(named))
            if target is None:
                return Response(404, _HTML_404, HTML_TYPE)
            if target.kind != "dataset":
                raise Refused(SERVER_ERROR)
            if target.slug != slug:
                raise Refused(
                    Refusal(
                        400,
                        text=_DISAGREE,
                    )
                )
        ds = self._data_dataset(slug)
        refusal = rules.check_single(body, ds.columns)
        if refusal is not None:
            raise Refused(refusal)
        external_id = rules.single_external_id(body, url_id)
        self._check_lock(ds)
        if rules.typing_fails(ds.columns, [body["data"]]):
            raise Refused(SERVER_ERROR)
        row = self.store.write_one(ds, user, body["data"], external_id)
        if not created:
            return _json(202, row, _NO_CACHE)  # PUT: always 202, even for a new row
        if row["resource_uri"] == "":
            raise Refused(SERVER_ERROR)  # written, then building Location fails (contract 6)
        location = "http://%s%s" % (req.host, row["resource_uri"] or dataset_uri(slug) + "data/None")
        return _json(201, row, (("Location", location),) + _NO_CACHE)

    def _delete_row(self, ds: Dataset, external_id: str, user: User) -> Response:
        self._check_lock(ds)
        if rules.delete_breaks_solr(external_id):
            raise Refused(SERVER_ERROR)  # contract 12 (D)
        self.store.delete_row(ds, user, external_id)
        return _text(204)

    def _delete_all(self, ds: Dataset, user: User) -> Response:
        self._check_lock(ds)
        if not self.store.delete_all(ds, user):
            raise Refused(SERVER_ERROR)  # contract 12: row_count was null; rows are gone anyway
        return _text(204)

    def _list_rows(self, req: Request, ds: Dataset) -> Response:
        limit, offset, meta_limit = rules.parse_paging(req.query)
        docs = self.store.find_rows(
            ds, req.query.get("q", ""), req.query.get("since"), req.query.get("sort", "") == "_docid_ desc"
        )
        page = docs[offset : offset + limit]
        meta: dict[str, Any] = {"limit": meta_limit, "offset": offset, "total_count": len(docs)}
        if meta_limit:
            meta["previous"] = (
                self._page_uri(req, meta_limit, offset - meta_limit) if offset - meta_limit >= 0 else None
            )
            meta["next"] = (
                self._page_uri(req, meta_limit, offset + meta_limit)
                if offset + meta_limit < len(docs)
                else None
            )
        out = self.store.dataset_json(ds, listing=True)
        out["meta"] = meta
        out["objects"] = [self.store.row_json(ds.slug, d.external_id, d.data) for d in page]
        return _json(200, out, _NO_CACHE)

    @staticmethod
    def _page_uri(req: Request, limit: int, offset: int) -> str:
        """Relative URL repeating every parameter, credentials included (contract 3)."""
        params = dict(req.query)
        params.update(limit=str(limit), offset=str(offset))
        return "%s?%s" % (req.path, urlencode(sorted(params.items())))
