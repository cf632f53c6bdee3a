"""The instance lock on a real file system, and the progress reporter's periodic line (a thread, a fake clock)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from bridge.errors import InstanceLocked
from bridge.ops.progress import Progress
from bridge.ops.tracker import Tracker
from bridge.state.lock import InstanceLock, holder, lock_path


def test_the_lock_is_exclusive_names_its_holder_and_is_only_probed_by_holder(tmp_path):
    state = tmp_path / "state" / "bridge.checkpoint"
    assert holder(state) == (False, None) and not lock_path(state).exists()  # probing creates nothing
    with InstanceLock(state):
        assert holder(state) == (True, os.getpid())
        with pytest.raises(InstanceLocked) as refused:
            InstanceLock(state).acquire()  # flock: another open file description, even in this process
        assert refused.value.pid == os.getpid() and refused.value.exit_code == 7
        assert f"pid {os.getpid()}" in str(refused.value)
    assert holder(state) == (False, None)
    assert lock_path(state).exists()  # the file stays; the lock is the kernel's


def test_a_killed_holder_frees_the_lock(tmp_path):
    state = tmp_path / "bridge.checkpoint"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from bridge.state.lock import InstanceLock; "
        f"InstanceLock(Path({str(state)!r})).acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        assert holder(state) == (True, child.pid)
    finally:
        child.kill()
        child.wait(10)
    assert holder(state) == (False, None)
    InstanceLock(state).acquire().release()


class Clock:
    """Each reading is 4 s after the last: a 10 s log interval passes every third tick."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 4.0
        return self.now


def test_progress_logs_done_total_rate_and_eta_on_an_interval_until_caught_up(caplog):
    clock = Clock()
    tracker = Tracker(clock=clock)
    tracker.behind(1000)
    tracker.started([])
    tracker.read(400, 400)
    tracker.committed(400, 400, 0, 0)
    progress = Progress(tracker, io.StringIO(), bar=True, clock=clock)  # not a terminal: no bar
    assert not progress.draws_bar
    with caplog.at_level(logging.INFO, logger="bridge.ops.progress"):
        progress.start()
        try:
            for _ in range(100):  # bounded: a line appears within a few ticks of one second
                if any("backfill: 400 of 1000" in r.message for r in caplog.records):
                    break
                progress._done.wait(0.2)
            tracker.read(600, 600)
            tracker.position(caught_up=True, pending=None)
            tracker.committed(600, 600, 0, 0)
            for _ in range(100):
                if any("backfill done" in r.message for r in caplog.records):
                    break
                progress._done.wait(0.2)
        finally:
            progress.close()
    messages = [r.message for r in caplog.records]
    line = next(m for m in messages if m.startswith("backfill: 400 of 1000"))
    assert "(40.0%)" in line and "/s, ETA " in line
    assert any(m.startswith("backfill done: 1000 changes committed") for m in messages)
