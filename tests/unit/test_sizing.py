"""sizing.py: batches grow while the sink is slow and a backlog waits, and only while growing pays; they
shrink when caught up and fit the byte cap."""

import math
import random
from collections.abc import Callable

import pytest

from bridge.core.sizing import GAIN, RECHECK, REPROBE, SLOW_WRITE, TRIAL, BatchSizer

MB = 1_000_000


def backfill(sizer: BatchSizer, write_cost: Callable[[int], float], batches: int, row_bytes: int = 200,
             feed_rate: float = 20_000.0) -> list[int]:
    """The pipeline's rhythm against a backlog: each batch is handed on once it has filled (at `feed_rate`
    documents per second) and the write of the batch before has returned, and is written while the next
    one fills. Returns the size of each batch."""
    sizes: list[int] = []
    now, written = 0.0, 0  # the batch whose write returns when the next is handed on
    for _ in range(batches):
        size = sizer.size
        sizes.append(size)
        seconds = write_cost(written) if written else 0.0
        now += max(size / feed_rate, seconds)
        sizer.delivered(size, size * row_bytes, caught_up=False, sink_busy=seconds > size / feed_rate,
                        write_seconds=seconds, now=now)
        written = size
    return sizes


def solr_commit(changes: int) -> float:
    """A real PANDA: half a second per request (a Solr commit), 10 µs per document."""
    return 0.5 + 10e-6 * changes


def slow_rows(changes: int) -> float:
    """A sink whose cost is in its rows: 150 µs per document, 10 ms per request."""
    return 0.01 + 150e-6 * changes


def test_grows_to_the_cap_while_requests_cost_most() -> None:
    sizes = backfill(BatchSizer(base=1000, cap=20_000, max_bytes=100 * MB), solr_commit, 40,
                     feed_rate=100_000.0)
    # grows once TRIAL batches of the base size were timed (the first hand-over only starts the clock)
    assert sizes[:TRIAL + 2] == [1000] * (TRIAL + 1) + [2000]
    assert sizes[-1] == 20_000
    assert sizes == sorted(sizes)  # never falls back: each doubling cut the time per document


def test_a_kept_size_that_still_pays_comes_back_after_each_check() -> None:
    sizes = backfill(BatchSizer(base=1000, cap=20_000, max_bytes=100 * MB), solr_commit, 6 * RECHECK,
                     feed_rate=100_000.0)
    checks = [i for i in range(1, len(sizes)) if sizes[i] < sizes[i - 1]]
    assert len(checks) >= 4  # checked again and again over a long backfill ...
    assert all(sizes[i - 1] == 20_000 and sizes[i] == 16_000 for i in checks)  # ... one step down ...
    assert sizes[-1] == 20_000  # ... and back up each time, for little lost
    assert sum(sizes) > 0.95 * 20_000 * (len(sizes) - sizes.index(20_000))


def test_a_kept_size_that_stops_paying_falls_back_at_its_check() -> None:
    """PANDA's commits got cheap half way (its index was optimised): the costs are in the rows now."""
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=100 * MB)
    sizes = backfill(sizer, solr_commit, 30, feed_rate=100_000.0)
    assert sizes[-1] == 20_000
    sizes += backfill(sizer, slow_rows, 6 * RECHECK, feed_rate=100_000.0)
    assert sizes[-10:] == [1000] * 10


def test_noise_does_not_keep_a_grown_size() -> None:
    """The machine's CPU decides the speed, the hand-overs come in bursts and some minutes are faster than
    others; writes look slow because of the GIL. A trial may be won by a lucky stretch, never for long."""
    noise = random.Random(14)
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=100 * MB)
    now, sizes = 0.0, []
    for _ in range(1000):
        size = sizer.size
        sizes.append(size)
        pace = 1 + 0.3 * math.sin(len(sizes) / 40)  # slow swings in the machine's speed
        now += size / 15_000.0 * pace * noise.uniform(0.2, 1.8)
        sizer.delivered(size, size * 230, caught_up=False, sink_busy=True, write_seconds=0.12, now=now)
    assert sum(size > 1000 for size in sizes) < 0.1 * len(sizes)


def test_growth_that_does_not_pay_falls_back() -> None:
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=100 * MB)
    sizes = backfill(sizer, slow_rows, 40)
    assert max(sizes) == 2000  # tried once ...
    assert sizes[-10:] == [1000] * 10  # ... timed, and given up


def test_a_failed_size_is_tried_again_after_reprobe_writes() -> None:
    sizes = backfill(BatchSizer(base=1000, cap=20_000, max_bytes=100 * MB), slow_rows, REPROBE + 20)
    trials = [i for i in range(1, len(sizes)) if sizes[i] > sizes[i - 1]]
    assert len(trials) == 2 and trials[1] - trials[0] > REPROBE


