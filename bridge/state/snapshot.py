"""A state store that reads the state file once into memory and never writes to disk.

For the commands that must leave everything as they found it (`status`, `check`, `--dry-run`): the file
is opened read-only and copied with SQLite's backup API; claims, notes and commits then change only the
copy. A state file that does not exist reads as a new, empty state, and is not created.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from bridge.errors import StateError
from bridge.state import checkpoint_sql as sql
from bridge.state.checkpoint import StateStore

__all__ = ["SnapshotStore"]


class SnapshotStore(StateStore):
    """StateStore over an in-memory copy of `path`: the same reads, and writes that go nowhere."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._open()  # also for a missing file: claims and commits of a dry run need somewhere to go

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._json = sql.has_json_functions()
                copy = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                if self.path.exists():
                    source = sqlite3.connect(_read_only_uri(self.path), uri=True)
                    try:
                        source.backup(copy)
                    finally:
                        source.close()
                copy.executescript(sql.SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise StateError(f"cannot read the checkpoint {self.path}: {exc}") from None
            self._conn = copy
        return self._conn


def _read_only_uri(path: Path) -> str:
    """A URI that reads `path` without creating anything beside it.

    Read-only SQLite still creates the `-wal` and `-shm` files of a WAL database when they are missing;
    they are missing only when no connection is open (the last one removes them), and then no writer can
    change the file under the copy's feet, so it is opened `immutable`. While a bridge runs they exist, and
    a plain read-only open reads through them, including commits not yet checkpointed into the main file.
    """
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    wal = path.with_name(path.name + "-wal")
    return uri if wal.exists() else uri + "&immutable=1"
