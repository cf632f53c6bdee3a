"""Loads and atomically saves the last seq PANDA acknowledged, with the record of what was sent.

The state lives in one SQLite file: the seq, the fingerprint of the pipeline it belongs to, and for each
document the external_id and row hash last acknowledged. One transaction saves a batch's records and its
seq together, so a crash at any instant leaves either the old state or the new one, never a torn file.
Before a batch is sent, the rows it touches are noted as pending: after a crash between PANDA's answer and
the commit, those rows may differ from the record, so the replay re-sends or deletes them rather than skip.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bridge.errors import CheckpointMismatch, StateError
from bridge.model import Sent, Seq, build
from bridge.state import checkpoint_sql as sql

__all__ = ["Checkpoint", "StateStore"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The saved position and what it belongs to."""

    seq: Seq | None
    """The last seq PANDA acknowledged everything up to; None before the first commit."""
    fingerprint: dict[str, Any]
    """The pipeline this state belongs to (source, filter, dataset, mapping)."""
    saved_at: float | None
    """Unix time of the last commit."""
    source_marker: str | None
    """An identity token of the source database incarnation, if one was recorded."""
    complete: bool
    """True when the record of sent rows covers every row of the dataset (it was empty when we began)."""
    documents: int
    """How many documents have a row in PANDA according to the record."""


