"""Decides which seq may be committed: in feed order, once every batch up to it is settled (pure).

Rules, the whole of the at-least-once promise:
- batches are numbered in feed order as they are handed to the sink (`sent`);
- a batch is settled when the sink acknowledged it (rows it refused are settled too, once they are
  dead-lettered: they travel with the batch) or when it needed no write at all;
- a batch is released, in feed order, only when it and every batch before it are settled: its refusals
  go to the dead-letter file, then its records and seq are committed. Acknowledgements may arrive in any
  order; releases never do;
- a batch whose write failed blocks itself and every later batch for good, and a stop leaves every batch
  not yet released unrecorded: their seqs are never committed, so a restart reads them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from bridge.model import Refusal, Seq

__all__ = ["Ready", "CommitOrder"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ready(Generic[T]):
    """A settled batch whose turn has come: dead-letter `refused`, then commit `position` (None keeps the seq)."""

    batch: T
    """What the caller handed to `sent` (the planned batch)."""
    position: Seq | None
    """The seq to commit with this batch's records; None when the batch moves no seq."""
    refused: tuple[Refusal, ...] = ()
    """What the sink refused in this batch, to write to the dead-letter file before the commit."""


class CommitOrder(Generic[T]):
    """Tickets in feed order, acknowledgements in any order, releases in feed order.

    Only state: no I/O, no threads, no clock. One instance per run, used from one thread.
    """

    def __init__(self) -> None:
        self._next = 0
        """The ticket the next `sent` batch gets."""
        self._head = 0
        """The lowest ticket not yet released."""
        self._sent: dict[int, tuple[T, Seq | None]] = {}
        """Batches handed to the sink and not yet settled."""
        self._settled: dict[int, Ready[T]] = {}
        """Settled batches waiting for an earlier one."""
        self._blocked: int | None = None
        """The first ticket that failed or was stopped: nothing from it on is ever released."""
        self.committed: Seq | None = None
        """The last seq released (the checkpoint once the caller committed it); None while none was."""

    def sent(self, batch: T, position: Seq | None) -> int:
        """Register the next batch in feed order; returns its ticket."""
        ticket = self._next
        self._next += 1
        self._sent[ticket] = (batch, position)
        return ticket

    def acknowledged(self, ticket: int, refused: Sequence[Refusal] = ()) -> list[Ready[T]]:
        """Settle `ticket` (the sink acknowledged it, refusing `refused`); returns the batches now released.

        The list is in feed order and may be empty (an earlier batch is still in flight) or hold several
        (this one unblocked later ones that had settled already). Raises KeyError for a ticket that was
        never sent or was settled already.
        """
        batch, position = self._sent.pop(ticket)
        self._settled[ticket] = Ready(batch, position, tuple(refused))
        return self._release()

    def failed(self, ticket: int) -> None:
        """The write of `ticket` failed: it and every later batch stay unrecorded (raises KeyError if unknown)."""
        self._sent.pop(ticket)
        self._block(ticket)

    def stopped(self) -> int:
        """The run stops: every batch not yet released stays unrecorded. Returns how many that is."""
        left = self._next - self._head
        self._block(self._head)
        return left

    @property
    def unreleased(self) -> int:
        """Batches sent and not yet released (in flight, or settled behind one that is)."""
        return self._next - self._head

    def _block(self, ticket: int) -> None:
        if self._blocked is None or ticket < self._blocked:
            self._blocked = ticket

    def _release(self) -> list[Ready[T]]:
        released: list[Ready[T]] = []
        while self._head in self._settled and (self._blocked is None or self._head < self._blocked):
            ready = self._settled.pop(self._head)
            self._head += 1
            if ready.position is not None:
                self.committed = ready.position
            released.append(ready)
        return released
