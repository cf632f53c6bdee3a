"""The adapter of core/turns.py: a requests.Session that waits for its pipeline's turn at a shared PANDA.

Every request a pipeline's PandaSink sends goes through its own `GatedSession`; the sessions of the
pipelines writing to one PANDA share one `PandaGate`, so at most `max_concurrent_requests` of their
requests are in flight and free slots go round fairly. The turn covers the whole exchange: the body is
read inside `request` (the sink never streams).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import requests

from bridge.config.settings import Settings, scrub_url
from bridge.core.turns import FairTurns
from bridge.sessions import pin_environment

__all__ = ["PandaGate", "GatedSession", "gated_session", "gates_for", "panda_key"]


class PandaGate:
    """The turns at one PANDA, for the threads of every pipeline writing to it."""

    def __init__(self, slots: int) -> None:
        self._turns = FairTurns(slots)
        self._changed = threading.Condition()
        self.peak = 0
        """The most requests ever in flight at once (for tests and the curious)."""

    @contextmanager
    def turn(self, who: str) -> Iterator[None]:
        """Wait until pipeline `who` may send, hold the slot for the block, then pass it on."""
        with self._changed:
            ticket = self._turns.request(who)
            try:
                while not self._turns.granted(ticket):
                    self._changed.wait()
            except BaseException:
                self._turns.release(ticket)
                self._changed.notify_all()
                raise
            self.peak = max(self.peak, self._turns.in_use)
        try:
            yield
        finally:
            with self._changed:
                self._turns.release(ticket)
                self._changed.notify_all()


class GatedSession(requests.Session):
    """A Session whose every request first takes a turn at `gate` for pipeline `who`."""

    def __init__(self, gate: PandaGate, who: str) -> None:
        super().__init__()
        self._gate = gate
        self._who = who

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        with self._gate.turn(self._who):
            return super().request(method, url, *args, **kwargs)


def gated_session(gate: PandaGate, who: str, settings: Settings) -> requests.Session:
    """A GatedSession taking turns at `gate` as `who`, with the environment's settings for this pipeline's
    PANDA read once (sessions.py): what a pipeline's writes and its periodic verify each send through."""
    return pin_environment(GatedSession(gate, who), settings.panda.url)


def panda_key(settings: Settings) -> str:
    """Which PANDA a pipeline writes to: its scrubbed root URL."""
    return scrub_url(settings.panda.url).rstrip("/").removesuffix("/api/1.0")


def gates_for(settings: Iterable[Settings]) -> dict[str, PandaGate]:
    """One gate per PANDA; its slots are the smallest `max_concurrent_requests` of the pipelines sharing it."""
    slots: dict[str, int] = {}
    for one in settings:
        key = panda_key(one)
        slots[key] = min(slots.get(key, one.panda.max_concurrent_requests), one.panda.max_concurrent_requests)
    return {key: PandaGate(count) for key, count in slots.items()}
