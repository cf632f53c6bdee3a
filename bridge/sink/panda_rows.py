"""PANDA's rules for rows, as the sink applies them around a bulk write (pure).

Before: which rows PANDA must refuse (contracts 6-8) and which external_ids it cannot delete (1, 12, 14);
how rows split into bulk requests of bounded size. After a 400: what the refusal says about the dataset's width (8).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TypeVar

import orjson

from bridge.errors import ConfigError, ProtocolError
from bridge.model import Upsert

__all__ = ["REQUEST_LINE_LIMIT", "locally_bad", "undeletable", "longest_id", "too_long", "refused_width",
           "request_groups", "BULK_OVERHEAD"]

T = TypeVar("T")

_BULK_ID = re.compile(r"^[\w\d_-]+$", re.ASCII)  # contract 7, Python 2 semantics ($ allows a final "\n")
_URL_ID = re.compile(r"[\w\d_-]+")  # contract 1: what a URL segment may hold
_COUNT = re.compile(r"Got \d+ data fields\. Expected (\d+)\.")  # contract 8

BULK_OVERHEAD = len(b'{"objects":[]}')
"""Bytes of a bulk PUT body around its objects."""

REQUEST_LINE_LIMIT = 8192
"""Bytes nginx lets a request line take, its CRLF included; a longer one gets 414 (contract 14)."""


def locally_bad(row: Upsert, width: int | None) -> bool:
    """True when PANDA's bulk checks (contracts 6-8) must refuse this row."""
    if not row.data or not _BULK_ID.match(row.external_id):
        return True
    return width is not None and len(row.data) != width


def undeletable(external_id: str) -> str | None:
    """Why PANDA cannot delete the row with this external_id, or None when it can."""
    if not _URL_ID.fullmatch(external_id):
        return "external_id cannot appear in a PANDA URL, so it cannot be deleted (contract 1)"
    if external_id.startswith("-") or external_id in ("AND", "OR", "NOT"):
        return "PANDA answers 500 to deleting this external_id (Solr query syntax, contract 12)"
    return None


def longest_id(dataset_path: str) -> int:
    """The longest external_id a row of the dataset at `dataset_path` may have: a longer one could never be
    deleted (ids are URL-safe ASCII, so quoting keeps them as they are)."""
    overhead = "DELETE %sdata// HTTP/1.1\r\n" % dataset_path
    return REQUEST_LINE_LIMIT - len(overhead.encode())


def too_long(external_id: str, longest: int) -> str | None:
    """Why a row with this external_id must not exist (its DELETE would get 414), or None."""
    if len(external_id) <= longest:
        return None
    return ("external_id is %d characters, more than the %d that fit in a DELETE of its row under PANDA's "
            "8 KB request-line limit (contract 14): the row could never be deleted, so it is not written"
            % (len(external_id), longest))


def refused_width(refusal: str, expected: int | None, slug: str) -> int | None:
    """The column count a row-level 400 implies (`expected`, the dataset's, when it names none).

    Raises ConfigError when PANDA refuses every write to the dataset or now expects another width (the
    dataset changed under the bridge), ProtocolError for a 400 not about rows (contracts 6, 8).
    """
    try:
        body = orjson.loads(refusal)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and "dataset" in body:
        raise ConfigError(
            "PANDA refuses every write to dataset %r: %s" % (slug, refusal), status=400
        )
    if not isinstance(body, dict) or "data" not in body:  # e.g. "Invalid data sent." or an nginx 400
        raise ProtocolError(
            "PANDA refused a bulk write with an unexpected 400: %s" % refusal[:300], status=400
        )
    found = _COUNT.search(refusal)
    if found is None:
        return expected
    width = int(found.group(1))
    if expected is not None and width != expected:
        # Every row the bridge builds has the width checked at start: dead-lettering them all would
        # empty the feed into the dead-letter file, so stop and let the operator fix the dataset.
        raise ConfigError(
            "PANDA dataset %r now expects %d cells per row, not the %d columns it had when the bridge "
            "started: it was changed or recreated. Recreate it with the configured columns, run `bridge "
            "checkpoint reset` (its rows must be sent again), then start again" % (slug, width, expected),
            status=400,
        )
    return width


def request_groups(rows: Sequence[tuple[T, bytes]], max_bytes: int) -> Iterator[list[tuple[T, bytes]]]:
    """Consecutive groups of (row, serialised object) whose bulk body `{"objects":[...]}` is at most
    `max_bytes`; a row too big for that even alone makes a group by itself (it is sent, never held back).
    """
    group: list[tuple[T, bytes]] = []
    size = BULK_OVERHEAD
    for item in rows:
        extra = len(item[1]) + (1 if group else 0)  # the comma before every object but the first
        if group and size + extra > max_bytes:
            yield group
            group, size, extra = [], BULK_OVERHEAD, len(item[1])
        group.append(item)
        size += extra
    if group:
        yield group
