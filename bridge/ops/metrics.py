"""The bridge's Prometheus series, from prometheus-client, each labelled with the pipeline's name.

Counters are incremented from events (per chunk, batch or request, never per row); the gauges that are
a view of where the pipeline stands (pending, lag, caught up, up) are read from the Tracker at scrape time.
A registry of its own per pipeline, so nothing of the process-wide default registry leaks in or out.
"""

from __future__ import annotations

import functools
import math
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bridge.ops.events import PANDA, SOURCE, Events
from bridge.ops.tracker import Tracker

__all__ = ["Metrics", "VerifyNumbers"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class VerifyNumbers(Protocol):
    """The last periodic verify's outcome, read at scrape time (verify.report.LatestVerify is one)."""

    def differences(self) -> dict[str, int]: ...
    def timestamp(self) -> float | None: ...


class Metrics(Events):
    """Every series of one pipeline; `render()` gives the text exposition format.

    With `verify` (a periodic verify runs in this process) it also exports `bridge_verify_differences{kind}`
    and `bridge_verify_last_timestamp_seconds` (0 before the first verify finished).
    """

    def __init__(self, pipeline: str, tracker: Tracker, verify: VerifyNumbers | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._tracker = tracker
        labels = {"pipeline": pipeline}

        def counter(name: str, text: str) -> Counter:
            return Counter(name, text, ["pipeline"], registry=self.registry)

        def gauge(name: str, text: str, extra: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, text, ["pipeline", *extra], registry=self.registry)

        self._changes = counter("bridge_changes", "Rows read from the source.").labels(**labels)
        self._upserts = counter("bridge_upserts", "Rows PANDA acknowledged as created or replaced.").labels(**labels)
        self._deletes = counter("bridge_deletes", "Rows PANDA acknowledged as deleted.").labels(**labels)
        self._unchanged = counter("bridge_unchanged",
                                  "Changes not sent because PANDA already holds the same row.").labels(**labels)
        self._dead = counter("bridge_dead_letters", "Changes written to the dead-letter file.").labels(**labels)
        self._retries = Counter("bridge_retries", "Transient faults retried.", ["pipeline", "what", "error"],
                                registry=self.registry)
        self._pipeline = pipeline
        self._request_seconds = Histogram("bridge_panda_request_seconds", "Time of each PANDA request.",
                                          ["pipeline", "method"], buckets=_BUCKETS, registry=self.registry)
        gauge("bridge_pending_changes", "Changes in the source not yet committed to PANDA (NaN until known).").labels(
            **labels).set_function(functools.partial(_pending, tracker))
        gauge("bridge_lag_seconds", "Age of the oldest change read but not yet committed (0 when caught up).").labels(
            **labels).set_function(tracker.lag)
        gauge("bridge_last_commit_timestamp_seconds", "Unix time of the last committed batch (0 before one).").labels(
            **labels).set_function(lambda: tracker.last_commit or 0.0)
        gauge("bridge_caught_up", "1 once the feed reached its end and everything read is committed.").labels(
            **labels).set_function(lambda: 1.0 if tracker.caught_up else 0.0)
        gauge("bridge_ready", "1 when /readyz answers 200: caught up, and both ends answered the last request.").labels(
            **labels).set_function(lambda: 1.0 if tracker.readiness().ready else 0.0)
        up = gauge("bridge_up", "1 when the last request to that end got an answer.", ("end",))
        for end in (SOURCE, PANDA):
            up.labels(pipeline=pipeline, end=end).set_function(functools.partial(_is_up, tracker, end))
        if verify is not None:
            self._verify_series(pipeline, verify)

    def _verify_series(self, pipeline: str, verify: VerifyNumbers) -> None:
        differences = Gauge("bridge_verify_differences", "Differences the last periodic verify found, per kind.",
                            ["pipeline", "kind"], registry=self.registry)
        for kind in verify.differences():
            differences.labels(pipeline=pipeline, kind=kind).set_function(
                functools.partial(_differences, verify, kind))
        Gauge("bridge_verify_last_timestamp_seconds", "Unix time the last periodic verify finished (0 before one).",
              ["pipeline"], registry=self.registry).labels(pipeline=pipeline).set_function(
            functools.partial(_verified_at, verify))

    def read(self, rows: int, changes: int) -> None:
        self._changes.inc(rows)

    def committed(self, received: int, upserts: int, deletes: int, unchanged: int) -> None:
        self._upserts.inc(upserts)
        self._deletes.inc(deletes)
        self._unchanged.inc(unchanged)

    def dead_lettered(self, count: int) -> None:
        self._dead.inc(count)

    def retried(self, what: str, error: str) -> None:
        self._retries.labels(pipeline=self._pipeline, what=what, error=error).inc()

    def request(self, end: str, ok: bool, method: str = "", seconds: float | None = None) -> None:
        if end == PANDA and seconds is not None:
            self._request_seconds.labels(pipeline=self._pipeline, method=method).observe(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def _is_up(tracker: Tracker, end: str) -> float:
    return 1.0 if tracker.up[end] else 0.0


def _differences(verify: VerifyNumbers, kind: str) -> float:
    return float(verify.differences().get(kind, 0))


def _verified_at(verify: VerifyNumbers) -> float:
    return verify.timestamp() or 0.0


def _pending(tracker: Tracker) -> float:
    pending = tracker.pending()  # unknown before CouchDB 2+'s first page: NaN, never a misleading 0
    return math.nan if pending is None else float(pending)
