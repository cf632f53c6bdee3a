"""External_ids too long for PANDA's request line (contract 14): never written, dead-lettered, the bridge goes on.

nginx gives 414 to a request line over 8 KB, CRLF included (the emulator is exactly that strict). A bulk
PUT carries ids in its body, so a long id is accepted there, but the DELETE of that row would carry it in
the URL and fail for ever: such a row is refused before it is written.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import requests

from bridge.config.settings import PandaSettings, RetrySettings
from bridge.emulator import DEFAULT_API_KEY, DEFAULT_EMAIL, PandaEmulator
from bridge.model import Delete, Upsert
from bridge.sink.panda import PandaSink
from tests.support.couchdb_server import CouchDatabase
from tests.support.pipeline import Pipeline

LIMIT = 8192  # contract 14: nginx's large header buffer, for the request line and its CRLF
DATASET = "d"
COLUMNS = ["a"]


@pytest.fixture
def emu(panda_server: PandaEmulator) -> PandaEmulator:
    panda_server.reset()
    panda_server.create_dataset(DATASET, COLUMNS)
    return panda_server


@pytest.fixture
def sink(emu: PandaEmulator) -> Iterator[PandaSink]:
    sink = PandaSink(PandaSettings(url=emu.url, email=DEFAULT_EMAIL, api_key="k", dataset=DATASET, timeout=5.0),
                     retry=RetrySettings(initial_delay=0.01, max_delay=0.05), stop=threading.Event())
    yield sink
    sink.close()


def longest_id() -> int:
    """Worked out here from the contract, not from the sink: `DELETE <path> HTTP/1.1` plus CRLF."""
    return LIMIT - len(f"DELETE /api/1.0/dataset/{DATASET}/data// HTTP/1.1\r\n")


def test_the_emulator_answers_414_one_byte_past_the_limit(emu: PandaEmulator) -> None:
    headers = {"PANDA-EMAIL": DEFAULT_EMAIL, "PANDA-API-KEY": DEFAULT_API_KEY}
    base = f"{emu.url}/api/1.0/dataset/{DATASET}/data/"
    fits = requests.delete(base + "x" * longest_id() + "/", headers=headers, timeout=5)
    over = requests.delete(base + "x" * (longest_id() + 1) + "/", headers=headers, timeout=5)
    assert (fits.status_code, over.status_code) == (204, 414)


def test_the_longest_deletable_id_is_written_and_deleted(sink: PandaSink, emu: PandaEmulator) -> None:
    eid = "x" * longest_id()
    assert sink.upsert([Upsert(eid, ("v",))]) == []
    assert list(emu.rows(DATASET)) == [eid]
    assert sink.delete([Delete(eid)]) == []
    assert emu.rows(DATASET) == {}


def test_an_id_one_longer_is_refused_before_it_is_written(sink: PandaSink, emu: PandaEmulator) -> None:
    eid = "x" * (longest_id() + 1)
    refused = sink.upsert([Upsert(eid, ("v",)), Upsert("short", ("w",))])
    assert [r.external_id for r in refused] == [eid] and "request-line limit" in refused[0].reason
    assert emu.rows(DATASET) == {"short": ["w"]}
    deleted = sink.delete([Delete(eid), Delete("short")])  # a row an older bridge may have written
    assert [r.external_id for r in deleted] == [eid]
    assert emu.rows(DATASET) == {} and all(len(r.path) < LIMIT for r in emu.requests)


def test_a_414_on_a_delete_is_dead_lettered_not_fatal(sink: PandaSink, emu: PandaEmulator) -> None:
    sink.max_id_length = 10 * LIMIT  # as if a proxy in front had a shorter limit than the bridge assumes
    eid = "y" * LIMIT
    refused = sink.delete([Delete(eid), Delete("other")])
    assert [(r.external_id, r.status) for r in refused] == [(eid, 414)]
    assert [r.path for r in emu.requests if r.method == "DELETE"] == [f"/api/1.0/dataset/{DATASET}/data/other/"]


def test_the_bridge_dead_letters_a_document_whose_id_is_too_long_and_goes_on(
        pipeline: Pipeline, couch_db: CouchDatabase) -> None:
    server, db = couch_db.server, couch_db.name
    long_id = "user:" * 1700  # 8,500 characters; encoded ':' takes four, so about 15,000
    docs = [{"_id": "a", "first_name": "A"}, {"_id": long_id, "first_name": "L"}, {"_id": "b", "first_name": "B"}]
    server.bulk_docs(db, docs)
    first = pipeline.once()
    assert first.returncode == 0, first.stderr
    assert sorted(pipeline.rows()) == ["a", "b"]
    letters = [json.loads(line) for line in pipeline.deadletter.read_text().splitlines()]
    assert [letter["doc_id"] for letter in letters] == [long_id]
    assert "request-line limit" in letters[0]["reason"]
    live = server.live_docs(db)
    server.bulk_docs(db, [{"_id": doc_id, "_rev": live[doc_id]["_rev"], "_deleted": True} for doc_id in live])
    second = pipeline.once()
    assert second.returncode == 0, second.stderr
    assert pipeline.rows() == {}
