"""decode.py: raw `_changes` rows become Changes; anything else is a DecodeError."""

import types

import pytest

from bridge.errors import DecodeError
from bridge.model import Change, Seq
from bridge.source.decode import decode_row, decode_seq


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"seq": 3, "id": "a", "changes": [{"rev": "1-x"}], "doc": {"_id": "a", "n": 1}},
         Change(Seq(3), "a", False, {"_id": "a", "n": 1}, "1-x")),
        ({"seq": "12-g1AAAA", "id": "a", "changes": [{"rev": "2-y"}], "deleted": True,
          "doc": {"_id": "a", "_rev": "2-y", "_deleted": True}},
         Change(Seq("12-g1AAAA"), "a", True, {"_id": "a", "_rev": "2-y", "_deleted": True}, "2-y")),
        # a tombstone that kept body fields is still a delete: decided from `deleted`, not the body
        ({"seq": 4, "id": "b", "changes": [{"rev": "3-z"}], "deleted": True, "doc": {"_id": "b", "x": 1}},
         Change(Seq(4), "b", True, {"_id": "b", "x": 1}, "3-z")),
        # seq_interval rows carry a null seq; unknown keys are ignored
        ({"seq": None, "id": "c", "changes": [], "removed": ["ch"]}, Change(None, "c", False, None, None)),
        ({"seq": 5, "id": "d", "changes": [{"rev": "1-a"}], "deleted": False}, Change(Seq(5), "d", False, None, "1-a")),
    ],
)
def test_rows_decode(row, expected):
    assert decode_row(row) == expected


def test_the_size_the_source_measured_is_kept():
    row = {"seq": 6, "id": "e", "changes": [{"rev": "1-a"}]}
    assert decode_row(row, 300) == Change(Seq(6), "e", False, None, "1-a", size=300)
    general = types.MappingProxyType(row)  # not a plain dict: the general path
    assert decode_row(general, 300) == Change(Seq(6), "e", False, None, "1-a", size=300)


@pytest.mark.parametrize(
    "row",
    [
        [],
        "x",
        {"seq": 1},
        {"seq": 1, "id": 7},
        {"seq": 1.5, "id": "a"},
        {"seq": [1], "id": "a"},
        {"seq": True, "id": "a"},
        {"seq": 1, "id": "a", "doc": [1, 2]},
    ],
)
def test_malformed_rows_raise(row):
    with pytest.raises(DecodeError):
        decode_row(row)


def test_seq_kept_verbatim():
    assert decode_seq("7-abc").value == "7-abc"
    assert decode_seq(7).value == 7
    assert decode_seq(None) is None
    assert Seq(7).as_param() == "7"
    assert Seq("7-abc").as_param() == "7-abc"
