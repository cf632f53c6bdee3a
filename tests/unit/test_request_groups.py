"""panda_rows.request_groups: bulk PUT bodies stay within the byte cap; a row bigger than it goes alone."""

import orjson
import pytest

from bridge.sink.panda_rows import request_groups


def rows(*sizes: int) -> list[tuple[int, bytes]]:
    """Objects whose serialised form has exactly these sizes (each at least 2 bytes: "")."""
    return [(i, orjson.dumps("x" * (size - 2))) for i, size in enumerate(sizes)]


def body(group: list[tuple[int, bytes]]) -> bytes:
    return b'{"objects":[' + b",".join(encoded for _, encoded in group) + b"]}"


@pytest.mark.parametrize(
    ("sizes", "cap", "groups"),
    [
        ([10, 10, 10], 1000, [[0, 1, 2]]),
        # 14 bytes of frame + 10 + 1 + 10 = 35: two fit in 35, not three
        ([10, 10, 10], 35, [[0, 1], [2]]),
        ([10, 10, 10], 34, [[0], [1], [2]]),
        # one object bigger than the cap: alone, neither held back nor dropped
        ([10, 5000, 10], 100, [[0], [1], [2]]),
        ([5000], 100, [[0]]),
        ([], 100, []),
    ],
)
def test_groups(sizes: list[int], cap: int, groups: list[list[int]]) -> None:
    items = rows(*sizes)
    got = list(request_groups(items, cap))
    assert [[i for i, _ in group] for group in got] == groups
    for group in got:
        assert len(body(group)) <= cap or len(group) == 1
