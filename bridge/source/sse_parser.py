"""Server-sent events, pure: an incremental parser from bytes to SseEvent, and decoders to Change.

The parser follows the WHATWG HTML "Interpreting an event stream" algorithm; decode_couchdb_event reads
CouchDB's `feed=eventsource`, decode_sse_event any JSON event stream described by an SseEventSpec.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError, DecodeError, MappingError
from bridge.model import Change, Seq
from bridge.source.decode import decode_row

__all__ = [
    "SseEvent",
    "SseParser",
    "SseEventSpec",
    "event_spec",
    "decode_sse_event",
    "decode_couchdb_event",
    "couchdb_eventsource_params",
]

_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched server-sent event."""

    id: str | None
    """The last event ID when the event was dispatched (it persists across events); None if empty."""
    event: str
    """The event type; "message" when the server named none."""
    data: str
    """The data lines joined with "\\n"; may be empty ("data:" with no value is still dispatched)."""
    retry: int | None = None
    """A valid `retry:` value (milliseconds) sent within this event's block, if any."""


class SseParser:
    """Turns a byte stream into SseEvents, fed in chunks split anywhere (one parser per connection).

    Rules kept from the spec: UTF-8 with replacement, one leading BOM dropped; lines end in CRLF, LF or CR
    (a CR at a chunk's end may pair with the next chunk's LF); a blank line dispatches; lines starting with
    ":" are comments; an `id` containing NUL is ignored; `retry` takes effect only if all ASCII digits, and
    at once, even in a block that is never dispatched; a block whose data buffer is empty is not dispatched
    but still sets the last event ID; whatever is pending when the stream ends is discarded.
    """

    def __init__(self, last_event_id: str = "") -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._text = ""
        self._cr_seen = False
        self._data: list[str] = []
        self._type = ""
        self._id_buffer = last_event_id
        self._block_retry: int | None = None
        self._block_open = False
        self.last_event_id = last_event_id
        """The "last event ID string": set at every dispatch, sent back as Last-Event-ID on reconnect."""
        self.retry: int | None = None
        """The last valid reconnection time the server sent, in milliseconds."""

    @property
    def pending(self) -> bool:
        """True while an event is partly received: ending the stream now would discard it."""
        return self._block_open or bool(self._text) or bool(self._decoder.getstate()[0])

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse the next bytes and return the events they complete, in order."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._cr_seen and text[0] == "\n":
            text = text[1:]  # the LF of a CRLF whose CR ended the previous chunk
        self._cr_seen = False
        buffer = self._text + text
        events: list[SseEvent] = []
        start = 0
        for match in _EOL.finditer(buffer):
            event = self._line(buffer[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
            self._cr_seen = match.group() == "\r" and start == len(buffer)
        self._text = buffer[start:]
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: often a keep-alive, never part of an event
        self._block_open = True
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = self._block_retry = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        self.last_event_id = self._id_buffer
        data, event_type, retry = self._data, self._type, self._block_retry
        self._data, self._type, self._block_retry, self._block_open = [], "", None, False
        if not data:
            return None
        return SseEvent(
            id=self._id_buffer or None, event=event_type or "message", data="\n".join(data), retry=retry
        )


@dataclass(frozen=True, slots=True)
class SseEventSpec:
    """Where a generic JSON event stream keeps the document id, the document and the deletion mark."""

    id_path: str = "id"
    """Dotted path in the JSON payload to the document id (a string or an integer)."""
    doc_path: str = "doc"
    """Dotted path to the document object; "" means the whole payload."""
    deleted_path: str | None = None
    """Dotted path whose value marks a deletion, if the stream marks deletions in the payload."""
    deleted_value: Any = True
    """The value at deleted_path that means deleted (compared by JSON value: true is not 1)."""
    delete_events: tuple[str, ...] = ("delete",)
    """Event types that mean the document was deleted."""
    ignore_events: tuple[str, ...] = ("heartbeat",)
    """Event types that carry no change (keep-alives)."""
    event_types: tuple[str, ...] | None = None
    """If set, only these event types (and delete_events) are decoded; others are ignored."""

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("id_path", "doc_path", "deleted_path"):
            path = getattr(self, name)
            if path is None or (path == "" and name == "doc_path"):
                continue
            if not path or "" in path.split("."):
                raise ConfigError(f"SSE {name} {path!r} is not a dotted path")
        if set(self.delete_events) & set(self.ignore_events):
            raise ConfigError("SSE delete_events and ignore_events overlap")


_TEXTS = ("id_path", "doc_path", "deleted_path")
_TYPE_LISTS = ("delete_events", "ignore_events", "event_types")


def _check_types(spec: SseEventSpec) -> None:
    """ConfigError naming the [source.events] key whose value has the wrong type (paths are strings, event
    types lists of strings: a string there would match as a substring)."""
    for name in _TEXTS:
        value = getattr(spec, name)
        if not isinstance(value, str) and not (value is None and name == "deleted_path"):
            raise ConfigError(f"[source.events] {name} must be a string, got {value!r}")
    for name in _TYPE_LISTS:
        value = getattr(spec, name)
        if value is None and name == "event_types":
            continue
        if not isinstance(value, tuple) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"[source.events] {name} must be a list of strings, got {value!r}")


def event_spec(events: Mapping[str, Any]) -> SseEventSpec:
    """The [source.events] table as an SseEventSpec; lists become tuples. Raises ConfigError naming an
    unknown key or a key whose value has the wrong type."""
    known = {f.name for f in dataclasses.fields(SseEventSpec)}
    unknown = sorted(set(events) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [source.events]: {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value for key, value in events.items()}
    return SseEventSpec(**values)


_MISSING = object()


def _lookup(payload: Any, path: str) -> Any:
    """The value at a dotted path (keys, or list indexes written as digits); _MISSING if there is none."""
    value = payload
    for key in path.split(".") if path else ():
        if isinstance(value, Mapping):
            value = value.get(key, _MISSING)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _same_json(a: Any, b: Any) -> bool:
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def decode_sse_event(event: SseEvent, spec: SseEventSpec, size: int | None = None) -> Change | None:
    """The change an event of a generic JSON stream carries, or None (ignored types, blank data).

    `size` is the event's size on the wire as the source measured it (default: its data's UTF-8 bytes).

    The Change's seq is the event id verbatim (None if the event had none). Raises MappingError (the event
    is dead-lettered) when the payload is not JSON, lacks a usable id, or a non-delete lacks its document.
    """
    deleted = event.event in spec.delete_events
    if event.event in spec.ignore_events or not event.data.strip():
        return None  # keep-alives: a named type, or an event without payload
    if spec.event_types is not None and not deleted and event.event not in spec.event_types:
        return None
    seq = Seq(event.id) if event.id else None
    try:
        payload = json.loads(event.data)
    except ValueError as exc:
        raise MappingError(f"{event.event} event data is not JSON: {exc}", seq=seq) from exc
    doc_id = _lookup(payload, spec.id_path)
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id:
        raise MappingError(f"{event.event} event has no document id at {spec.id_path!r}", seq=seq)
    if spec.deleted_path is not None:
        deleted = deleted or _same_json(_lookup(payload, spec.deleted_path), spec.deleted_value)
    doc = _lookup(payload, spec.doc_path)
    if doc is _MISSING or (doc is None and deleted):
        doc = None
    elif not isinstance(doc, Mapping):
        raise MappingError(f"{event.event} event for {doc_id!r}: {spec.doc_path!r} is not an object", seq=seq)
    if doc is None and not deleted:
        raise MappingError(
            f"{event.event} event for {doc_id!r} has no document at {spec.doc_path!r}", seq=seq
        )
    return Change(seq=seq, doc_id=doc_id, deleted=deleted, doc=doc, size=_size(event, size))


def couchdb_event_seq(event: SseEvent, row: Mapping[str, Any] | None = None) -> Seq | None:
    """The seq of a CouchDB eventsource event: its JSON-decoded id, else the row's own seq (None if neither).

    `null` (rows that `seq_interval` left without a seq) gives None: it must never be saved or sent back.
    """
    value: Any = (row or {}).get("seq")
    if event.id is not None:
        try:
            value = json.loads(event.id)
        except ValueError as exc:
            raise DecodeError(f"eventsource id {event.id!r} is not JSON-encoded") from exc
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise DecodeError(f"eventsource seq {value!r} is neither a string nor an integer")
    return Seq(value)


def decode_couchdb_event(event: SseEvent, size: int | None = None) -> Change | None:
    """The change a CouchDB `feed=eventsource` event carries; None for heartbeats and other event types.

    The data is one `_changes` row, decoded like any other row (decode.py); the id is its seq
    JSON-encoded (`"12-g1AA…"` on 2.x/3.x, `12` on 1.x). Raises DecodeError when the row or the id is not
    what CouchDB sends: one row per event, so bad JSON means the stream itself is corrupt.
    """
    if event.event != "message" or not event.data.strip():
        return None
    try:
        row = json.loads(event.data)
    except ValueError as exc:
        raise DecodeError(f"eventsource row is not JSON: {exc}") from exc
    change = decode_row(row)
    if not change.doc_id:
        raise DecodeError("eventsource row has no document id")
    return change._replace(seq=couchdb_event_seq(event, row), size=_size(event, size))


def _size(event: SseEvent, measured: int | None) -> int:
    """The size the source measured, else the event's data in UTF-8 bytes."""
    return len(event.data.encode("utf-8")) if measured is None else measured


def couchdb_eventsource_params(since: Seq | None, heartbeat_ms: int) -> dict[str, str]:
    """Query parameters for following a CouchDB database with SseSource.

    Give SseSource `last_event_id=since.as_param()` too: CouchDB takes a Last-Event-ID header over `since`,
    and strips the quotes that the raw event ids carry, so both forms resume at the same place.
    """
    if heartbeat_ms <= 0:
        raise ConfigError("eventsource heartbeat must be a positive number of milliseconds")
    params = {"feed": "eventsource", "include_docs": "true", "heartbeat": str(heartbeat_ms)}
    if since is not None:
        params["since"] = since.as_param()
    return params
