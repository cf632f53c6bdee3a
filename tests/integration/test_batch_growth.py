"""Batches grow while PANDA's writes are slow and a backlog waits.

End to end: the writer thread times each write, the pipeline hands that to core/sizing.py, and the PUTs
PANDA receives show the outcome; every row arrives. That a fast PANDA keeps batches fixed is the rule's
other side, tested in tests/unit/test_sizing.py: end to end it would depend on the machine's load (a busy
machine can make any write take the 0.1 s that counts as slow, and then growing is right).
"""

from __future__ import annotations

from bridge.core.sizing import SLOW_WRITE
from tests.support.pipeline import make_docs

BASE, CAP, DOCS = 500, 4000, 6000


def test_batches_grow_while_writes_are_slow(couch_db, pipeline, panda):
    for start in range(0, DOCS, 1000):
        couch_db.server.bulk_docs(couch_db.name, make_docs(1000, start))
    panda.set_latency(SLOW_WRITE + 0.02)  # every write at least that slow, whatever the machine's load
    pipeline.extra = {"batch": {"max_changes": BASE, "grow_to": CAP}}
    result = pipeline.once(timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert pipeline.rows() == pipeline.expected(couch_db.server.live_docs(couch_db.name))

    puts = [r for r in panda.requests if r.method == "PUT" and r.path.endswith("/data/") and r.status == 202]
    counts = [len(r.body["objects"]) for r in puts]
    assert sum(counts) == DOCS
    assert max(counts) <= CAP
    assert max(counts) > BASE, counts  # fewer, bigger writes while each costs PANDA a slow commit
    assert len(puts) < DOCS // BASE
