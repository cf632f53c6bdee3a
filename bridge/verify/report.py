"""What one verify found: counts and examples per kind, as JSON or text, and the numbers metrics export (pure)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.verify.compare import KINDS

__all__ = ["Report", "VerifyObserver", "LatestVerify"]


@dataclass(frozen=True)
class Report:
    """The outcome of one verify."""

    counts: Mapping[str, int]
    """Differences per kind (every kind of compare.KINDS is present)."""
    examples: Mapping[str, list[dict[str, Any]]]
    """Up to N examples per kind: external_id, doc_id, and the cells on each side where known."""
    source_rows: int = 0
    """Rows the source maps to (live documents the filter accepts)."""
    panda_rows: int = 0
    """Distinct rows the listing of the dataset gave."""
    recorded: int = 0
    """Rows the bridge's record says it wrote."""
    in_flight: int = 0
    """Differences still changing when they were last read (a running bridge is delivering them): not judged."""
    unmappable: int = 0
    """Live documents that cannot be mapped to a row (they are in the dead-letter file)."""
    finished_at: float = 0.0
    """Unix time the verify ended."""
    seconds: float = 0.0
    """How long it took."""
    notes: list[str] = field(default_factory=list)
    """Things a reader should know, e.g. a listing that changed while it was read."""

    @property
    def in_sync(self) -> bool:
        """True when no difference of any kind was found (changes in flight are not differences)."""
        return not any(self.counts.values())

    def as_json(self) -> dict[str, Any]:
        """One object: each kind as {"count", "examples"}, then in_sync and the totals."""
        out: dict[str, Any] = {kind: {"count": self.counts.get(kind, 0), "examples": list(self.examples.get(kind, []))}
                               for kind in KINDS}
        out.update(in_sync=self.in_sync, in_flight=self.in_flight, source_rows=self.source_rows,
                   panda_rows=self.panda_rows, recorded=self.recorded, unmappable=self.unmappable,
                   seconds=round(self.seconds, 3), notes=list(self.notes))
        return out

    def as_text(self) -> str:
        """A short human summary: a line per kind with its examples' external_ids."""
        lines = [("in sync" if self.in_sync else "NOT in sync")
                 + f": {self.source_rows} source rows, {self.panda_rows} PANDA rows, {self.recorded} recorded"
                 + f" ({self.seconds:.1f} s)"]
        for kind in KINDS:
            count = self.counts.get(kind, 0)
            shown = ", ".join(str(e.get("external_id")) for e in self.examples.get(kind, []))
            lines.append(f"  {kind:14} {count}" + (f"  e.g. {shown}" if count and shown else ""))
        if self.in_flight:
            lines.append(f"  {'in flight':14} {self.in_flight}  (still changing when read again; not judged)")
        if self.unmappable:
            lines.append(f"  {'unmappable':14} {self.unmappable}  (see `bridge deadletter list`)")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


class VerifyObserver(Protocol):
    """Told about every finished verify; the metrics registry implements it (bridge_verify_* gauges)."""

    def verified(self, report: Report) -> None: ...


class LatestVerify:
    """The last verify's numbers, for a metrics endpoint to read at scrape time (thread-safe).

    `differences()` is what `bridge_verify_differences{kind}` exports, `timestamp()` what
    `bridge_verify_last_timestamp_seconds` exports; both are None-free once a verify has finished.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._report: Report | None = None

    def verified(self, report: Report) -> None:
        with self._lock:
            self._report = report

    def differences(self) -> dict[str, int]:
        """Differences per kind in the last verify (all zero before the first)."""
        with self._lock:
            counts = self._report.counts if self._report is not None else {}
        return {kind: counts.get(kind, 0) for kind in KINDS}

    def timestamp(self) -> float | None:
        """Unix time the last verify finished, or None before the first."""
        with self._lock:
            return self._report.finished_at if self._report is not None else None
