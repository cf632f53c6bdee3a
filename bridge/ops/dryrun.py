"""`--dry-run`: a sink and a dead-letter file that read what they may and write nothing.

The pipeline reads, maps and plans as usual; `DryRunSink` counts what it would send and prints the first
rows, and PANDA is only asked GETs (the dataset and its columns). Together with the in-memory state of
`SnapshotStore` and no marker document, a dry run leaves both ends and the state directory untouched.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from bridge.config.settings import RetrySettings
from bridge.errors import NotFoundError
from bridge.model import Delete, Refusal, Upsert
from bridge.sink.panda import PandaSink
from bridge.state.deadletter import DeadLetterFile

__all__ = ["DryRunSink", "DryDeadLetters"]

logger = logging.getLogger(__name__)

SHOWN = 10
"""How many rows a dry run prints before it only counts."""


class DryRunSink:
    """Stands in for PandaSink: the dataset is read, rows are counted and shown, nothing is sent."""

    def __init__(self, real: PandaSink, out: TextIO | None = None) -> None:
        self._real = real
        self._out = out or sys.stdout
        self._missing = False
        self.upserts = 0
        self.deletes = 0
        self.batches = 0
        self._shown = 0

    @property
    def retry(self) -> RetrySettings:
        """The real sink's retry settings (the start-up checks swap them, as for any adapter)."""
        return self._real.retry

    @retry.setter
    def retry(self, value: RetrySettings) -> None:
        self._real.retry = value

    def ensure_dataset(self, columns: Sequence[str], *, create: bool, name: str | None = None) -> None:
        """Check the dataset's columns as a run would; a missing one is fine where the run would create it."""
        try:
            self._real.ensure_dataset(columns, create=False, name=name)
        except NotFoundError:
            if not create:
                raise
            self._missing = True
            logger.info("dry run: PANDA dataset %r does not exist; a run would create it", self._real.slug)

    def dataset_slugs(self) -> list[str]:
        return self._real.dataset_slugs()

    def dataset_info(self) -> dict[str, Any]:
        return {"row_count": 0} if self._missing else self._real.dataset_info()

    def upsert(self, rows: Sequence[Upsert]) -> list[Refusal]:
        self.batches += 1
        self.upserts += len(rows)
        for row in rows:
            self._show({"upsert": row.external_id, "data": list(row.data)})
        return []

    def delete(self, rows: Sequence[Delete]) -> list[Refusal]:
        self.batches += 1
        self.deletes += len(rows)
        for row in rows:
            self._show({"delete": row.external_id})
        return []

    def _show(self, line: dict[str, Any]) -> None:
        if self._shown < SHOWN:
            self._shown += 1
            print("would send " + json.dumps(line, ensure_ascii=False), file=self._out, flush=True)

    def summary(self, dead_letters: int = 0) -> str:
        """What the run would have done, for the end of a dry run."""
        return (f"dry run: would send {self.upserts} upserts and {self.deletes} deletes "
                f"(first {min(SHOWN, self.upserts + self.deletes)} shown) and dead-letter {dead_letters} changes; "
                "nothing was written")

    def close(self) -> None:
        self._real.close()


class DryDeadLetters(DeadLetterFile):
    """The dead-letter file as it is, read as usual; what would be appended is only counted and logged."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.would_append = 0

    def append(self, refusals: Iterable[Refusal]) -> int:
        count = sum(1 for _ in refusals)
        self.would_append += count
        return count
