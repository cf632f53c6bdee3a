"""The emulator's in-memory PANDA: users, datasets and Solr-like row documents, with injected clocks.

Callers hold `Store.mutex` around every read-modify-write; the store itself never sleeps or blocks.
"""

from __future__ import annotations

import copy
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .rules import url_segment_ok

__all__ = ["User", "Dataset", "Doc", "Store", "dataset_uri", "row_uri"]

_WORD = re.compile(r"\w+")


def dataset_uri(slug: str) -> str:
    """The dataset's resource_uri (contract 4)."""
    return "/api/1.0/dataset/%s/" % slug


def row_uri(slug: str, external_id: str | None) -> str | None:
    """A row's resource_uri: null without an id, "" when the id cannot appear in a URL (contract 6)."""
    if not external_id:
        return None
    if not url_segment_ok(external_id):
        return ""
    return "%sdata/%s/" % (dataset_uri(slug), external_id)


@dataclass
class User:
    """A PANDA user who may call the API."""

    email: str
    api_key: str
    active: bool
    id: int
    date_joined: str

    def as_json(self) -> dict[str, Any]:
        return {
            "date_joined": self.date_joined,
            "email": self.email,
            "first_name": "",
            "id": str(self.id),
            "is_active": self.active,
            "last_login": self.date_joined,
            "last_name": "",
            "resource_uri": "/api/1.0/user/%d/" % self.id,
        }


@dataclass
class Doc:
    """One Solr document: keyed "<slug>-<external_id>", so it can move between datasets (contract 7)."""

    dataset_slug: str
    external_id: str | None
    data: Any
    last_modified: str


@dataclass
class Dataset:
    """A dataset and the ordered Solr ids of its rows (insertion order; an update moves a row to the end)."""

    slug: str
    name: str
    description: str
    id: int
    columns: list[dict[str, Any]] | None
    creator: User
    creation_date: str
    row_count: int | None = None
    locked_until: float | None = None
    locked_at: str | None = None
    last_modified: str | None = None
    last_modification: str | None = None
    last_modified_by: User | None = None
    sample_data: list[dict[str, Any]] | None = None
    copies: int = 1  # >1 after a POST reused the slug (contract 5): GET 300, data calls 500
    doc_ids: dict[str, None] = field(default_factory=dict)


