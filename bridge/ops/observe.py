"""The observers of one run: the tracker always, the metrics and HTTP endpoint when asked, progress.

`observed()` builds them around a run and tears them down after it, handing the pipeline one Events.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from bridge.config.settings import Settings
from bridge.ops.events import Events, Fanout
from bridge.ops.progress import Progress
from bridge.ops.tracker import Tracker

if TYPE_CHECKING:
    from bridge.ops.http import OpsServer
    from bridge.ops.metrics import VerifyNumbers

__all__ = ["observed"]


@contextlib.contextmanager
def observed(settings: Settings, *, listen: str, bar: bool, stream: TextIO | None = None,
             verify: VerifyNumbers | None = None) -> Iterator[Events]:
    """Serve the endpoint on `listen` (empty: none) and report progress (a bar only if `bar` and a terminal).

    `verify`: the periodic verify's latest numbers, exported with the metrics when the endpoint is on.
    """
    tracker = Tracker()
    observers: list[Events] = [tracker]
    server: OpsServer | None = None
    if listen:
        # here, not at the top: prometheus-client and http.server cost a run without an endpoint ~15 ms of start-up
        from bridge.ops.http import OpsServer
        from bridge.ops.metrics import Metrics

        metrics = Metrics(settings.panda.dataset, tracker, verify)
        observers.append(metrics)
        server = OpsServer(listen, tracker, metrics).start()
    progress = Progress(tracker, stream or sys.stderr, bar=bar).start()
    try:
        yield Fanout(*observers)
    finally:
        progress.close()
        if server is not None:
            server.close()
