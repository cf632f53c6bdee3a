"""One `feed=continuous` `_changes` response read line by line (pure): byte chunks in, rows and its end out.

CouchDB writes one compact JSON object per line and ends a feed that ends cleanly with a last line
`{"last_seq": ..., "pending": ...}` (couchdb-changes.md, section 3.2). HTTP chunks are not lines: one chunk
may hold many rows and a row may span chunks, so `Lines` joins and splits them. Only a line that ended with
its newline is parsed, so a cut-off row is never taken for a whole one; a response that stops before its
last line broke off, and the caller reads again from the last position it handed out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.errors import FeedInterrupted
from bridge.model import Seq
from bridge.source.changes_page import RawRow, readable
from bridge.source.decode import decode_seq, lone_surrogate_path

__all__ = ["Lines", "StreamEnd", "parse_line"]


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last line of a continuous feed that ended cleanly."""

    last_seq: Seq
    pending: int | None
    """Changes left after it; None where the server does not say (1.x)."""


class Lines:
    """The complete lines of a byte stream fed in chunks; the pieces of a line are joined once, at its end."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines that this chunk completes, without their newlines, in order."""
        lines = chunk.split(b"\n")
        rest = lines.pop()  # after the last newline: the start of a line not yet complete
        if lines and self._parts:
            self._parts.append(lines[0])
            lines[0] = b"".join(self._parts)
            self._parts = []
        if rest:
            self._parts.append(rest)
        return lines

    @property
    def held(self) -> int:
        """Bytes of a line begun but not yet ended."""
        return sum(len(part) for part in self._parts)


def parse_line(line: bytes, since: Seq | None) -> RawRow | StreamEnd | None:
    """A continuous feed's line: a row, the feed's last line, or None for a blank line (heartbeat, idle).

    A row holding a lone UTF-16 surrogate becomes an UnreadableRow (dead-lettered downstream, as in pages).
    Raises FeedInterrupted for a line that is not a JSON object, or an error the server wrote into the feed.
    """
    if not line.strip():
        return None
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        parsed = _with_surrogates(line, since)
    if not isinstance(parsed, dict):
        raise FeedInterrupted(f"the continuous changes feed sent a line that is not a JSON object: {line[:80]!r}",
                              seq=since)
    if "id" in parsed or "changes" in parsed:
        return parsed
    if "last_seq" in parsed:
        last_seq = decode_seq(parsed["last_seq"])
        if last_seq is None:
            raise FeedInterrupted("the continuous changes feed ended with a null last_seq", seq=since)
        pending = parsed.get("pending")
        return StreamEnd(last_seq, pending if isinstance(pending, int) and not isinstance(pending, bool) else None)
    if "error" in parsed:
        raise FeedInterrupted(f"the changes feed broke off with an error: {parsed.get('error')}: "
                              f"{parsed.get('reason')}", seq=since)
    return parsed  # a row of an unknown shape: decoding says what is wrong with it, and dead-letters it


def _with_surrogates(line: bytes, since: Seq | None) -> Any:
    """The stdlib parser accepts lone surrogate escapes; a whole line it refuses too was corrupted."""
    try:
        parsed = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        raise FeedInterrupted(f"the continuous changes feed sent a line that does not parse ({len(line)} bytes)",
                              seq=since) from None
    is_row = not isinstance(parsed, dict) or "id" in parsed or "changes" in parsed
    if not is_row and lone_surrogate_path(parsed) is not None:
        raise FeedInterrupted("the continuous changes feed sent a last line that is not Unicode text", seq=since)
    return readable(parsed)
