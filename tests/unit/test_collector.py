"""The cyclic GC is paused while runs are in progress, collected on a timer, and restored by the last run."""

from __future__ import annotations

import gc
import threading
import weakref

from bridge.run import collector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_paused_turns_automatic_collection_off_and_restores_it():
    assert gc.isenabled()
    with collector.paused(clock=lambda: 100.0):
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_last_of_overlapping_runs_restores_collection():
    entered, leave = threading.Event(), threading.Event()

    def other_run() -> None:
        with collector.paused():
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=other_run)
    thread.start()
    assert entered.wait(10)
    with collector.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other run is still going
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_cycle_made_while_paused_is_freed_by_the_timed_collection():
    with collector.paused(clock=lambda: 100.0):
        first, second = _Node(), _Node()
        first.other, second.other = second, first
        alive = weakref.ref(first)
        del first, second
        assert alive() is not None  # no automatic collection
        assert not collector.collect_if_due(clock=lambda: 100.0 + collector.COLLECT_INTERVAL / 2)
        assert alive() is not None
        assert collector.collect_if_due(clock=lambda: 100.0 + collector.COLLECT_INTERVAL)
        assert alive() is None


def test_no_collection_is_due_outside_a_run():
    assert not collector.collect_if_due(clock=lambda: 1e12)


def test_a_disabled_collector_stays_disabled():
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
