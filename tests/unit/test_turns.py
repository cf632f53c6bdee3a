"""core/turns.py: slots are never exceeded and free ones go to the pipeline served least recently."""

import pytest

from bridge.core.turns import FairTurns


def test_one_slot_one_holder():
    turns = FairTurns(1)
    a = turns.request("backfill")
    b = turns.request("live")
    assert turns.granted(a) and not turns.granted(b) and turns.in_use == 1
    turns.release(a)
    assert turns.granted(b)


def test_a_live_request_waits_at_most_one_write_of_a_backfill():
    turns = FairTurns(1)
    held = turns.request("backfill")
    queued = [turns.request("backfill") for _ in range(5)]  # a backfill with requests queued up
    live = turns.request("live")
    turns.release(held)
    assert turns.granted(live)  # not the backfill's next write, though it asked first
    assert not any(turns.granted(t) for t in queued)
    turns.release(live)
    assert turns.granted(queued[0])


def test_round_robin_over_three_pipelines():
    turns = FairTurns(1)
    tickets = {who: [turns.request(who) for _ in range(3)] for who in ("a", "b", "c")}
    order = []
    for _ in range(9):
        (ticket,) = [t for ts in tickets.values() for t in ts if turns.granted(t)]
        order.append(next(who for who, ts in tickets.items() if ticket in ts))
        turns.release(ticket)
    assert order == ["a", "b", "c"] * 3


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_never_more_than_the_slots(slots):
    turns = FairTurns(slots)
    tickets = [turns.request(f"p{n % 4}") for n in range(12)]
    while tickets:
        assert turns.in_use == min(slots, len(tickets))
        done = next(t for t in tickets if turns.granted(t))
        tickets.remove(done)
        turns.release(done)
    assert turns.in_use == 0


def test_an_abandoned_wait_gives_its_place_up():
    turns = FairTurns(1)
    a, b, c = turns.request("a"), turns.request("b"), turns.request("c")
    turns.release(b)  # b gave up waiting (its pipeline stopped)
    turns.release(a)
    assert turns.granted(c)


def test_slots_must_be_positive():
    with pytest.raises(ValueError):
        FairTurns(0)
