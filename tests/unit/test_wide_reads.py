"""CouchHttp's sessions read responses through a wide buffer and still read chunked bodies exactly, and a
body cut off mid-chunk still fails (so the feed re-reads it) instead of passing as complete."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from bridge.config.settings import SourceSettings
from bridge.source.couch_http import CouchHttp
from bridge.source.wide_reads import READ_BUFFER, WideReadAdapter, _WideResponse

CHUNKS = [b'{"results":[', *(b'{"seq":%d,"id":"d%d"},' % (n, n) for n in range(2000)), b'{"seq":2000,"id":"last"}]}']


@contextmanager
def _server(cut: bool) -> Iterator[str]:
    """A one-connection HTTP server answering a chunked body, cut off before its end when `cut`."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunks = CHUNKS[: len(CHUNKS) // 2] if cut else CHUNKS
            for chunk in chunks:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if cut:
                conn.sendall(b"40\r\n" + b"x" * 10)  # a chunk that never ends
            else:
                conn.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % port
    finally:
        thread.join(10)
        listener.close()


def test_couch_sessions_read_through_the_wide_buffer():
    http = CouchHttp(SourceSettings(url="http://127.0.0.1:5984", database="db"))
    adapter = http.session.get_adapter("http://127.0.0.1:5984/db")
    assert isinstance(adapter, WideReadAdapter)
    assert READ_BUFFER >= 1 << 20


def test_a_chunked_body_is_read_whole_and_exactly():
    with _server(cut=False) as url:
        http = CouchHttp(SourceSettings(url=url, database="db"))
        response = http.send("GET", url + "/db/_changes", stream=True)
        assert isinstance(response.raw._fp, _WideResponse)
        assert b"".join(response.iter_content(1 << 16)) == b"".join(CHUNKS)
        http.close()


def test_a_body_cut_off_mid_chunk_still_fails():
    with _server(cut=True) as url:
        session = requests.Session()
        session.mount("http://", WideReadAdapter())
        response = session.get(url + "/db/_changes", stream=True, timeout=10)
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            b"".join(response.iter_content(1 << 16))
        session.close()
