"""Writes changes the bridge cannot deliver to a JSON-lines file, durably, before the checkpoint passes them.

Each line: {"time", "doc_id", "seq", "external_id", "row", "reason", "status", "doc"}. `bridge deadletter
list` prints them; `bridge deadletter retry` delivers them again and keeps only those still refused.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bridge.errors import StateError
from bridge.model import Refusal

__all__ = ["DeadLetter", "DeadLetterFile"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One line of the dead-letter file as it is read back: a Refusal with its time, in JSON types."""

    time: str
    doc_id: str
    seq: Any
    external_id: str | None
    row: list[Any] | None
    reason: str
    status: int | None
    doc: dict[str, Any] | None

    @classmethod
    def from_refusal(cls, refusal: Refusal, now: datetime.datetime | None = None) -> DeadLetter:
        moment = now or datetime.datetime.now(datetime.UTC)
        return cls(
            time=moment.isoformat(timespec="seconds"),
            doc_id=refusal.doc_id,
            seq=None if refusal.seq is None else refusal.seq.value,
            external_id=refusal.external_id,
            row=None if refusal.row is None else list(refusal.row),
            reason=refusal.reason,
            status=refusal.status,
            doc=None if refusal.doc is None else dict(refusal.doc),
        )

    def to_json(self) -> bytes:
        return orjson.dumps({
            "time": self.time, "doc_id": self.doc_id, "seq": self.seq, "external_id": self.external_id,
            "row": self.row, "reason": self.reason, "status": self.status, "doc": self.doc,
        })


class DeadLetterFile:
    """Appends refusals durably; reads and rewrites the file for `bridge deadletter`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, refusals: Iterable[Refusal]) -> int:
        """Append and fsync; returns how many were written. Raises StateError if the file cannot be written."""
        lines = [DeadLetter.from_refusal(refusal).to_json() + b"\n" for refusal in refusals]
        if not lines:
            return 0
        count = len(lines)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            with self.path.open("a+b") as handle:
                if handle.seek(0, os.SEEK_END) > 0:
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":  # a crash tore the last line: start on a line of our own
                        lines.insert(0, b"\n")
                handle.write(b"".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
            if created:  # the new file's name must survive a crash too, before the checkpoint passes it
                _fsync_directory(self.path.parent)
        except OSError as exc:
            raise StateError(f"cannot write the dead-letter file {self.path}: {exc}") from None
        return count

    def entries(self) -> Iterator[DeadLetter]:
        """Every entry, oldest first; a torn line (a crash mid-append) is skipped.

        Raises StateError when the file cannot be read, or holds a line that parses but is not a dead letter
        (written by something else, or edited by hand): the message names the file and the line.
        """
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"cannot read the dead-letter file {self.path}: {exc}") from None
        with handle:
            for number, line in enumerate(handle, 1):
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                yield _entry(data, self.path, number)

    def replace(self, entries: Iterable[DeadLetter]) -> None:
        """Atomically rewrite the file with these entries (temp file in the same directory, then rename)."""
        temp = self.path.with_name(self.path.name + ".tmp")
        try:
            with temp.open("wb") as handle:
                for entry in entries:
                    handle.write(entry.to_json() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
            _fsync_directory(self.path.parent)  # the rename itself is durable only once the directory is
        except OSError as exc:
            raise StateError(f"cannot rewrite the dead-letter file {self.path}: {exc}") from None


_FIELDS = {"time": (str,), "doc_id": (str,), "seq": (str, int, type(None)), "external_id": (str, type(None)),
           "row": (list, type(None)), "reason": (str,), "status": (int, type(None)), "doc": (dict, type(None))}


def _entry(data: Any, path: Path, number: int) -> DeadLetter:
    """One parsed line as a DeadLetter; StateError naming the file and line when it is not one."""
    if not isinstance(data, dict) or set(data) != set(_FIELDS):
        raise StateError(f"the dead-letter file {path} line {number} is not a dead letter (expected the keys "
                         f"{sorted(_FIELDS)})")
    wrong = sorted(key for key, kinds in _FIELDS.items()
                   if not isinstance(data[key], kinds) or isinstance(data[key], bool))
    if wrong:
        raise StateError(f"the dead-letter file {path} line {number} has values of the wrong type in {wrong}")
    return DeadLetter(**data)


def _fsync_directory(path: Path) -> None:
    """Make a directory's entries (a created or renamed file) durable; raises OSError."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
