"""paging.py: the next page's row limit follows the bytes of the pages read (hand-written tables)."""

import pytest

from bridge.core.paging import PageSizer

MB = 1_000_000


@pytest.mark.parametrize(
    ("pages", "limits"),
    [
        # small rows: the limit stays at max_rows
        ([(1000, 300_000), (1000, 300_000)], [1000, 1000]),
        # 512 KB rows: 4 MB holds 7 of them
        ([(1000, 512_000_000)], [7]),
        # one 7 MB document among 999 small rows: the page's bytes per row decide
        ([(1000, 7 * MB + 300_000)], [547]),
        # a 7 MB document alone, bigger than the budget: one row per page, never zero
        ([(1, 7 * MB), (1, 7 * MB)], [1, 1]),
        # small again after the big one: back up by doubling, never a jump to 1000
        ([(1, 7 * MB), (1, 300), (2, 600), (4, 1200), (8, 2400)], [1, 2, 4, 8, 16]),
        # an empty page says nothing about sizes
        ([(1000, 512_000_000), (0, 10)], [7, 7]),
        # rows exactly at the budget together
        ([(1000, 4 * MB)], [1000]),
    ],
)
def test_limit_after_pages(pages: list[tuple[int, int]], limits: list[int]) -> None:
    sizer = PageSizer(max_rows=1000, max_bytes=4 * MB)
    for _ in range(7):  # small first pages (16, 32, ... rows) until max_rows
        sizer.read(sizer.limit, sizer.limit * 300)
    assert sizer.limit == 1000
    assert [sizer.read(rows, nbytes) for rows, nbytes in pages] == limits
    assert sizer.limit == limits[-1]


def test_pages_of_the_limit_stay_within_the_budget_after_the_first() -> None:
    sizer = PageSizer(max_rows=1000, max_bytes=4 * MB)
    for _ in range(20):
        limit = sizer.limit
        sizer.read(limit, limit * 512_000)
        assert sizer.limit * 512_000 <= 4 * MB


def test_the_first_page_is_small_and_grows_by_doubling() -> None:
    sizer = PageSizer(max_rows=1000, max_bytes=4 * MB)
    assert sizer.limit == 16
    assert [sizer.read(sizer.limit, sizer.limit * 300) for _ in range(7)] == [32, 64, 128, 256, 512, 1000, 1000]
    assert PageSizer(max_rows=5, max_bytes=4 * MB).limit == 5
    big = PageSizer(max_rows=1000, max_bytes=4 * MB)
    assert big.read(16, 16 * 512_000) == 7  # the first page of 512 KB rows: 8 MB, never 500 MB


def test_needs_positive_limits() -> None:
    with pytest.raises(ValueError):
        PageSizer(0, 1)
    with pytest.raises(ValueError):
        PageSizer(1, 0)


@pytest.mark.parametrize(("rows", "nbytes"), [(16, 16 * 300), (16, 16 * 512_000), (0, 10), (3, 7 * MB)])
def test_after_is_the_limit_read_would_give_and_changes_nothing(rows: int, nbytes: int) -> None:
    sizer = PageSizer(max_rows=1000, max_bytes=4 * MB)
    guessed = sizer.after(rows, nbytes)
    assert sizer.limit == 16  # not accounted for
    assert sizer.read(rows, nbytes) == guessed
