"""The Tracker's account of a run: pending changes, lag, caught up, health and readiness (pure, manual clock)."""

from __future__ import annotations

import threading

import pytest

from bridge.ops.events import PANDA, SOURCE, Fanout
from bridge.ops.tracker import Tracker
from tests.support.clock import ManualClock


@pytest.fixture
def tracker(manual_clock: ManualClock) -> Tracker:
    return Tracker(clock=manual_clock, wall=lambda: 1_700_000_000.0)


def test_a_backfill_from_integer_seqs(tracker, manual_clock):
    tracker.behind(2500)
    assert tracker.readiness().reason == "starting"
    tracker.started([])
    tracker.request(SOURCE, True)
    tracker.request(PANDA, True)
    assert tracker.pending() == 2500 and not tracker.caught_up
    tracker.read(rows=1000, changes=1000)
    tracker.position(caught_up=False, pending=None)
    manual_clock.advance(2.0)
    assert tracker.lag() == 2.0
    tracker.read(rows=1000, changes=1000)
    manual_clock.advance(1.0)
    tracker.committed(1000, upserts=990, deletes=5, unchanged=5)
    assert tracker.lag() == 1.0  # the second chunk, read a second ago, is the oldest not committed
    assert tracker.pending() == 1500
    assert tracker.readiness().reason == "backfilling"
    tracker.read(rows=500, changes=500)
    tracker.position(caught_up=True, pending=None)
    assert tracker.pending() == 1500 and not tracker.caught_up  # at the end of the feed, not yet committed
    tracker.committed(1000, 1000, 0, 0)
    tracker.committed(500, 500, 0, 0)
    assert tracker.pending() == 0 and tracker.caught_up and tracker.lag() == 0.0
    assert tracker.readiness().ready and tracker.last_commit == 1_700_000_000.0
    assert (tracker.upserts, tracker.deletes, tracker.unchanged) == (2490, 5, 5)


def test_couchdb_pages_say_pending_and_the_first_one_gives_the_total(tracker):
    tracker.behind(None)
    tracker.started([])
    assert tracker.pending() is None
    tracker.read(rows=1000, changes=1000)
    tracker.position(caught_up=False, pending=4000)
    assert tracker.backlog == 5000 and tracker.pending() == 5000
    tracker.committed(1000, 1000, 0, 0)
    assert tracker.pending() == 4000
    tracker.read(rows=4000, changes=4000)
    tracker.position(caught_up=True, pending=0)
    tracker.committed(4000, 4000, 0, 0)
    assert tracker.pending() == 0 and tracker.caught_up


def test_new_changes_after_catching_up_make_it_not_caught_up_until_committed(tracker):
    tracker.started([])
    tracker.position(caught_up=True, pending=0)
    assert tracker.caught_up
    tracker.read(rows=3, changes=3)
    assert not tracker.caught_up and tracker.pending() == 3
    tracker.position(caught_up=True, pending=0)
    tracker.committed(3, 3, 0, 0)
    assert tracker.caught_up


@pytest.mark.parametrize("events,reason", [
    ([("request", SOURCE, False)], "source unavailable"),
    ([("request", PANDA, False)], "PANDA unavailable"),
    ([("request", PANDA, False), ("request", PANDA, True)], "ready"),
    ([("stopped", None)], "stopped"),
])
def test_readiness_names_the_reason(tracker, events, reason):
    tracker.started([])
    tracker.position(caught_up=True, pending=0)
    for event in events:
        if event[0] == "request":
            tracker.request(event[1], event[2])
        else:
            tracker.stopped(event[1])
    assert tracker.readiness().reason == reason
    assert tracker.readiness().ready is (reason == "ready")


def test_health_follows_the_threads_and_fatal_errors(tracker):
    assert tracker.healthy()  # starting up
    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    thread.start()
    tracker.started([thread])
    assert tracker.healthy()
    done.set()
    thread.join()
    assert not tracker.healthy()  # a helper thread died
    other = Tracker()
    other.stopped(RuntimeError("fatal"))
    assert not other.healthy()


def test_fanout_passes_every_event_to_each_observer(tracker):
    second = Tracker()
    fan = Fanout(tracker, second)
    fan.behind(7)
    fan.started([])
    fan.read(3, 2)
    fan.position(False, 5)
    fan.committed(2, 1, 1, 0)
    fan.dead_lettered(1)
    fan.retried("PANDA PUT data", "SinkUnavailable")
    fan.request(PANDA, False, "PUT", 0.1)
    fan.stopped(None)
    for each in (tracker, second):
        assert (each.backlog, each.rows_read, each.changes_read, each.committed_changes) == (7, 3, 2, 2)
        assert each.dead_letters == 1 and each.retries == {("PANDA PUT data", "SinkUnavailable"): 1}
        assert each.up[PANDA] is False and each.readiness().reason == "stopped"
