"""ReadAhead: a body fetched ahead is used only for exactly the request it was fetched for."""

from __future__ import annotations

import threading

import pytest

from bridge.source.read_ahead import ReadAhead


def test_the_body_fetched_ahead_answers_its_own_request_once() -> None:
    ahead = ReadAhead()
    ahead.start(("seq-5", 1000), lambda: b"page after 5")
    assert ahead.busy
    assert ahead.take(("seq-5", 1000)) == b"page after 5"
    assert not ahead.busy
    assert ahead.take(("seq-5", 1000)) is None  # taken: the reader asks for it itself


def test_a_body_fetched_for_another_request_is_waited_for_and_dropped() -> None:
    release, finished = threading.Event(), threading.Event()

    def fetch() -> bytes:
        release.wait(10)
        finished.set()
        return b"page after 5, 1000 rows"

    ahead = ReadAhead()
    ahead.start(("seq-5", 1000), fetch)
    threading.Timer(0.05, release.set).start()
    assert ahead.take(("seq-5", 500)) is None  # the limit turned out otherwise
    assert finished.is_set()  # it did not return while the fetch ahead still ran
    assert not ahead.busy


def test_a_failed_fetch_raises_in_the_reader_only_when_it_was_the_reader_s_request() -> None:
    def fetch() -> bytes:
        raise ConnectionError("refused")

    ahead = ReadAhead()
    ahead.start("k", fetch)
    with pytest.raises(ConnectionError, match="refused"):  # retried and logged there, as a read of its own
        ahead.take("k")
    ahead.start("k", fetch)
    assert ahead.take("other") is None  # a missed guess: neither its body nor its error is the reader's


def test_settle_waits_for_the_fetch_and_starting_again_drops_what_was_held() -> None:
    ahead = ReadAhead()
    ahead.settle()  # nothing held
    ahead.start("a", lambda: b"a")
    ahead.start("b", lambda: b"b")
    assert ahead.take("a") is None
    ahead.start("c", lambda: b"c")
    ahead.settle()
    assert not ahead.busy and ahead.take("c") is None


def test_the_fetch_runs_in_its_own_thread() -> None:
    seen: list[str] = []
    ahead = ReadAhead()
    ahead.start("k", lambda: seen.append(threading.current_thread().name) or b"x")
    assert ahead.take("k") == b"x"
    assert seen == ["bridge-read-ahead"]
