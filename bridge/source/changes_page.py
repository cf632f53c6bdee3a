"""One `_changes` request and its parsed answer: the query parameters, and the body as a Page (pure).

A body that orjson refuses is either cut off (read again) or holds JSON escapes of lone UTF-16 surrogates
such as `"\\ud800"`, which PouchDB Server sends for a JavaScript string holding one (CouchDB 3 refuses
such documents with 400 "invalid UTF-8 JSON"). Those rows are not Unicode text and cannot be sent to PANDA:
each becomes an UnreadableRow, which the pipeline dead-letters, while the rest of the page goes on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.config.settings import SourceSettings
from bridge.errors import DecodeError, FeedInterrupted
from bridge.model import Seq
from bridge.source.decode import UnreadableRow, decode_seq, lone_surrogate_path

__all__ = ["Page", "RawRow", "Tail", "changes_params", "filter_params", "parse_page", "read_tail", "readable"]

RawRow = dict[str, Any]

_TAIL_BYTES = 65_536
"""Where in a body `read_tail` looks for `last_seq`: CouchDB's opaque seqs run to a few hundred bytes."""


@dataclass(frozen=True, slots=True)
class Page:
    """One parsed `_changes` response."""

    rows: list[RawRow]
    last_seq: Seq | None
    pending: int | None
    """Changes left after this page; None where the server does not say (1.x, PouchDB)."""
    nbytes: int


@dataclass(frozen=True, slots=True)
class Tail:
    """What a `_changes` body ends with, read before the body is parsed: a guess until parse_page agrees."""

    last_seq: Seq
    pending: int | None


def read_tail(body: bytes) -> Tail | None:
    """The `last_seq` (and `pending`) a whole `_changes` body ends with, from its last bytes alone, so the
    next page can be asked for while this one is parsed; None when the tail is not that shape.

    CouchDB and PouchDB Server send `last_seq` (then `pending`) after the results: the last `"last_seq":`
    of the body then starts an object member list running to the closing brace. A document field of that
    name inside the results, were the order ever different, leaves brackets after it and fails to parse.
    """
    start = body.rfind(b'"last_seq":', max(0, len(body) - _TAIL_BYTES))
    if start < 0:
        return None
    try:
        tail = orjson.loads(b"{" + body[start:])
    except orjson.JSONDecodeError:
        return None
    try:
        last_seq = decode_seq(tail.get("last_seq")) if isinstance(tail, dict) else None
    except DecodeError:  # parse_page turns the same value into its own error
        return None
    if last_seq is None:
        return None
    pending = tail.get("pending")
    return Tail(last_seq, pending if isinstance(pending, int) and not isinstance(pending, bool) else None)


def filter_params(settings: SourceSettings) -> dict[str, str]:
    """The server-side filter as query parameters (doc_ids as a JSON list: GET, e.g. for eventsource)."""
    if settings.doc_ids:
        return {"filter": "_doc_ids", "doc_ids": orjson.dumps(settings.doc_ids).decode()}
    if settings.filter:
        return {"filter": settings.filter, **settings.filter_params}
    return {}


def changes_params(settings: SourceSettings, since: Seq | None, longpoll: bool) -> dict[str, str]:
    """Query parameters of a catch-up page (`feed=normal`) or a follow request (`feed=longpoll`)."""
    params = {
        "feed": "longpoll" if longpoll else "normal",
        "include_docs": "true",
        "limit": str(settings.page_size),
        "since": since.as_param() if since is not None else "0",
    }
    if longpoll:
        params["heartbeat"] = str(int(settings.heartbeat * 1000))
    if settings.doc_ids:
        params["filter"] = "_doc_ids"  # the ids travel in the POST body
    elif settings.filter:
        params["filter"] = settings.filter
        params.update(settings.filter_params)
    return params


def parse_page(body: bytes, since: Seq | None) -> Page:
    """Parse a whole `_changes` body; raises FeedInterrupted when it is cut off or not a changes answer."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = _parse_with_surrogates(body, since)
    if not isinstance(parsed, Mapping) or not isinstance(parsed.get("results"), list):
        raise FeedInterrupted("the changes feed answered without a results list", seq=since)
    pending = parsed.get("pending")
    return Page(
        rows=parsed["results"],
        last_seq=decode_seq(parsed.get("last_seq")),
        pending=pending if isinstance(pending, int) and not isinstance(pending, bool) else None,
        nbytes=len(body),
    )


def _parse_with_surrogates(body: bytes, since: Seq | None) -> Any:
    """The stdlib parser accepts lone surrogate escapes; a body it refuses too was cut off or corrupted."""
    try:
        parsed = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        raise FeedInterrupted(f"the changes feed ended before its terminator ({len(body)} bytes read)",
                              seq=since) from None
    results = parsed.get("results") if isinstance(parsed, dict) else None
    if isinstance(results, list):
        parsed["results"] = [readable(row) for row in results]
    if lone_surrogate_path(parsed.get("last_seq") if isinstance(parsed, dict) else None) is not None:
        raise FeedInterrupted("the changes feed sent a last_seq that is not Unicode text", seq=since)
    return parsed


def readable(row: Any) -> Any:
    """The row, or an UnreadableRow in its place when it holds a lone surrogate (dead-lettered downstream)."""
    path = lone_surrogate_path(row)
    if path is None:
        return row
    return UnreadableRow.of(row, path)
