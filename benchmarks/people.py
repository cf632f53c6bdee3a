"""The benchmark's data set: documents shaped like the performance anchors' `people` set.

Each document is about 230 bytes with its `_rev`. After loading, one document in 20 is deleted and another
one in 20 updated, so the feed from 0 holds every document exactly once, some of them as tombstones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

__all__ = ["COLUMNS", "person", "doc_id", "load", "delete", "live_rows", "feed_rows", "BULK"]

COLUMNS = ["first_name", "last_name", "employer"]
BULK = 1000
_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Niklaus"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Wirth"]
_NOTE = "x" * 60
_DELETED, _UPDATED = 7, 13  # n % 20


def doc_id(n: int, prefix: str = "p") -> str:
    return "%s%07d" % (prefix, n)


def person(n: int, prefix: str = "p", **extra: Any) -> dict[str, Any]:
    """Document number n."""
    return {
        "_id": doc_id(n, prefix),
        "first_name": _FIRST[n % len(_FIRST)],
        "last_name": "%s %d" % (_LAST[n % len(_LAST)], n),
        "employer": "Employer %d" % (n % 97),
        "n": n,
        "nested": {"a": [1, 2, 3]},
        "note": _NOTE,
        **extra,
    }


def _updated(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc, last_name=doc["last_name"] + " (updated)", note=_NOTE[:-8] + "updated!")


def load(server: Any, db: str, count: int, *, churn: bool = True, prefix: str = "p") -> tuple[float, dict[str, str]]:
    """Create `db` with `count` documents via _bulk_docs batches of BULK; with `churn`, delete and update
    one in 20 each. Returns the seconds it took and the current rev of each live document.
    `server` is a tests.support CouchServer."""
    started = time.monotonic()
    server.create_db(db)
    revs: dict[str, str] = {}
    later: list[dict[str, Any]] = []
    for first in range(0, count, BULK):
        docs = [person(n, prefix) for n in range(first, min(count, first + BULK))]
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
    """(external_id, row) for every live document, as the bridge maps them."""
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
