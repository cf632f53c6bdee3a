"""The checkpoint store's SQLite schema and statements, and what they need to know about the SQLite library.

StateStore (checkpoint.py) runs them; nothing here holds a connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

__all__ = ["SCHEMA", "KEEP", "FORGET", "LOOKUP", "OWNERS", "ROW_BY_ROW", "LOOKUP_CHUNK", "WRITE_CHUNK", "hash_value",
           "has_nul", "has_json_functions"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sent (
    doc_id TEXT PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    row_hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_batches (id INTEGER PRIMARY KEY, pairs BLOB NOT NULL);
"""
# pending_batches: one row per noted batch, a JSON list of [doc_id, external_id] pairs. One row per batch
# instead of one per operation keeps the durable note before each send cheap (it is on every batch's path).
# sent.row_hash: a signed 64-bit integer; files of earlier versions hold the same 8 bytes as a BLOB, which
# JSON cannot carry: those are read as hex text.
#
# A batch's records are written and read with one statement each, the rows travelling as one JSON array
# (json_each, json_group_array): Python's sqlite3 releases the GIL for every step of a statement, so
# executemany over 1,000 rows handed the GIL to the reader and writer threads 1,000 times per batch, and
# the commit waited for it back each time. SQLite's JSON functions cut text at a NUL character, so a batch
# with one in a document id or an external_id takes the row-by-row statements instead, and so does every
# batch where Python's SQLite has no JSON functions (built without JSON1, before 3.38).
JSON_VALUES = "SELECT value FROM json_each(?)"
KEEP = (
    "INSERT OR REPLACE INTO sent (doc_id, external_id, row_hash) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') "
    "FROM json_each(?) ORDER BY key"
)
FORGET = "DELETE FROM sent WHERE doc_id IN (" + JSON_VALUES + ")"
LOOKUP = (
    "SELECT json_group_array(json_array(doc_id, external_id, "
    "CASE WHEN typeof(row_hash) = 'blob' THEN hex(row_hash) ELSE row_hash END)) "
    "FROM sent WHERE doc_id IN (" + JSON_VALUES + ")"
)
OWNERS = (
    "SELECT json_group_array(json_array(external_id, doc_id)) FROM sent "
    "WHERE external_id IN (" + JSON_VALUES + ")"
)
ROW_BY_ROW = {  # the same, one bound parameter per value
    LOOKUP: "SELECT doc_id, external_id, row_hash FROM sent WHERE doc_id IN ({})",
    OWNERS: "SELECT external_id, doc_id FROM sent WHERE external_id IN ({})",
}
LOOKUP_CHUNK = 500  # row by row: stays under SQLite's host-parameter limit
WRITE_CHUNK = 1000
"""Records per statement when a group of held commits is written (one transaction, several statements):
10,000 records in one JSON text raised a process's peak memory by 7-9 MB against 1,000 (SQLite parses and
sorts the whole text), and wrote ordered ids no faster."""


def hash_value(stored: int | str | bytes) -> int:
    """A stored row hash as the integer planning.row_hash gives (older files hold its 8 bytes: read as hex
    text through JSON, as bytes row by row)."""
    if isinstance(stored, int):
        return stored
    return int.from_bytes(bytes.fromhex(stored) if isinstance(stored, str) else stored, "big", signed=True)


def has_nul(values: Iterable[str]) -> bool:
    """True when a value holds a NUL character, which SQLite's JSON functions would cut off."""
    return any("\x00" in value for value in values)


def has_json_functions() -> bool:
    """True when the SQLite library Python uses has json_each and json_group_array."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("SELECT json_group_array(value) FROM json_each('[1]')").fetchone()
    except sqlite3.Error:
        return False
    finally:
        probe.close()
    return True
