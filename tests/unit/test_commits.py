"""core/commits.py: which seq may be committed, for acknowledgements in and out of order, failures and stops.

Each case is a script of events over batches named by their seq; the expected results are written out by
hand: the batches each event releases (in the order they must be recorded) and the seq committable after.
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge.core.commits import CommitOrder
from bridge.model import Refusal, Seq

REFUSED = Refusal("doc-b", Seq(2), "PANDA refused it", "doc-b", ("x",), 400)

# (event, argument): ("send", seq or None) numbers the batch; ("ack", n) / ("ack!", n) acknowledges the
# n-th batch sent (the second with REFUSED as its refused row); ("fail", n); ("stop", None).
CASES: list[tuple[str, list[tuple[str, Any]], list[list[Any]], Any]] = [
    (
        "acknowledged in order: each releases itself",
        [("send", 1), ("ack", 0), ("send", 2), ("ack", 1)],
        [[], [1], [], [2]],
        2,
    ),
    (
        "out of order: a later acknowledgement waits, then both go in feed order",
        [("send", 1), ("send", 2), ("send", 3), ("ack", 2), ("ack", 1), ("ack", 0)],
        [[], [], [], [], [], [1, 2, 3]],
        3,
    ),
    (
        "out of order, partly: the earliest unblocks only up to the next gap",
        [("send", 1), ("send", 2), ("send", 3), ("ack", 1), ("ack", 0), ("ack", 2)],
        [[], [], [], [], [1, 2], [3]],
        3,
    ),
    (
        "a failed batch blocks itself and every later one, acknowledged or not",
        [("send", 1), ("send", 2), ("send", 3), ("ack", 0), ("fail", 1), ("ack", 2)],
        [[], [], [], [1], None, []],
        1,
    ),
    (
        "a failure of the first batch: nothing is ever committed",
        [("send", 1), ("send", 2), ("ack", 1), ("fail", 0)],
        [[], [], [], None],
        None,
    ),
    (
        "dead-lettered rows: the batch is settled, its refusals travel with it, its seq passes them",
        [("send", 1), ("send", 2), ("ack!", 1), ("ack", 0)],
        [[], [], [], [1, 2, "2 refused"]],
        2,
    ),
    (
        "a stop in the middle: what was released stays, nothing after it is committed",
        [("send", 1), ("send", 2), ("send", 3), ("ack", 0), ("ack", 2), ("stop", None), ("ack", 1)],
        [[], [], [], [1], [], "2 left", []],
        1,
    ),
    (
        "a batch without a seq is released in its turn but moves nothing",
        [("send", 1), ("send", None), ("ack", 1), ("ack", 0)],
        [[], [], [], [1, None]],
        1,
    ),
    (
        "a stop before anything was acknowledged commits nothing",
        [("send", 1), ("stop", None)],
        [[], "1 left"],
        None,
    ),
]


def play(script: list[tuple[str, Any]]) -> tuple[list[Any], CommitOrder[str]]:
    order: CommitOrder[str] = CommitOrder()
    tickets: list[int] = []
    results: list[Any] = []
    for event, arg in script:
        if event == "send":
            tickets.append(order.sent(f"batch {arg}", None if arg is None else Seq(arg)))
            results.append([])
        elif event in ("ack", "ack!"):
            released = order.acknowledged(tickets[arg], [REFUSED] if event == "ack!" else [])
            shown: list[Any] = []
            for ready in released:
                assert ready.batch == f"batch {ready.position.value if ready.position else None}"
                shown.append(ready.position.value if ready.position else None)
                if ready.refused:
                    assert ready.refused == (REFUSED,)
                    shown.append(f"{ready.position.value} refused")  # type: ignore[union-attr]
            results.append(shown)
        elif event == "fail":
            order.failed(tickets[arg])
            results.append(None)
        else:
            results.append(f"{order.stopped()} left")
    return results, order


@pytest.mark.parametrize(("name", "script", "released", "committed"), CASES, ids=[case[0] for case in CASES])
def test_commit_order(name: str, script: list[tuple[str, Any]], released: list[Any], committed: Any) -> None:
    results, order = play(script)
    assert results == released
    assert order.committed == (None if committed is None else Seq(committed))


def test_a_ticket_is_settled_once() -> None:
    order: CommitOrder[str] = CommitOrder()
    ticket = order.sent("batch", Seq(1))
    order.acknowledged(ticket)
    with pytest.raises(KeyError):
        order.acknowledged(ticket)
    with pytest.raises(KeyError):
        order.failed(ticket + 1)


def test_unreleased_counts_batches_in_flight_and_waiting() -> None:
    order: CommitOrder[str] = CommitOrder()
    first, second = order.sent("a", Seq(1)), order.sent("b", Seq(2))
    assert order.unreleased == 2
    order.acknowledged(second)
    assert order.unreleased == 2  # settled, but waiting for the first
    order.acknowledged(first)
    assert order.unreleased == 0
