"""The reader thread: pulls the source's raw items and hands them to the committer in chunks; and decoding them.

The reader does nothing else, so it asks for the next page as soon as the last one is parsed: the source
keeps working on it while the committer decodes, plans and commits (decoding here would leave CouchDB idle
between pages for as long as the rows take to decode). It is the only thread that reads from the source,
and it closes the source when it is done; other threads may only `interrupt` a read.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.errors import RejectedError, StopRequested
from bridge.model import Change, Position, Raw, Refusal, Seq

__all__ = ["Source", "Decode", "Failed", "END", "CHUNK", "CHUNK_BYTES", "read", "decoded"]

CHUNK = 1000
"""Items per hand-over from the reader to the committer, at most."""

CHUNK_BYTES = 1_000_000
"""Wire bytes per hand-over, about: a chunk is handed over once its items reach this (a bigger item goes
alone), so the bounded hand-off queue holds a bounded number of bytes whatever the documents' size."""

END = object()
"""The reader's last hand-over (unless stopped)."""


class Source(Protocol):
    """Where changes come from (CouchSource, SseFeed)."""

    def changes(self, since: Seq | None, *, follow: bool) -> Iterator[Raw | Position]:
        """Raw items after `since`, each with its size on the wire, and Positions once their items are handed over."""
        ...

    def interrupt(self) -> None:
        """End a read in progress at once; safe from any thread."""
        ...

    def close(self) -> None:
        """Release the source's connections; called by the reading thread, or once it has finished."""
        ...


Decode = Callable[[Any, int], Change | None]
"""Turns one raw source item and its size into a Change (None: it carries no change); raises DecodeError
or MappingError."""


@dataclass(frozen=True)
class Failed:
    """The source raised: the committer raises it in its own thread."""

    error: BaseException


def read(source: Source, since: Seq | None, follow: bool, out: queue.Queue[Any], stop: threading.Event) -> None:
    """Reader thread: hand over chunks of `source.changes` (Failed on an error), then END; close the source."""

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    chunk: list[Any] = []
    nbytes = 0
    items = source.changes(since, follow=follow)
    try:
        for item in items:
            chunk.append(item)
            if type(item) is tuple:
                nbytes += item[1]
            if isinstance(item, Position) or len(chunk) >= CHUNK or nbytes >= CHUNK_BYTES:
                put(chunk)
                chunk = []
                nbytes = 0
                if stop.is_set():
                    break
        if chunk:
            put(chunk)
    except StopRequested:
        pass
    except BaseException as exc:  # handed to the committer, which raises it in the main thread
        if chunk:
            put(chunk)
        put(Failed(exc))
    finally:
        put(END)  # unless stopped: a full queue must not hold this thread past the committer's end
        try:
            if isinstance(items, Generator):
                items.close()  # the source's own clean-up runs here, in the thread that read
        finally:
            source.close()


def decoded(chunk: list[Any], decode: Decode) -> tuple[list[Change | Position], list[Refusal]]:
    """A chunk's changes and positions in feed order, and a dead letter for each item that is not a change."""
    entries: list[Change | Position] = []
    refusals: list[Refusal] = []
    for item in chunk:
        if type(item) is not tuple:
            entries.append(item)  # a Position
            continue
        raw, size = item
        try:
            change = decode(raw, size)
        except RejectedError as exc:  # DecodeError, or MappingError from an event's payload
            refusals.append(_undecodable(raw, exc))
            continue
        if change is not None:
            entries.append(change)
    return entries, refusals


def _undecodable(raw: Any, exc: RejectedError) -> Refusal:
    """A dead letter for a feed item that is not a change, keeping the item itself so nothing is lost."""
    if isinstance(raw, Mapping):
        doc_id, kept = str(raw.get("id", "")), dict(raw)
    else:
        doc_id, kept = "", {"raw": repr(raw)}
    seq = exc.seq if isinstance(exc.seq, Seq) else None
    return Refusal(doc_id, seq, f"not a change: {exc}", doc=kept)
