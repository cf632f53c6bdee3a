"""Fair turns at a shared server: who may send the next request when several pipelines wait (pure).

PANDA serves one request at a time, so the pipelines of one process writing to one PANDA share a few
slots (`[panda] max_concurrent_requests`). Rule: a free slot goes to the waiting pipeline served least
recently (one never served first), and within a pipeline to its oldest request. So a pipeline with a
large backfill cannot take two turns in a row while another waits: a live change waits at most for the
requests already in flight, one write of each slot's holder. Only state: the adapter (run/gate.py) adds
the locking and the waiting.
"""

from __future__ import annotations

from collections import deque
from itertools import count

__all__ = ["FairTurns"]


class FairTurns:
    """Grants up to `slots` turns at once; `request` then `granted` to learn whether it is yours."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self._tickets = count(1)
        self._grants = count(1)
        self._waiting: dict[str, deque[int]] = {}
        self._last_served: dict[str, int] = {}
        self._owner: dict[int, str] = {}
        self._holding: set[int] = set()

    def request(self, who: str) -> int:
        """Queue a request of pipeline `who`; returns its ticket (granted at once when a slot is free)."""
        ticket = next(self._tickets)
        self._owner[ticket] = who
        self._waiting.setdefault(who, deque()).append(ticket)
        self._dispatch()
        return ticket

    def granted(self, ticket: int) -> bool:
        return ticket in self._holding

    def release(self, ticket: int) -> None:
        """The request is done (or abandoned while waiting): free its slot or its place in the queue."""
        who = self._owner.pop(ticket, None)
        if ticket in self._holding:
            self._holding.discard(ticket)
        elif who is not None:
            queue = self._waiting.get(who)
            if queue is not None and ticket in queue:
                queue.remove(ticket)
        self._dispatch()

    @property
    def in_use(self) -> int:
        return len(self._holding)

    def _dispatch(self) -> None:
        while len(self._holding) < self.slots:
            ready = [who for who, queue in self._waiting.items() if queue]
            if not ready:
                return
            # least recently served first; ties (never served) by the oldest ticket
            who = min(ready, key=lambda name: (self._last_served.get(name, 0), self._waiting[name][0]))
            ticket = self._waiting[who].popleft()
            self._holding.add(ticket)
            self._last_served[who] = next(self._grants)