class StateStore:
    """The bridge's durable state. Not thread-safe: one thread uses it."""

    def __init__(self, path: Path) -> None:
        """Open the state file if it exists; a new one is only created when a pipeline claims it."""
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._json = True
        """False where SQLite has no JSON functions: every batch then takes the row-by-row statements."""
        self._notes: dict[str, str] | None = None
        """The pending notes as the file holds them (external_id -> doc_id), read once: this store is their
        only writer while it is open, so each batch need not read and decode them again."""
        if path.exists():
            self._open()

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._json = sql.has_json_functions()
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(sql.SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise StateError(f"cannot open the checkpoint {self.path}: {exc}") from None
            self._conn = conn
        return self._conn

    @property
    def _db(self) -> sqlite3.Connection:
        return self._open()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._notes = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._notes = None  # may hold this transaction's changes: read again from the file
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._notes = None
            raise StateError(f"cannot write the checkpoint {self.path}: {exc}") from None

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Translate a failed read of the state file (damaged, not the bridge's, unreadable) into StateError."""
        try:
            yield
        except (sqlite3.Error, ValueError, TypeError) as exc:
            raise StateError(f"cannot read the checkpoint {self.path}: {type(exc).__name__}: {exc}") from None

    def _meta(self) -> dict[str, Any]:
        if self._conn is None:
            return {}
        with self._reading():
            rows = self._db.execute("SELECT key, value FROM meta").fetchall()
            return {key: json.loads(value) for key, value in rows}

    def load(self) -> Checkpoint | None:
        """The saved checkpoint, or None for a new state file. Raises StateError when it cannot be read."""
        meta = self._meta()
        if "fingerprint" not in meta:
            return None
        seq = meta.get("seq")
        with self._reading():
            (documents,) = self._db.execute("SELECT count(*) FROM sent").fetchone()
        return Checkpoint(
            seq=None if seq is None else Seq(seq),
            fingerprint=meta["fingerprint"],
            saved_at=meta.get("saved_at"),
            source_marker=meta.get("source_marker"),
            complete=bool(meta.get("complete", False)),
            documents=documents,
        )

    def claim(
        self, fingerprint: Mapping[str, Any], *, marker: str | None = None, complete: bool = True
    ) -> Checkpoint | None:
        """Check that this state belongs to `fingerprint`; a new state file is claimed for it.

        A new state is written in one transaction with the source database's identity token (`marker`) and
        whether the record of sent rows covers the whole dataset (`complete`: it was empty), so a crash can
        never leave a claimed state without them. Returns the existing checkpoint (None for a new one).
        Raises CheckpointMismatch naming what differs.
        """
        current = self.load()
        if current is None:
            with self._transaction() as db:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                    ("fingerprint", json.dumps(fingerprint)),
                    ("source_marker", json.dumps(marker)),
                    ("complete", json.dumps(complete)),
                ])
            return None
        saved = current.fingerprint
        if saved != json.loads(json.dumps(fingerprint)):
            differ = [f"{part} (saved {saved.get(part)!r}, now {fingerprint.get(part)!r})"
                      for part in sorted(set(saved) | set(fingerprint)) if saved.get(part) != fingerprint.get(part)]
            raise CheckpointMismatch(
                f"the checkpoint {self.path} belongs to another pipeline; it differs in: {'; '.join(differ)}. "
                "To start over, run `bridge checkpoint reset` (PANDA rows are kept and re-sent), "
                "or point [checkpoint] path at a new file."
            )
        return current

    def lookup(self, doc_ids: Iterable[str]) -> dict[str, Sent]:
        """What was last acknowledged for each of these documents (absent: nothing was)."""
        rows = self._select_in(sql.LOOKUP, doc_ids)
        with self._reading():
            return {doc_id: build(Sent, (external_id, sql.hash_value(row_hash)))
                    for doc_id, external_id, row_hash in rows}

    def owners(self, external_ids: Iterable[str]) -> dict[str, str]:
        """The document that owns each of these external_ids (absent: none)."""
        return {external_id: doc_id for external_id, doc_id in self._select_in(sql.OWNERS, external_ids)}

    def _select_in(self, query: str, values: Iterable[str]) -> list[list[Any]]:
        """The rows `query` gathers into one JSON array for the `values` given as a JSON array."""
        with self._reading():
            return self._select_rows(query, values)

    def _select_rows(self, query: str, values: Iterable[str]) -> list[list[Any]]:
        if self._conn is None:
            return []  # no state file yet: nothing was sent (and reading must not create it)
        wanted = list(values)
        if not wanted:
            return []
        if not self._json or sql.has_nul(wanted):
            rows: list[list[Any]] = []
            for start in range(0, len(wanted), sql.LOOKUP_CHUNK):
                chunk = wanted[start:start + sql.LOOKUP_CHUNK]
                statement = sql.ROW_BY_ROW[query].format(",".join("?" * len(chunk)))
                rows += [list(row) for row in self._db.execute(statement, chunk)]
            return rows
        (found,) = self._db.execute(query, (orjson.dumps(wanted),)).fetchone()
        rows = orjson.loads(found)
        return rows

    def intend(self, rows: Iterable[tuple[str, str]]) -> None:
        """Note (doc_id, external_id) pairs about to be written or deleted, durably, before they are sent.

        Until `commit` records the outcome, PANDA's row for each may differ from the record: a crash in
        between leaves them here for `pending` to report to the replay.
        """
        pairs = list(rows)
        if pairs:
            with self._transaction() as db:
                db.execute("INSERT INTO pending_batches (pairs) VALUES (?)", (orjson.dumps(pairs),))
                self._pending_notes().update((external_id, doc_id) for doc_id, external_id in pairs)

    def pending(self, doc_ids: Iterable[str]) -> dict[str, list[str]]:
        """For each of these documents, external_ids a crashed run may have changed in PANDA unrecorded."""
        notes = self._pending_notes()
        wanted = set(notes.values()).intersection(doc_ids) if notes else None
        if not wanted:
            return {}  # the common case: nothing noted, or only the batch planned ahead (other documents)
        found: dict[str, list[str]] = {}
        for external_id, doc_id in notes.items():
            if doc_id in wanted:
                found.setdefault(doc_id, []).append(external_id)
        for external_ids in found.values():
            external_ids.sort()
        return found

    def _pending_notes(self) -> dict[str, str]:
        """Every noted external_id with the document it was last noted for (a later note wins)."""
        if self._conn is None:
            return {}  # no state file yet: nothing was noted (and reading must not create it)
        if self._notes is None:
            notes: dict[str, str] = {}
            with self._reading():
                for (pairs,) in self._db.execute("SELECT pairs FROM pending_batches ORDER BY id"):
                    notes.update((external_id, doc_id) for doc_id, external_id in orjson.loads(pairs))
            self._notes = notes
        return self._notes

    def commit(self, records: Mapping[str, Sent | None], seq: Seq | None) -> None:
        """In one transaction, set each document's record (None forgets it) and move the seq to `seq`.

        `seq` None keeps the saved seq. Records are applied in the given order; forgetting goes first so an
        external_id can pass from one document to another within a batch. The pending notes of every
        document in `records` are cleared: its outcome is now recorded.
        """
        forget = [doc_id for doc_id, sent in records.items() if sent is None]
        keep = [(doc_id, sent.external_id, sent.row_hash) for doc_id, sent in records.items() if sent is not None]
        with self._transaction() as db:
            if records:
                self._settle(db, records)
            # REPLACE removes whatever row holds the doc_id or the external_id, so no DELETE is needed first,
            # and an external_id forgotten or moved away earlier in this commit can be taken.
            if not self._json or sql.has_nul(records) or any("\x00" in eid for _doc_id, eid, _hash in keep):
                db.executemany("DELETE FROM sent WHERE doc_id = ?", [(doc_id,) for doc_id in forget])
                db.executemany("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", keep)
            else:
                if forget:
                    db.execute(sql.FORGET, (orjson.dumps(forget),))
                if keep:
                    db.execute(sql.KEEP, (orjson.dumps(keep),))
            if seq is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (json.dumps(seq.value),))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('saved_at', ?)", (json.dumps(time.time()),))

    def _settle(self, db: sqlite3.Connection, records: Mapping[str, Sent | None]) -> None:
        """Clear the pending notes of the documents in `records`, keeping every other note (inside a transaction)."""
        notes = self._pending_notes()
        left = {external_id: doc_id for external_id, doc_id in notes.items() if doc_id not in records}
        if len(left) == len(notes):
            return  # nothing of these documents was noted (e.g. only the batch planned ahead is pending)
        db.execute("DELETE FROM pending_batches")
        if left:
            pairs = [[doc_id, external_id] for external_id, doc_id in left.items()]
            db.execute("INSERT INTO pending_batches (pairs) VALUES (?)", (orjson.dumps(pairs),))
        self._notes = left

    def reset(self) -> None:
        """Forget everything: seq, fingerprint and the record of sent rows."""
        with self._transaction() as db:
            db.execute("DELETE FROM meta")
            db.execute("DELETE FROM sent")
            db.execute("DELETE FROM pending_batches")
            self._notes = {}

    def records(self, chunk: int = 1000) -> Iterator[list[tuple[str, str, int]]]:
        """Every record as (doc_id, external_id, row_hash), in chunks, so a million cost no more memory than one
        chunk (for verification; nothing is yielded when there is no state file)."""
        if self._conn is None:
            return
        with self._reading():
            cursor = self._db.execute("SELECT doc_id, external_id, row_hash FROM sent")
            while rows := cursor.fetchmany(chunk):
                yield [(doc_id, external_id, sql.hash_value(row_hash)) for doc_id, external_id, row_hash in rows]

    def noted_external_ids(self) -> dict[str, str]:
        """Every external_id noted as about to be written, with its document: a crashed run may have written it
        without recording it (for verification, which counts such rows as the bridge's)."""
        if self._conn is None:
            return {}
        notes: dict[str, str] = {}
        with self._reading():
            for (pairs,) in self._db.execute("SELECT pairs FROM pending_batches ORDER BY id"):
                notes.update((external_id, doc_id) for doc_id, external_id in orjson.loads(pairs))
        return notes

    def put_records(self, records: Mapping[str, Sent | None]) -> None:
        """Set (or, with None, forget) these documents' records in one transaction; the seq and the pending
        notes stay as they are. For repair and rebuild, which change rows outside the feed: safe beside a
        running pipeline's own connection, since it touches neither its seq nor its notes."""
        forget = [(doc_id,) for doc_id, sent in records.items() if sent is None]
        keep = [(doc_id, sent.external_id, sent.row_hash) for doc_id, sent in records.items() if sent is not None]
        with self._transaction() as db:
            db.executemany("DELETE FROM sent WHERE doc_id = ?", forget)
            db.executemany("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", keep)

    def mark_complete(self, complete: bool) -> None:
        """Say whether the record covers every row of the dataset (set by a rebuild once it has finished)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('complete', ?)", (json.dumps(complete),))

    def sent_external_ids(self) -> Sequence[str]:
        """Every external_id the record says PANDA holds (for verification tools)."""
        with self._reading():
            return [row[0] for row in self._db.execute("SELECT external_id FROM sent")]