class Store:
    """Users, datasets and documents of one emulated PANDA."""

    def __init__(
        self, *, monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ):
        self.mutex = threading.RLock()
        self._monotonic = monotonic
        self._wall = wall
        self.users: dict[str, User] = {}
        self.datasets: dict[str, Dataset] = {}
        self.docs: dict[str, Doc] = {}
        self._next_id = 1

    def now(self) -> str:
        """UTC time as PANDA prints it: no zone, no fraction (contract 1)."""
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self._wall()))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def clear_data(self) -> None:
        """Drop every dataset and document; users stay."""
        self.datasets.clear()
        self.docs.clear()

    def add_user(self, email: str, api_key: str, active: bool = True) -> User:
        user = User(email.lower(), api_key, active, self._new_id(), self.now())
        self.users[user.email] = user
        return user

    def authenticate(self, email: str, api_key: str, *, strict_keys: bool) -> User | None:
        """The user these credentials name; any non-empty key passes unless `strict_keys` (contract 3)."""
        user = self.users.get(email)
        if not email or not api_key or user is None or not user.active:
            return None
        if strict_keys and api_key != user.api_key:
            return None
        return user

    def create_dataset(
        self, slug: str, name: str, columns: list[dict[str, Any]] | None, creator: User, description: str = ""
    ) -> Dataset:
        existing = self.datasets.get(slug)
        if existing is not None:
            existing.copies += 1
            return existing
        ds = Dataset(slug, name, description, self._new_id(), columns, creator, self.now())
        self.datasets[slug] = ds
        return ds

    def delete_dataset(self, ds: Dataset) -> None:
        for solr_id in ds.doc_ids:
            self.docs.pop(solr_id, None)
        del self.datasets[ds.slug]

    def is_locked(self, ds: Dataset) -> bool:
        return ds.locked_until is not None and self._monotonic() < ds.locked_until

    def lock(self, ds: Dataset, seconds: float | None) -> None:
        ds.locked_until = math.inf if seconds is None else self._monotonic() + seconds
        ds.locked_at = self.now()

    def unlock(self, ds: Dataset) -> None:
        ds.locked_until = None  # locked_at is kept (contract 10)

    def _touch(self, ds: Dataset, user: User, message: str) -> None:
        ds.row_count = len(ds.doc_ids)  # recounted after every write (contract 4)
        ds.last_modified = self.now()
        ds.last_modification = message
        ds.last_modified_by = user

    def _put(self, ds: Dataset, data: Any, external_id: str | None, now: str, uri: str) -> dict[str, Any]:
        """Store one row stamped `now` (one stamp per request: PANDA's clock has whole seconds anyway);
        `uri` is the dataset's resource_uri."""
        solr_id = "%s-%s" % (ds.slug, external_id) if external_id else str(uuid.uuid4())
        old = self.docs.pop(solr_id, None)
        if old is not None:
            owner = self.datasets.get(old.dataset_slug)
            if owner is not None:
                owner.doc_ids.pop(solr_id, None)
        self.docs[solr_id] = Doc(ds.slug, external_id, data, now)
        ds.doc_ids[solr_id] = None
        row = self.row_json(ds.slug, external_id, data, uri)
        if ds.sample_data is None:
            ds.sample_data = []
        if len(ds.sample_data) < 5:
            ds.sample_data.append(row)
        return row

    def write_rows(
        self, ds: Dataset, user: User, items: Sequence[tuple[Any, str | None]]
    ) -> list[dict[str, Any]]:
        """Store rows in order (the last of a repeated id wins) and return their row objects (contract 6)."""
        before = ds.row_count or 0
        now, uri = self.now(), dataset_uri(ds.slug)
        out = [self._put(ds, data, external_id, now, uri) for data, external_id in items]
        added = max(len(ds.doc_ids) - before, 0)
        updated = len(items) - added
        if added and updated:
            message = "%d rows added and %d updated" % (added, updated)
        elif added:
            message = "%d rows added" % added
        else:
            message = "%d rows updated" % updated
        self._touch(ds, user, message)
        return out

    def write_one(self, ds: Dataset, user: User, data: Any, external_id: str | None) -> dict[str, Any]:
        before = len(ds.doc_ids)
        row = self._put(ds, data, external_id, self.now(), dataset_uri(ds.slug))
        self._touch(ds, user, "1 row added" if len(ds.doc_ids) > before else "1 row updated")
        return row

    def delete_row(self, ds: Dataset, user: User, external_id: str) -> None:
        solr_id = "%s-%s" % (ds.slug, external_id)
        doc = self.docs.get(solr_id)
        if doc is not None and doc.dataset_slug == ds.slug:
            del self.docs[solr_id]
            ds.doc_ids.pop(solr_id, None)
        self._touch(ds, user, "1 row deleted")  # even when nothing was there (contract 12)

    def delete_all(self, ds: Dataset, user: User) -> bool:
        """Delete every row; False when PANDA then crashes because row_count was null (contract 12)."""
        for solr_id in ds.doc_ids:
            self.docs.pop(solr_id, None)
        count = len(ds.doc_ids)
        ds.doc_ids.clear()
        if ds.row_count is None:
            return False
        self._touch(ds, user, "All %d rows deleted" % count)
        return True

    def get_row(self, ds: Dataset, external_id: str) -> Doc | None:
        doc = self.docs.get("%s-%s" % (ds.slug, external_id))
        return doc if doc is not None and doc.dataset_slug == ds.slug else None

    def find_rows(self, ds: Dataset, q: str, since: str | None, descending: bool) -> list[Doc]:
        """Rows in index order, filtered by full-text terms (OR) and `since` (contract 11)."""
        docs = [self.docs[i] for i in ds.doc_ids]
        terms = {t.lower() for t in q.split()} - {"*:*"}
        if terms:
            docs = [d for d in docs if terms & set(_WORD.findall(_text(d.data).lower()))]
        if since:
            docs = [d for d in docs if d.last_modified >= since]
        return docs[::-1] if descending else docs

    def rows(self, slug: str) -> dict[str, Any]:
        """external_id -> data of one dataset, deep-copied; rows without an id are left out."""
        ds = self.datasets[slug]
        return {
            doc.external_id: copy.deepcopy(doc.data)
            for doc in (self.docs[i] for i in ds.doc_ids)
            if doc.external_id is not None
        }

    @staticmethod
    def row_json(slug: str, external_id: str | None, data: Any, dataset: str | None = None) -> dict[str, Any]:
        """A row object as PANDA returns it; `dataset` is the dataset's resource_uri, if already at hand."""
        return {
            "data": data,
            "dataset": dataset or dataset_uri(slug),
            "external_id": external_id,
            "resource_uri": row_uri(slug, external_id),
        }

    def dataset_json(self, ds: Dataset, *, listing: bool = False) -> dict[str, Any]:
        """The dataset object as GET returns it (contract 4); `listing` drops what data listings leave out."""
        out: dict[str, Any] = {
            "categories": [],
            "column_schema": copy.deepcopy(ds.columns),
            "creation_date": ds.creation_date,
            "creator": ds.creator.as_json(),
            "current_task": None,
            "data_uploads": [],
            "description": ds.description,
            "id": str(ds.id),
            "initial_upload": None,
            "last_modification": ds.last_modification,
            "last_modified": ds.last_modified,
            "last_modified_by": ds.last_modified_by.as_json() if ds.last_modified_by else None,
            "locked": self.is_locked(ds),
            "locked_at": ds.locked_at,
            "name": ds.name,
            "related_links": [],
            "related_uploads": [],
            "resource_uri": dataset_uri(ds.slug),
            "row_count": ds.row_count,
            "sample_data": copy.deepcopy(ds.sample_data),
            "slug": ds.slug,
        }
        if listing:
            for key in ("data_uploads", "related_uploads", "sample_data", "current_task"):
                del out[key]
        return out


def _text(data: Any) -> str:
    """The row text full-text search sees: each cell through Python 2 unicode() (contract 9)."""
    cells = data if isinstance(data, list) else [data]
    return " ".join(
        "None" if c is None else ("True" if c is True else "False" if c is False else str(c)) for c in cells
    )
