"""Parsing a `_changes` page: cut-off bodies are read again, rows holding lone surrogates are refused alone."""

from __future__ import annotations

import pytest

from bridge.errors import DecodeError, FeedInterrupted
from bridge.model import Seq
from bridge.source.changes_page import parse_page, read_tail
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


# -- read_tail: the next request, guessed before the page is parsed ------------------------------------------

POUCH_PAGE = b'{"results":[{"id":"a","changes":[{"rev":"1-x"}],"doc":{"_id":"a","last_seq":7},"seq":1}],"last_seq":1}'


@pytest.mark.parametrize(("body", "last_seq", "pending"), [
    (PAGE, Seq("2-b"), 0),  # CouchDB: last_seq, then pending
    (POUCH_PAGE, Seq(1), None),  # PouchDB Server: no pending, and a document field of the same name
    (b'{"results":[],\n"last_seq":"9-g1AAAA","pending":12}\n', Seq("9-g1AAAA"), 12),
])
def test_the_tail_says_what_the_parsed_page_says(body: bytes, last_seq: Seq, pending: int | None) -> None:
    tail = read_tail(body)
    page = parse_page(body, None)
    assert tail is not None and (tail.last_seq, tail.pending) == (page.last_seq, page.pending) == (last_seq, pending)


@pytest.mark.parametrize("body", [
    PAGE[:-1],  # cut off before its closing brace
    PAGE[: PAGE.index(b'"last_seq"')],  # cut off before last_seq
    b'{"last_seq":3,"results":[{"id":"a","doc":{"last_seq":5}}]}',  # last_seq first: the field inside is not it
    b'{"results":[],"last_seq":null}',  # no position to ask from
    b'{"results":[],"last_seq":1.5}',  # not a seq (parse_page names the error)
    b'<html>busy</html>',
])
def test_a_tail_that_is_not_a_changes_ending_gives_no_guess(body: bytes) -> None:
    assert read_tail(body) is None
