"""Loads and atomically saves the last seq PANDA acknowledged, with the record of what was sent.

The state lives in one SQLite file: the seq, the fingerprint of the pipeline it belongs to, and for each
document the external_id and row hash last acknowledged. One transaction saves a batch's records and its
seq together, so a crash at any instant leaves either the old state or the new one, never a torn file.
Before a batch is sent, the rows it touches are noted as pending: after a crash between PANDA's answer and
the commit, those rows may differ from the record, so the replay re-sends or deletes them rather than skip.

A commit may be held (`commit(..., hold=True)`, see core/grouping.py): its records and seq are kept in
memory, where lookups, owners and pending notes already see them, and written with the next commit that is
not held, by `flush` or by `close`. Until then the file keeps the older seq and the held rows' pending
notes, so a crash replays the held batches, which is still at least once.
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
        """The pending notes (external_id -> doc_id), read once: this store is their only writer while it is
        open, so each batch need not read and decode them again. Ahead of the file while commits are held."""
        self._held: dict[str, Sent | None] = {}
        """Records of held commits, not yet in the file (doc_id -> the latest record; None forgets it)."""
        self._held_owners: dict[str, str] = {}
        """external_id -> the held document that took it last (stale once that document's record moved on)."""
        self._held_seq: Seq | None = None
        """The seq of the latest held commit that moves the seq."""
        self._holding = False
        """True while a commit is held (it may hold a seq and no records)."""
        self._notes_differ = False
        """True when the pending notes in memory were settled further than the file's (by held commits)."""
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
        """Write what is held, then close the file (it is closed even when that write fails)."""
        try:
            self.flush()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._forget_notes()

    def _forget_notes(self) -> None:
        """Read the pending notes from the file again when next needed. Notes that held commits settled come
        back with them: their documents are then treated as unsure, which only costs a re-send."""
        self._notes = None
        self._notes_differ = False

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._forget_notes()  # may hold this transaction's changes: read again from the file
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._forget_notes()
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
        """The saved checkpoint (held commits are written first), or None for a new state file.

        Raises StateError when it cannot be read or what is held cannot be written.
        """
        self.flush()
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
        """What was last acknowledged for each of these documents (absent: nothing was), held commits included."""
        held = self._held
        wanted = list(doc_ids)
        rows = self._select_in(sql.LOOKUP, [doc_id for doc_id in wanted if doc_id not in held] if held else wanted)
        with self._reading():
            found = {doc_id: build(Sent, (external_id, sql.hash_value(row_hash)))
                     for doc_id, external_id, row_hash in rows}
        if held:
            for doc_id in wanted:
                sent = held.get(doc_id)
                if sent is not None:
                    found[doc_id] = sent
        return found

    def owners(self, external_ids: Iterable[str]) -> dict[str, str]:
        """The document that owns each of these external_ids (absent: none), held commits included."""
        wanted = list(external_ids)
        found = {external_id: doc_id for external_id, doc_id in self._select_in(sql.OWNERS, wanted)}
        held = self._held
        if held:
            # A held record decides its document's external_id: the file's row for it is gone or moved.
            found = {external_id: doc_id for external_id, doc_id in found.items() if doc_id not in held}
            for external_id in wanted:
                doc_id = self._held_owners.get(external_id)
                sent = held.get(doc_id) if doc_id is not None else None
                if sent is not None and sent.external_id == external_id:
                    found[external_id] = doc_id
        return found

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

    def commit(self, records: Mapping[str, Sent | None], seq: Seq | None, *, hold: bool = False) -> None:
        """Set each document's record (None forgets it) and move the seq to `seq`, in one transaction.

        `seq` None keeps the saved seq. Forgetting goes first, so an external_id can pass from one document
        to another within a batch. The pending notes of every document in `records` are cleared: its outcome
        is now recorded. With `hold`, the commit is kept in memory and written, with every commit held
        before it, by the next commit without `hold`, by `flush` or by `close` (see the module docstring).
        """
        if records:
            self._settle(records)
        if not self._holding and not hold:
            self._write(records, seq)  # the common case while following: nothing held, nothing to merge
            return
        held = self._held
        owners = self._held_owners
        for doc_id, sent in records.items():
            held[doc_id] = sent
            if sent is not None:
                owners[sent.external_id] = doc_id
        if seq is not None:
            self._held_seq = seq
        self._holding = True
        if not hold:
            self.flush()

    def flush(self) -> tuple[int, Seq | None] | None:
        """Write every held commit in one transaction; returns how many documents' records it wrote and the
        seq it saved (None: it kept the saved seq), or None when nothing was held."""
        if not self._holding:
            return None
        held, seq = self._held, self._held_seq
        self._write(held, seq)
        self._held = {}
        self._held_owners = {}
        self._held_seq = None
        self._holding = False
        return len(held), seq

    @property
    def held(self) -> int:
        """How many documents' records are held, not yet in the file."""
        return len(self._held)

    def _write(self, records: Mapping[str, Sent | None], seq: Seq | None) -> None:
        """Write records, the seq and the pending notes as memory has them, in one transaction."""
        forget = [doc_id for doc_id, sent in records.items() if sent is None]
        keep = [(doc_id, sent.external_id, sent.row_hash) for doc_id, sent in records.items() if sent is not None]
        with self._transaction() as db:
            if self._notes_differ:
                self._write_notes(db)
            # REPLACE removes whatever row holds the doc_id or the external_id, so no DELETE is needed first,
            # and an external_id forgotten or moved away earlier in this commit can be taken.
            if not self._json or sql.has_nul(records) or any("\x00" in eid for _doc_id, eid, _hash in keep):
                db.executemany("DELETE FROM sent WHERE doc_id = ?", [(doc_id,) for doc_id in forget])
                db.executemany("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", keep)
            else:  # a statement per WRITE_CHUNK records: a group's one JSON text would cost megabytes at its peak
                for start in range(0, len(forget), sql.WRITE_CHUNK):
                    db.execute(sql.FORGET, (orjson.dumps(forget[start:start + sql.WRITE_CHUNK]),))
                for start in range(0, len(keep), sql.WRITE_CHUNK):
                    db.execute(sql.KEEP, (orjson.dumps(keep[start:start + sql.WRITE_CHUNK]),))
            if seq is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (json.dumps(seq.value),))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('saved_at', ?)", (json.dumps(time.time()),))
        self._notes_differ = False

    def _settle(self, records: Mapping[str, Sent | None]) -> None:
        """Clear the pending notes of the documents in `records` in memory, keeping every other note; the file's
        notes are rewritten with the next write (`_notes_differ`)."""
        notes = self._pending_notes()
        left = {external_id: doc_id for external_id, doc_id in notes.items() if doc_id not in records}
        if len(left) == len(notes):
            return  # nothing of these documents was noted (e.g. only the batch planned ahead is pending)
        self._notes = left
        self._notes_differ = True

    def _write_notes(self, db: sqlite3.Connection) -> None:
        """Replace the file's pending notes with memory's (inside a transaction)."""
        db.execute("DELETE FROM pending_batches")
        notes = self._notes or {}
        if notes:
            pairs = [[doc_id, external_id] for external_id, doc_id in notes.items()]
            db.execute("INSERT INTO pending_batches (pairs) VALUES (?)", (orjson.dumps(pairs),))

    def reset(self) -> None:
        """Forget everything: seq, fingerprint and the record of sent rows."""
        self._held, self._held_owners, self._held_seq, self._holding = {}, {}, None, False
        with self._transaction() as db:
            db.execute("DELETE FROM meta")
            db.execute("DELETE FROM sent")
            db.execute("DELETE FROM pending_batches")
            self._notes = {}
            self._notes_differ = False

    def records(self, chunk: int = 1000) -> Iterator[list[tuple[str, str, int]]]:
        """Every record as (doc_id, external_id, row_hash), in chunks, so a million cost no more memory than one
        chunk (for verification; nothing is yielded when there is no state file)."""
        self.flush()
        if self._conn is None:
            return
        with self._reading():
            cursor = self._db.execute("SELECT doc_id, external_id, row_hash FROM sent")
            while rows := cursor.fetchmany(chunk):
                yield [(doc_id, external_id, sql.hash_value(row_hash)) for doc_id, external_id, row_hash in rows]

    def noted_external_ids(self) -> dict[str, str]:
        """Every external_id noted as about to be written, with its document: a crashed run may have written it
        without recording it (for verification, which counts such rows as the bridge's)."""
        self.flush()
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
        self.flush()
        forget = [(doc_id,) for doc_id, sent in records.items() if sent is None]
        keep = [(doc_id, sent.external_id, sent.row_hash) for doc_id, sent in records.items() if sent is not None]
        with self._transaction() as db:
            db.executemany("DELETE FROM sent WHERE doc_id = ?", forget)
            db.executemany("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", keep)

    def mark_complete(self, complete: bool) -> None:
        """Say whether the record covers every row of the dataset (set by a rebuild once it has finished)."""
        self.flush()
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('complete', ?)", (json.dumps(complete),))

    def sent_external_ids(self) -> Sequence[str]:
        """Every external_id the record says PANDA holds (for verification tools)."""
        self.flush()
        with self._reading():
            return [row[0] for row in self._db.execute("SELECT external_id FROM sent")]
