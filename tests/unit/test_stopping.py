"""bridge/stopping.py: during start-up a stop exits 0 at once; once the pipeline runs it sets the flag."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from bridge import stopping


@pytest.fixture(autouse=True)
def _restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_during_start_up_exits_0(sig: signal.Signals) -> None:
    stopping.install()
    with pytest.raises(SystemExit) as caught:
        signal.raise_signal(sig)
    assert caught.value.code == 0


def test_once_the_pipeline_runs_a_stop_sets_the_flag() -> None:
    stopping.install()
    stop = threading.Event()
    stopping.graceful(stop)
    signal.raise_signal(signal.SIGTERM)  # no exception: the loop finishes its batch
    assert stop.is_set()


def test_release_gives_back_pythons_ctrl_c() -> None:
    stopping.install()
    stopping.release()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
