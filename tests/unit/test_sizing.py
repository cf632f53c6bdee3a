"""sizing.py: batches grow while the sink is slow and a backlog waits, shrink when caught up, fit the byte cap."""

from typing import Any

import pytest

from bridge.core.sizing import SLOW_WRITE, BatchSizer

MB = 1_000_000

# (changes, feed bytes, caught_up, sink_busy) -> size after it, after 500 ms writes; 200-byte rows fit 20,000 in 4 MB
BacklogSlowSink = [((1000, 200_000, False, True), 2000), ((2000, 400_000, False, True), 4000),
                   ((4000, 800_000, False, True), 8000), ((8000, 1_600_000, False, True), 16000),
                   ((16000, 3_200_000, False, True), 20000), ((20000, 4_000_000, False, True), 20000)]


@pytest.mark.parametrize(
    ("batches", "sizes"),
    [
        # a slow sink and a backlog: doubling up to the row cap
        ([b for b, _ in BacklogSlowSink], [s for _, s in BacklogSlowSink]),
        # a sink that keeps up: fixed batches
        ([(1000, 230_000, False, False)] * 3, [1000, 1000, 1000]),
        # the sink is the bottleneck but answers fast (rows, not requests, decide): fixed batches
        ([(1000, 230_000, False, True, 0.02)] * 3, [1000, 1000, 1000]),
        # a slow sink but no backlog (the batch was due on age before it filled): no growth
        ([(300, 69_000, False, True)], [1000]),
        # caught up: back to the base at once, also right after growing
        ([(1000, 230_000, False, True), (2000, 460_000, False, True), (12, 2_760, True, True)], [2000, 4000, 1000]),
        # never over the byte cap: 400-byte rows fit 10,000 in 4 MB
        ([(1000, 400_000, False, True), (2000, 800_000, False, True), (4000, 1_600_000, False, True),
          (8000, 3_200_000, False, True), (10000, 4_000_000, False, True)], [2000, 4000, 8000, 10000, 10000]),
        # big documents: no growth past the base when even the base does not fit
        ([(1000, 512_000_000, False, True)], [1000]),
    ],
)
def test_sizes(batches: list[tuple[Any, ...]], sizes: list[int]) -> None:
    """Each batch is (changes, feed bytes, caught_up, sink_busy[, write seconds, else a 500 ms write])."""
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=4 * MB)
    got = [sizer.delivered(changes, nbytes, caught_up=caught_up, sink_busy=busy, write_seconds=(seconds or [0.5])[0])
           for changes, nbytes, caught_up, busy, *seconds in batches]
    assert got == sizes
    assert sizer.size == sizes[-1]


@pytest.mark.parametrize("row_bytes", [50, 230, 400, 4000, 40_000])
def test_grown_batches_never_exceed_the_byte_cap(row_bytes: int) -> None:
    sizer = BatchSizer(base=10, cap=1_000_000, max_bytes=4 * MB)
    for _ in range(40):
        size = sizer.size
        grown = sizer.delivered(size, size * row_bytes, caught_up=False, sink_busy=True, write_seconds=0.5)
        assert grown == 10 or grown * row_bytes <= 4 * MB


def test_fixed_when_cap_is_base() -> None:
    sizer = BatchSizer(base=1000, cap=1000, max_bytes=4 * MB)
    assert sizer.delivered(1000, 1000, caught_up=False, sink_busy=True, write_seconds=0.5) == 1000


@pytest.mark.parametrize(("seconds", "size"), [(SLOW_WRITE / 2, 1000), (SLOW_WRITE, 2000), (2.0, 2000)])
def test_grows_only_after_a_slow_write(seconds: float, size: int) -> None:
    sizer = BatchSizer(base=1000, cap=20_000, max_bytes=4 * MB)
    assert sizer.delivered(1000, 230_000, caught_up=False, sink_busy=True, write_seconds=seconds) == size


def test_needs_sane_limits() -> None:
    with pytest.raises(ValueError):
        BatchSizer(base=10, cap=5, max_bytes=1)
