"""The benchmark's data set: documents shaped like the performance anchors' `people` set.

Each document is about 230 bytes with its `_rev` (shape `current`); shape `unmapped` adds text and a list
the mapping does not use (about 400 bytes), shape `nested` nested objects and lists (about 4 KB). Shape
`uuid` is `current` with ids like CouchDB's default ones (32 hex digits in no order) instead of `p0000001`
in feed order: the bridge's record of sent rows is indexed by id, so its inserts land anywhere. After
loading, one document in 20 is deleted and another one in 20 updated, so the feed from 0 holds every
document exactly once, some of them as tombstones. `big` documents carry one large mapped text cell.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["COLUMNS", "SHAPES", "person", "big", "doc_id", "load", "load_big", "delete", "live_rows", "feed_rows",
           "BULK"]

COLUMNS = ["first_name", "last_name", "employer"]
BULK = 1000
_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Niklaus"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Wirth"]
_NOTE = "x" * 60
_DELETED, _UPDATED = 7, 13  # n % 20
SHAPES = ("current", "unmapped", "nested", "uuid")
_BIO = "Wrote programs, papers and letters; kept notebooks of every experiment, dated. " * 2


def _shaped(n: int, shape: str) -> dict[str, Any]:
    """The fields a shape adds to the mapped ones (none of them mapped)."""
    if shape == "unmapped":
        return {"bio": _BIO[: 120 + n % 40], "tags": ["t%d" % (n % 7), "t%d" % (n % 11)], "score": n * 0.5}
    if shape == "nested":
        return {"history": [{"year": 1950 + i, "event": {"kind": "k%d" % (i % 5), "where": ["room %d" % i, "b"],
                                                          "text": _BIO[:100]}} for i in range(22)],
                "address": {"street": "%d Main St" % n, "city": {"name": "Town", "zip": "%05d" % (n % 99999)}}}
    return {}


def doc_id(n: int, prefix: str = "p") -> str:
    return "%s%07d" % (prefix, n)


def _uuid(n: int, prefix: str) -> str:
    """A fixed id of 32 hex digits for document n, shaped like the UUIDs CouchDB gives by default."""
    return hashlib.md5(doc_id(n, prefix).encode()).hexdigest()


def person(n: int, prefix: str = "p", shape: str = "current", **extra: Any) -> dict[str, Any]:
    """Document number n, of the given shape (SHAPES)."""
    return {
        "_id": _uuid(n, prefix) if shape == "uuid" else doc_id(n, prefix),
        "first_name": _FIRST[n % len(_FIRST)],
        "last_name": "%s %d" % (_LAST[n % len(_LAST)], n),
        "employer": "Employer %d" % (n % 97),
        "n": n,
        "nested": {"a": [1, 2, 3]},
        "note": _NOTE,
        **_shaped(n, shape),
        **extra,
    }


def big(n: int, size: int) -> dict[str, Any]:
    """A document of about `size` bytes, almost all of it in its mapped `last_name` cell."""
    return {"_id": doc_id(n, "b"), "first_name": _FIRST[n % len(_FIRST)],
            "last_name": ("%d " % n + "abcdefghij" * (size // 10 + 1))[:size], "employer": "Employer %d" % (n % 97)}


def load_big(server: Any, db: str, docs: list[tuple[int, int]], small: int) -> int:
    """Create `db` with `small` small documents and big(n, size) for each (n, size) in `docs`, the big ones
    spread evenly through the feed, a few MB per _bulk_docs request; returns the live rows expected."""
    server.create_db(db)
    every = max(1, small // (len(docs) + 1))
    order: list[dict[str, Any]] = []
    bigs = list(docs)
    for n in range(small):
        order.append(person(n, "s"))
        if bigs and n % every == every - 1:
            order.append(big(*bigs.pop(0)))
    order += [big(*rest) for rest in bigs]
    pending: list[dict[str, Any]] = []
    size = 0
    for doc in order:
        pending.append(doc)
        size += len(doc["last_name"])
        if size >= 2_000_000 or len(pending) >= BULK:
            server.bulk_docs(db, pending)
            pending, size = [], 0
    if pending:
        server.bulk_docs(db, pending)
    return small + len(docs)


def _updated(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc, last_name=doc["last_name"] + " (updated)", note=_NOTE[:-8] + "updated!")


def load(server: Any, db: str, count: int, *, churn: bool = True, prefix: str = "p", shape: str = "current",
         ) -> tuple[float, dict[str, str]]:
    """Create `db` with `count` documents via _bulk_docs batches of BULK; with `churn`, delete and update
    one in 20 each. Returns the seconds it took and the current rev of each live document.
    `server` is a tests.support CouchServer."""
    started = time.monotonic()
    server.create_db(db)
    revs: dict[str, str] = {}
    later: list[dict[str, Any]] = []
    for first in range(0, count, BULK):
        docs = [person(n, prefix, shape) for n in range(first, min(count, first + BULK))]
        results = server.bulk_docs(db, docs)
        for doc, result in zip(docs, results, strict=True):
            if "error" in result:
                raise RuntimeError("loading %s failed: %r" % (doc["_id"], result))
            if churn and doc["n"] % 20 == _DELETED:
                later.append({"_id": doc["_id"], "_rev": result["rev"], "_deleted": True})
            elif churn and doc["n"] % 20 == _UPDATED:
                later.append(dict(_updated(doc), _rev=result["rev"]))
            else:
                revs[doc["_id"]] = result["rev"]
    for first in range(0, len(later), BULK):
        batch = later[first:first + BULK]
        for doc, result in zip(batch, server.bulk_docs(db, batch), strict=True):
            if not doc.get("_deleted"):
                revs[doc["_id"]] = result["rev"]
    return time.monotonic() - started, revs


def delete(server: Any, db: str, revs: dict[str, str]) -> None:
    """Delete these documents (id -> current rev) with _bulk_docs batches of BULK."""
    tombstones = [{"_id": i, "_rev": rev, "_deleted": True} for i, rev in revs.items()]
    for first in range(0, len(tombstones), BULK):
        server.bulk_docs(db, tombstones[first:first + BULK])


def live_rows(count: int, *, churn: bool = True, prefix: str = "p") -> Iterator[tuple[str, list[str]]]:
    """(external_id, row) for every live document, as the bridge maps them (the same for every shape)."""
    for n in range(count):
        if churn and n % 20 == _DELETED:
            continue
        doc = person(n, prefix)
        if churn and n % 20 == _UPDATED:
            doc = _updated(doc)
        yield doc["_id"], [doc[column] for column in COLUMNS]


def feed_rows(count: int) -> int:
    """Rows in the feed from 0: one per document, tombstones included."""
    return count
