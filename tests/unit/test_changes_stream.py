"""Reading a `feed=continuous` response: chunks are not lines, only whole lines parse, and its last line ends it."""

from __future__ import annotations

import pytest

from bridge.errors import DecodeError, FeedInterrupted
from bridge.model import Seq
from bridge.source.changes_stream import Lines, StreamEnd, parse_line
from bridge.source.decode import UnreadableRow, decode_row

FEED = (b'{"seq":"1-a","id":"a","changes":[{"rev":"1-x"}],"doc":{"_id":"a","n":"ok"}}\n'
        b'\n'
        b'{"seq":"2-b","id":"b","changes":[{"rev":"1-y"}],"deleted":true,"doc":{"_id":"b","_deleted":true}}\n'
        b'{"last_seq":"2-b","pending":3}\n')


def read(chunks: list[bytes]) -> list[object]:
    lines = Lines()
    items = [parse_line(line, None) for chunk in chunks for line in lines.feed(chunk)]
    assert lines.held == 0
    return [item for item in items if item is not None]


@pytest.mark.parametrize("size", [1, 2, 7, 64, len(FEED)])
def test_any_chunking_gives_the_same_rows_and_end(size):
    items = read([FEED[i:i + size] for i in range(0, len(FEED), size)])
    assert [item["id"] for item in items[:2]] == ["a", "b"]  # type: ignore[index]
    assert items[2] == StreamEnd(Seq("2-b"), 3)
    assert len(items) == 3  # the blank line (a heartbeat) is no item


def test_an_unfinished_line_is_held_not_parsed():
    lines = Lines()
    assert lines.feed(FEED[:30]) == []
    assert lines.held == 30
    assert lines.feed(FEED[30:40]) == []
    end = FEED.index(b"\n")
    assert lines.feed(FEED[40:end + 2]) == [FEED[:end], b""]  # the row, then the blank line after it
    assert lines.held == 0


def test_a_last_line_without_pending_is_an_end_of_unknown_pending():
    assert parse_line(b'{"last_seq":12}', None) == StreamEnd(Seq(12), None)
    assert parse_line(b'{"last_seq":"5-x","pending":0}', None) == StreamEnd(Seq("5-x"), 0)


@pytest.mark.parametrize("line", [
    b'{"seq":"1-a","id":"a","doc":{"_id":',  # cut: only a whole line is parsed, but a server may send garbage
    b'[1, 2]',
    b'"text"',
    b'{"seq":"1-a","id":"\xff"}',
    b'{"last_seq":null,"pending":0}',
    b'{"error":"nodedown","reason":"progress not possible"}',
])
def test_a_line_that_is_no_row_and_no_end_interrupts_the_feed(line):
    with pytest.raises(FeedInterrupted):
        parse_line(line, Seq("1-a"))


def test_a_row_holding_a_lone_surrogate_is_kept_for_the_dead_letters():
    row = parse_line(b'{"seq":"3-c","id":"c","changes":[{"rev":"1-z"}],"doc":{"_id":"c","n":"x\\ud800y"}}', None)
    assert isinstance(row, UnreadableRow)
    with pytest.raises(DecodeError) as caught:
        decode_row(row)
    assert caught.value.seq == Seq("3-c") and "'doc.n'" in str(caught.value)
    assert "\\ud800" in row["row"] and row["row"].isascii()  # nothing lost


def test_a_row_of_an_unknown_shape_reaches_the_decoder():
    assert parse_line(b'{"seq":7,"note":"no id"}', None) == {"seq": 7, "note": "no id"}
    with pytest.raises(FeedInterrupted):
        parse_line(b'{"last_seq":"\\ud800"}', None)
