"""Parsing a `_changes` page: cut-off bodies are read again, rows holding lone surrogates are refused alone."""

from __future__ import annotations

import pytest

from bridge.errors import DecodeError, FeedInterrupted
from bridge.model import Seq
from bridge.source.changes_page import parse_page
from bridge.source.decode import UnreadableRow, decode_row, lone_surrogate_path

PAGE = (b'{"results":[{"seq":"1-a","id":"a","changes":[{"rev":"1-x"}],"doc":{"_id":"a","n":"ok"}},\n'
        b'{"seq":"2-b","id":"b","changes":[{"rev":"1-y"}],"doc":{"_id":"b","n":"x\\ud800y"}}\n'
        b'],\n"last_seq":"2-b","pending":0}')


def test_a_page_with_a_lone_surrogate_keeps_its_other_rows_and_its_position():
    page = parse_page(PAGE, None)
    assert page.last_seq == Seq("2-b") and page.pending == 0
    good, bad = page.rows
    assert decode_row(good).doc == {"_id": "a", "n": "ok"}
    assert isinstance(bad, UnreadableRow)
    with pytest.raises(DecodeError) as caught:
        decode_row(bad)
    assert caught.value.seq == Seq("2-b")
    assert "lone UTF-16 surrogate" in str(caught.value) and "'doc.n'" in str(caught.value)
    assert bad["id"] == "b" and "\\ud800" in bad["row"] and bad["row"].isascii()  # nothing lost, writable


@pytest.mark.parametrize("cut", [10, len(PAGE) // 2, len(PAGE) - 1])
def test_a_cut_off_page_is_interrupted_not_refused(cut):
    with pytest.raises(FeedInterrupted):
        parse_page(PAGE[:cut], Seq("1-a"))


def test_invalid_utf8_is_interrupted():
    with pytest.raises(FeedInterrupted):
        parse_page(b'{"results":[{"seq":1,"id":"\xff"}],"last_seq":1}', None)


@pytest.mark.parametrize(("value", "path"), [
    ({"a": "fine", "b": ["x", {"c": "\udc00"}]}, "b[1].c"),
    ({"\ud83d": 1}, "\ud83d"),
    ("\ud800", "."),
    ({"emoji": "\U0001f600", "text": "Zürich"}, None),  # a proper pair is one character: fine
])
def test_lone_surrogate_path(value, path):
    assert lone_surrogate_path(value) == path
