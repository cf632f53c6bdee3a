"""The operating surface of many pipelines in one process: one endpoint, every pipeline in it.

/metrics merges the pipelines' registries into one exposition (each family once, every pipeline's samples
under its `pipeline` label). /healthz answers 200 while at least one pipeline runs, since the process is
then doing useful work and a restart would only interrupt it; its body names each pipeline's health and
the class of the error it stopped on. /readyz answers 200 when every running pipeline is ready.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from bridge.ops.events import Events, Fanout
from bridge.ops.http import OpsServer, _Handler, _Server
from bridge.ops.metrics import Metrics
from bridge.ops.tracker import Tracker

__all__ = ["ManyObservers"]


class _Merged:
    """A collector yielding each family of the registries once, with the samples of all of them."""

    def __init__(self, registries: dict[str, CollectorRegistry]) -> None:
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for registry in list(self._registries.values()):
            for family in registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type,
                                                            family.unit)
                merged.samples.extend(family.samples)
        yield from families.values()


class ManyObservers:
    """Per pipeline a tracker and (with an endpoint) its metrics; one endpoint over them all."""

    def __init__(self, listen: str) -> None:
        self.trackers: dict[str, Tracker] = {}
        self._registries: dict[str, CollectorRegistry] = {}
        self._lock = threading.Lock()
        self._listen = listen
        self._server: OpsServer | None = None

    def observe(self, name: str, tracker: Tracker) -> Events:
        """The Events of pipeline `name`, around `tracker`."""
        with self._lock:
            self.trackers[name] = tracker
            if not self._listen:
                return tracker
            metrics = Metrics(name, tracker)
            self._registries[name] = metrics.registry
        return Fanout(tracker, metrics)

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(self._registries))
        return generate_latest(registry)

    def start(self) -> ManyObservers:
        if self._listen:
            # the one-pipeline server, with a handler that answers for every pipeline
            server = OpsServer(self._listen, Tracker(), _MetricsView(self))  # type: ignore[arg-type]
            server._server.RequestHandlerClass = _ManyHandler
            server._server.many = self  # type: ignore[attr-defined]
            self._server = server.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def health(self) -> tuple[bool, dict[str, Any]]:
        pipelines = {name: _health(tracker) for name, tracker in sorted(self.trackers.items())}
        healthy = any(entry["healthy"] for entry in pipelines.values())
        return healthy, {"healthy": healthy, "pipelines": pipelines}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        pipelines = {}
        for name, tracker in sorted(self.trackers.items()):
            readiness = tracker.readiness()
            pipelines[name] = {"ready": readiness.ready, "reason": readiness.reason, "pending": tracker.pending()}
        running = [entry for entry in pipelines.values() if entry["reason"] != "stopped"]
        ready = bool(running) and all(entry["ready"] for entry in running)
        return ready, {"ready": ready, "pipelines": pipelines}


def _health(tracker: Tracker) -> dict[str, Any]:
    entry: dict[str, Any] = {"healthy": tracker.healthy()}
    if tracker.error is not None:
        entry["error"] = type(tracker.error).__name__  # the class only: a message could quote a URL
    return entry


class _MetricsView:
    def __init__(self, many: ManyObservers) -> None:
        self._many = many

    def render(self) -> bytes:
        return self._many.render()


class _ManyHandler(_Handler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        path = self.path.split("?", 1)[0]
        many: ManyObservers = self.server.many  # type: ignore[attr-defined]
        if path == "/healthz":
            ok, body = many.health()
            self._json(200 if ok else 503, body)
        elif path == "/readyz":
            ok, body = many.ready()
            self._json(200 if ok else 503, body)
        else:
            super().do_GET()

