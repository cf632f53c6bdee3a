"""The temporary on-disk SQLite a verify streams both sides into and diffs there, so memory stays flat.

    source (external_id, doc_id, row_hash)   rows the source maps to now
    unmapped (doc_id)                        live documents that cannot be mapped (they keep any old row)
    panda (external_id, row_hash)            rows the listing gave, deduplicated
    owned (external_id, doc_id)              rows the bridge's record (or a pending note) says it wrote
    moved (doc_id)                           documents that changed since the last read of the source
    diff (external_id, kind, doc_id, ...)    the differences found, narrowed by each re-read
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from bridge.errors import FatalError
from bridge.verify.compare import EXTRA_OWNED, EXTRA_UNOWNED, KINDS, MISSING, STALE

__all__ = ["Scratch", "Candidate"]

_SCHEMA = """
CREATE TABLE source (external_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL, row_hash INTEGER NOT NULL);
CREATE INDEX source_doc ON source (doc_id);
CREATE TABLE unmapped (doc_id TEXT PRIMARY KEY);
CREATE TABLE panda (external_id TEXT PRIMARY KEY, row_hash INTEGER NOT NULL);
CREATE TABLE owned (external_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL);
CREATE TABLE moved (doc_id TEXT PRIMARY KEY);
CREATE TABLE diff (
    external_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    doc_id TEXT,
    panda_hash INTEGER,
    moving INTEGER NOT NULL DEFAULT 0
);
"""

Candidate = tuple[str, str, str | None, int | None]
"""(external_id, kind, doc_id, panda_hash) of one difference under review."""


class Scratch:
    """One verify's temporary database; removed on close. Used from one thread."""

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bridge-verify-", dir=directory)
        try:
            self._db = sqlite3.connect(str(Path(self._dir.name) / "verify.sqlite"), isolation_level=None)
            # Scratch data: nothing to keep after a crash, so no journal and no fsync; a small page cache
            # keeps memory flat whatever the row count.
            self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-16000;"
                                   "PRAGMA temp_store=FILE;" + _SCHEMA)
        except sqlite3.Error as exc:
            self._dir.cleanup()
            raise FatalError(f"cannot create the verify's temporary database: {exc}") from None

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def _many(self, statement: str, rows: Iterable[tuple[object, ...]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(statement, rows)

    # -- loading ---------------------------------------------------------------------------------------

    def set_source(self, rows: list[tuple[str, str, int]], dropped: list[str], unmapped: list[str]) -> None:
        """Documents read from the source: rows they map to, documents that want no row, unmappable ones.

        A document read again replaces what was known of it (its external_id may have changed).
        """
        self._db.execute("BEGIN")
        try:
            gone = [(doc_id,) for doc_id in dropped + unmapped + [doc_id for _eid, doc_id, _hash in rows]]
            self._db.executemany("DELETE FROM source WHERE doc_id = ?", gone)
            self._db.executemany("DELETE FROM unmapped WHERE doc_id = ?", gone)
            self._db.executemany("INSERT OR REPLACE INTO source VALUES (?, ?, ?)", rows)
            self._db.executemany("INSERT OR IGNORE INTO unmapped VALUES (?)", [(doc_id,) for doc_id in unmapped])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def add_panda(self, rows: list[tuple[str, int]]) -> None:
        """Rows of one listing page; a row listed twice (it moved while the listing ran) keeps the last read."""
        self._many("INSERT OR REPLACE INTO panda VALUES (?, ?)", rows)

    def add_owned(self, rows: list[tuple[str, str]]) -> None:
        """(external_id, doc_id) pairs the bridge wrote."""
        self._many("INSERT OR REPLACE INTO owned VALUES (?, ?)", rows)

    def clear_moved(self) -> None:
        self._db.execute("DELETE FROM moved")

    def add_moved(self, doc_ids: list[str]) -> None:
        self._many("INSERT OR IGNORE INTO moved VALUES (?)", [(doc_id,) for doc_id in doc_ids])

    # -- diffing -----------------------------------------------------------------------------------------

    def find_differences(self) -> None:
        """Fill `diff` from the three sides (one pass of joins, on disk)."""
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM diff")
        self._db.execute(
            "INSERT INTO diff (external_id, kind, doc_id, panda_hash) "
            f"SELECT s.external_id, '{MISSING}', s.doc_id, NULL FROM source s "
            "WHERE NOT EXISTS (SELECT 1 FROM panda p WHERE p.external_id = s.external_id)"
        )
        self._db.execute(
            "INSERT INTO diff (external_id, kind, doc_id, panda_hash) "
            f"SELECT s.external_id, '{STALE}', s.doc_id, p.row_hash FROM source s "
            "JOIN panda p ON p.external_id = s.external_id WHERE p.row_hash != s.row_hash"
        )
        # A row whose owner is live but cannot be mapped is kept by the bridge on purpose (planning.py): it is
        # the dead-letter file's business, not a difference.
        self._db.execute(
            "INSERT INTO diff (external_id, kind, doc_id, panda_hash) "
            f"SELECT p.external_id, CASE WHEN o.doc_id IS NULL THEN '{EXTRA_UNOWNED}' ELSE '{EXTRA_OWNED}' END, "
            "o.doc_id, p.row_hash FROM panda p LEFT JOIN owned o ON o.external_id = p.external_id "
            "WHERE NOT EXISTS (SELECT 1 FROM source s WHERE s.external_id = p.external_id) "
            "AND (o.doc_id IS NULL OR o.doc_id NOT IN (SELECT doc_id FROM unmapped))"
        )
        self._db.execute("COMMIT")

    def candidates(self, chunk: int = 200, kinds: Iterable[str] = KINDS, *,
                   settled: bool = False) -> Iterator[list[Candidate]]:
        """The differences of these kinds (only those no longer changing, with `settled`) in external_id
        order, a chunk at a time (keyset paging, so the caller may update or delete the rows it was given)."""
        wanted = list(kinds)
        marks = ",".join("?" * len(wanted))
        only = " AND moving = 0" if settled else ""
        after = ""
        while True:
            rows = self._db.execute(
                f"SELECT external_id, kind, doc_id, panda_hash FROM diff WHERE external_id > ? AND kind IN ({marks})"
                f"{only} ORDER BY external_id LIMIT ?", (after, *wanted, chunk)).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def expected(self, external_ids: list[str]) -> dict[str, tuple[str, int]]:
        """The (doc_id, row_hash) the source maps to for each of these external_ids (absent: no row wanted)."""
        found: dict[str, tuple[str, int]] = {}
        for start in range(0, len(external_ids), 500):
            part = external_ids[start:start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT external_id, doc_id, row_hash FROM source WHERE external_id IN ({marks})"
            found.update((eid, (doc_id, digest)) for eid, doc_id, digest in self._db.execute(query, part))
        return found

    def moved_among(self, doc_ids: list[str]) -> set[str]:
        """Which of these documents changed in the source since the previous read."""
        if not doc_ids:
            return set()
        query = f"SELECT doc_id FROM moved WHERE doc_id IN ({','.join('?' * len(doc_ids))})"
        return {doc_id for (doc_id,) in self._db.execute(query, doc_ids)}

    def settle(self, resolved: list[str], updated: list[tuple[str, str | None, int | None, bool, str]]) -> None:
        """Drop resolved differences; set (kind, doc_id, panda_hash, moving) of those still there."""
        self._db.execute("BEGIN")
        self._db.executemany("DELETE FROM diff WHERE external_id = ?", [(eid,) for eid in resolved])
        self._db.executemany(
            "UPDATE diff SET kind = ?, doc_id = ?, panda_hash = ?, moving = ? WHERE external_id = ?",
            [(kind, doc_id, digest, int(moving), eid) for eid, doc_id, digest, moving, kind in updated])
        self._db.execute("COMMIT")

    # -- results -----------------------------------------------------------------------------------------

    def counts(self, *, moving: bool = False) -> dict[str, int]:
        """Differences per kind, of settled ones (or, with `moving`, of those still changing)."""
        rows = self._db.execute("SELECT kind, count(*) FROM diff WHERE moving = ? GROUP BY kind", (int(moving),))
        found = dict(rows.fetchall())
        return {kind: found.get(kind, 0) for kind in KINDS}

    def settled_examples(self, kind: str, limit: int) -> list[tuple[str, str | None]]:
        """(external_id, doc_id) of the first `limit` settled differences of `kind`."""
        return self._db.execute("SELECT external_id, doc_id FROM diff WHERE kind = ? AND moving = 0 "
                                "ORDER BY external_id LIMIT ?", (kind, limit)).fetchall()

    def total(self, table: str) -> int:
        if table not in ("source", "panda", "owned", "unmapped", "diff"):
            raise ValueError(table)
        (count,) = self._db.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(count)

    def is_moving(self) -> bool:
        return self._db.execute("SELECT 1 FROM diff WHERE moving = 1 LIMIT 1").fetchone() is not None

    def panda_rows(self, chunk: int = 1000) -> Iterator[list[tuple[str, int, str | None]]]:
        """Every listed row as (external_id, row_hash, doc_id the source maps to it or None), for rebuild."""
        cursor = self._db.execute("SELECT p.external_id, p.row_hash, s.doc_id FROM panda p "
                                  "LEFT JOIN source s ON s.external_id = p.external_id")
        while rows := cursor.fetchmany(chunk):
            yield rows
