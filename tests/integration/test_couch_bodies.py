"""CouchDB answers of the wrong JSON shape become BridgeErrors (or dead letters), never a traceback."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from bridge.config.settings import RetrySettings, SourceSettings
from bridge.errors import DecodeError, ProtocolError
from bridge.source.couchdb import CouchSource
from bridge.source.decode import decode_row
from tests.support.couchdb_server import CouchDatabase
from tests.support.fault_proxy import FaultProxy

QUICK = RetrySettings(initial_delay=0.01, max_delay=0.05, max_tries=2)


@pytest.fixture
def proxy(couch_db: CouchDatabase) -> Iterator[FaultProxy]:
    with FaultProxy(couch_db.server.base_url) as fault_proxy:
        yield fault_proxy


def source(proxy: FaultProxy, couch_db: CouchDatabase) -> CouchSource:
    settings = SourceSettings(url=couch_db.server.url_via(proxy.url), database=couch_db.name)
    return CouchSource(settings, retry=QUICK, stop=threading.Event())


def test_a_marker_that_is_not_an_object_is_a_protocol_error(proxy: FaultProxy, couch_db: CouchDatabase) -> None:
    proxy.respond(200, path="/_local/", body=["not", "an", "object"])
    couch = source(proxy, couch_db)
    try:
        with pytest.raises(ProtocolError, match="not an object"):
            couch.ensure_marker("abc", None)
    finally:
        couch.close()


def test_a_changes_row_that_is_not_an_object_reaches_the_decoder(proxy: FaultProxy,
                                                                 couch_db: CouchDatabase) -> None:
    couch_db.server.bulk_docs(couch_db.name, [{"_id": "a"}])
    proxy.inject(b'"not a row",')
    couch = source(proxy, couch_db)
    try:
        # each raw row comes with its size on the wire, as (row, size)
        rows = [item[0] for item in couch.changes(None, follow=False) if not hasattr(item, "caught_up")]
    finally:
        couch.close()
    assert rows[0] == "not a row"
    with pytest.raises(DecodeError):  # dead-lettered by the pipeline, with the raw item
        decode_row(rows[0])
    assert decode_row(rows[1]).doc_id == "a"
