"""Documents of 512 KB and one of 7 MB are mirrored exactly, in pages and bulk PUTs bounded by bytes.

The page and request budgets are set below these documents' sizes, so a page of many big rows is cut
down, the 7 MB document comes in a page of its own and goes in a PUT of its own (never held back, never
skipped), and every other PUT stays within `batch.max_request_bytes`.
"""

from __future__ import annotations

import orjson

from tests.support.pipeline import make_docs

KB = 1000
PAGE_BYTES = 2_000_000
REQUEST_BYTES = 1_500_000


def _big(doc_id: str, size: int, n: int) -> dict[str, object]:
    # varied text, so that rows differ and a cut or swapped cell would show
    text = (f"{doc_id}:" + "abcdefghij" * (size // 10))[:size]
    return {"_id": doc_id, "first_name": f"Big{n}", "last_name": text, "job": {"employer": f"E{n % 3}"},
            "unmapped": "y" * 1000}


def test_big_documents_are_mirrored_in_bounded_pages_and_requests(couch_db, pipeline, panda):
    server = couch_db.server
    small = make_docs(30)
    big = [_big(f"big-{n:03d}", 512 * KB, n) for n in range(12)]
    server.bulk_docs(couch_db.name, small[:10])
    for start in range(0, len(big), 4):  # _bulk_docs of a few at a time: a request body stays modest
        server.bulk_docs(couch_db.name, big[start:start + 4])
    server.bulk_docs(couch_db.name, small[10:20])
    server.put_doc(couch_db.name, _big("huge", 7_000 * KB, 99))
    server.bulk_docs(couch_db.name, small[20:])

    pipeline.extra = {"source": {"page_bytes": PAGE_BYTES},
                      "batch": {"max_request_bytes": REQUEST_BYTES, "max_bytes": 3_000_000}}
    result = pipeline.once(timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    docs = server.live_docs(couch_db.name)
    assert len(docs) == 30 + 12 + 1
    rows = pipeline.rows()
    assert rows == pipeline.expected(docs)
    assert len(rows["huge"][1]) == 7_000 * KB

    puts = [r for r in panda.requests if r.method == "PUT" and r.path.endswith("/data/") and r.status == 202]
    sizes = [(len(r.body["objects"]), len(orjson.dumps(r.body))) for r in puts]
    assert all(size <= REQUEST_BYTES for count, size in sizes if count > 1), sizes
    alone = [r.body["objects"][0]["external_id"] for r in puts if len(r.body["objects"]) == 1]
    assert "huge" in alone
    assert max(count for count, _ in sizes) > 1  # the small rows still go together