@pytest.mark.parametrize(("speedup", "kept"), [(1 + GAIN + 0.05, True), (1 + GAIN - 0.05, False)])
def test_a_doubling_stays_when_it_moved_documents_faster_by_gain(speedup: float, kept: bool) -> None:
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=100 * MB)
    now = 0.0
    for _ in range(TRIAL + 1):  # full batches a second apart, the write slow: 1,000 documents/s
        now += 1.0
        sizer.delivered(1000, 200_000, caught_up=False, sink_busy=True, write_seconds=0.5, now=now)
    assert sizer.size == 2000
    now += 1.0  # the first batch of 2,000 (its time is the last 1,000's write)
    assert sizer.delivered(2000, 400_000, caught_up=False, sink_busy=True, write_seconds=0.5, now=now) == 2000
    for _ in range(TRIAL):  # timed batches of 2,000 at the given speed-up
        now += 2.0 / speedup
        size = sizer.delivered(2000, 400_000, caught_up=False, sink_busy=True, write_seconds=0.5, now=now)
    assert size == (4000 if kept else 1000)


def test_speed_not_write_time_decides() -> None:
    """Writes that look cheaper per row when bigger (threads waiting for the GIL cost per request), while the
    documents move no faster (the feed's side, here the machine's CPU, decides): no growth is kept."""
    sizes = backfill(BatchSizer(base=1000, cap=20_000, max_bytes=100 * MB), lambda n: 0.1 + 5e-6 * n, 60,
                     feed_rate=5_000.0)
    assert sizes[-10:] == [1000] * 10


def test_fixed_while_the_sink_keeps_up() -> None:
    sizes = backfill(BatchSizer(base=1000, cap=20_000, max_bytes=4 * MB), lambda n: 0.5, 10, feed_rate=1000.0)
    assert sizes == [1000] * 10


def test_fixed_while_the_sink_answers_fast() -> None:
    """The sink is the bottleneck but answers fast: rows, not requests, decide."""
    sizes = backfill(BatchSizer(base=1000, cap=20_000, max_bytes=4 * MB), lambda n: 0.02, 10)
    assert sizes == [1000] * 10


@pytest.mark.parametrize(("seconds", "size"), [(SLOW_WRITE / 2, 1000), (SLOW_WRITE, 2000), (2.0, 2000)])
def test_grows_only_after_a_slow_write(seconds: float, size: int) -> None:
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=4 * MB)
    for second in range(1, TRIAL + 1):
        sizer.delivered(1000, 230_000, caught_up=False, sink_busy=True, write_seconds=seconds, now=second)
    assert sizer.delivered(1000, 230_000, caught_up=False, sink_busy=True, write_seconds=seconds,
                           now=TRIAL + 1) == size


def test_no_growth_without_a_backlog() -> None:
    """The batch was due on age before it filled."""
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=4 * MB)
    for second in range(1, 4):
        assert sizer.delivered(300, 69_000, caught_up=False, sink_busy=True, write_seconds=0.5, now=second) == 1000


def test_no_growth_before_the_speed_is_known() -> None:
    """Growth needs TRIAL full batches of the current size timed, after the hand-over that starts the clock."""
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=4 * MB)
    for second in range(1, TRIAL + 1):
        assert sizer.delivered(1000, 230_000, caught_up=False, sink_busy=True, write_seconds=0.5,
                               now=second) == 1000


def test_caught_up_goes_back_to_the_base_at_once() -> None:
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=100 * MB)
    backfill(sizer, solr_commit, 8)
    assert sizer.size > 1000
    assert sizer.delivered(12, 2_760, caught_up=True, sink_busy=True, write_seconds=0.5, now=100.0) == 1000
    # and the next backlog starts afresh: it needs the speed of the base size before growing
    assert sizer.delivered(1000, 230_000, caught_up=False, sink_busy=True, write_seconds=0.5, now=101.0) == 1000


@pytest.mark.parametrize("row_bytes", [50, 230, 400, 4000, 40_000])
def test_grown_batches_never_exceed_the_byte_cap(row_bytes: int) -> None:
    sizes = backfill(BatchSizer(base=10, cap=1_000_000, max_bytes=4 * MB), solr_commit, 80, row_bytes,
                     feed_rate=10**7)
    assert all(size == 10 or size * row_bytes <= 4 * MB for size in sizes)
    assert max(sizes) * row_bytes > 4 * MB // 2  # and they do grow to near it


def test_big_documents_stay_at_the_base() -> None:
    """No growth past the base when even the base does not fit."""
    sizes = backfill(BatchSizer(base=1000, cap=20_000, max_bytes=4 * MB), solr_commit, 5, row_bytes=512_000)
    assert sizes == [1000] * 5


def test_fixed_when_cap_is_base() -> None:
    sizes = backfill(BatchSizer(base=1000, cap=1000, max_bytes=4 * MB), solr_commit, 5)
    assert sizes == [1000] * 5


def test_needs_sane_limits() -> None:
    with pytest.raises(ValueError):
        BatchSizer(base=10, cap=5, max_bytes=1)
