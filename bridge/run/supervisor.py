"""Many pipelines in one process: one thread each, started, watched and stopped together.

Each pipeline has what a lone bridge has: its own Bridge (reader, writer, state file, dead-letter file),
its own stop flag, the lock of its state file and its own observers (the metrics label is its name).
Only two things are shared: the stop-all flag (SIGTERM, `--fail-fast`) and, per PANDA, the gate that
hands out request turns fairly (run/gate.py). A pipeline that stops on a fatal error stops alone: its
error is logged with its name and kept for status and /healthz; the others go on. `run()` returns when
every pipeline has stopped, with the exit code of the first fatal error (0 when all stopped cleanly).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.config.pipelines import Pipeline
from bridge.errors import BridgeError, StopRequested
from bridge.model import Seq
from bridge.ops import logcontext
from bridge.ops.events import Events
from bridge.ops.tracker import Tracker
from bridge.run.builder import Bridge
from bridge.run.gate import PandaGate, gated_session, panda_key
from bridge.state.lock import InstanceLock
from bridge.verify.schedule import PeriodicVerify

__all__ = ["Supervisor", "Outcome"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class Outcome:
    """How one pipeline ended."""

    name: str
    error: BaseException | None
    """None for a clean stop."""

    @property
    def exit_code(self) -> int:
        if self.error is None:
            return 0
        return self.error.exit_code if isinstance(self.error, BridgeError) else 1


@dataclass
class _Running:
    pipeline: Pipeline
    stop: threading.Event
    thread: threading.Thread
    tracker: Tracker


class Supervisor:
    """Runs pipelines in threads until each has stopped; add() may be called while it runs (patterns)."""

    def __init__(
        self,
        since: str | Seq | None,
        *,
        follow: bool,
        gates: dict[str, PandaGate],
        observe: Callable[[Pipeline, Tracker], Events],
        fail_fast: bool = False,
        stop_all: threading.Event | None = None,
        gone: Callable[[Pipeline, BaseException], bool] = lambda _pipeline, _error: False,
    ) -> None:
        """`observe` gives a pipeline's Events around its tracker (metrics); `gone` says whether a
        pipeline's error means its database was deleted, which ends that pipeline cleanly."""
        self.since = since
        self.follow = follow
        self.gates = gates
        self.observe = observe
        self.fail_fast = fail_fast
        self.stop_all = stop_all or threading.Event()
        self.gone = gone
        self.outcomes: list[Outcome] = []
        """In the order the pipelines stopped."""
        self._running: dict[str, _Running] = {}
        self._done: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def trackers(self) -> dict[str, Tracker]:
        with self._lock:
            return {name: running.tracker for name, running in self._running.items()}

    def add(self, pipeline: Pipeline, tracker: Tracker | None = None) -> bool:
        """Start a pipeline (False when one of that name runs or ran, or everything is stopping)."""
        with self._lock:
            if pipeline.name in self._running or self.stop_all.is_set():
                return False
            tracker = tracker or Tracker()
            stop = threading.Event()
            thread = logcontext.in_pipeline(pipeline.name, self._run_one, args=(pipeline, stop, tracker),
                                            name=f"pipeline-{pipeline.name}")
            self._running[pipeline.name] = _Running(pipeline, stop, thread, tracker)
        thread.start()
        return True

    def stop(self, name: str) -> None:
        """Ask one pipeline to stop cleanly (its database was deleted)."""
        with self._lock:
            running = self._running.get(name)
        if running is not None:
            running.stop.set()

    def run(self, *, keep_open: Callable[[], bool] = lambda: False) -> int:
        """Wait until every pipeline stopped (and `keep_open()` is false); the first fatal error's exit code."""
        finished: set[str] = set()
        while True:
            if self.stop_all.is_set():
                with self._lock:
                    for running in self._running.values():
                        running.stop.set()
            try:
                finished.add(self._done.get(timeout=0.5))
            except queue.Empty:
                pass
            with self._lock:
                every = set(self._running)
            if every <= finished and (self.stop_all.is_set() or not keep_open()):
                break
        with self._lock:
            threads = [running.thread for running in self._running.values()]
        for thread in threads:
            thread.join(timeout=_JOIN_TIMEOUT)
        failed = [outcome for outcome in self.outcomes if outcome.error is not None]
        return failed[0].exit_code if failed else 0

    def _run_one(self, pipeline: Pipeline, stop: threading.Event, tracker: Tracker) -> None:
        name, settings = pipeline.name, pipeline.settings
        gate = self.gates.get(panda_key(settings))
        session = gated_session(gate, name, settings) if gate is not None else None
        error: BaseException | None = None
        try:
            with InstanceLock(Path(settings.checkpoint.path), f"bridge run (pipeline {name})"):
                bridge = Bridge(settings, stop, events=self.observe(pipeline, tracker), panda_session=session)
                # [verify] every: this pipeline's periodic verify, as a lone `bridge run` has; its PANDA
                # requests take turns at the gate too, so max_concurrent_requests holds for everything sent
                verify_session = (gated_session(gate, f"{name} verify", settings)
                                  if gate is not None and self.follow and settings.verify.interval > 0 else None)
                periodic = (PeriodicVerify(settings, stop, panda_session=verify_session).start()
                            if self.follow else None)
                try:
                    stats = bridge.run(self.since, follow=self.follow)
                finally:
                    stop.set()
                    if periodic is not None:
                        periodic.close()
                    if verify_session is not None:
                        verify_session.close()
                    bridge.close()
            logger.info("pipeline %s stopped; checkpoint at seq %s (%s)", name, stats.position,
                        settings.checkpoint.path, extra={"pipeline": name})
        except StopRequested:
            logger.info("pipeline %s stopped during start-up", name, extra={"pipeline": name})
        except BaseException as exc:  # noqa: BLE001 (one pipeline's end, whatever it is, is recorded)
            if self.gone(pipeline, exc):
                logger.info("pipeline %s stopped: database %r was deleted", name, settings.source.database,
                            extra={"pipeline": name})
            else:
                error = exc
                logger.error("pipeline %s stopped: %s: %s", name, type(exc).__name__, exc,
                             extra={"pipeline": name}, exc_info=not isinstance(exc, BridgeError))
                if self.fail_fast:
                    logger.error("--fail-fast: stopping every pipeline")
                    self.stop_all.set()
        finally:
            tracker.stopped(error)
            if session is not None:
                session.close()
            with self._lock:
                self.outcomes.append(Outcome(name, error))
            self._done.put(name)
