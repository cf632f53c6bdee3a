"""Batches grow while PANDA's writes are slow and a backlog waits, and stay fixed when PANDA answers fast.

End to end: the writer thread times each write, the pipeline hands that to core/sizing.py, and the PUTs
PANDA receives show the outcome; every row arrives either way.
"""

from __future__ import annotations

import pytest

from bridge.core.sizing import SLOW_WRITE
from tests.support.pipeline import make_docs

BASE, CAP, DOCS = 500, 4000, 6000


@pytest.mark.parametrize(("latency", "grows"), [(0.0, False), (SLOW_WRITE + 0.02, True)])
def test_batches_grow_only_while_writes_are_slow(couch_db, pipeline, panda, latency, grows):
    for start in range(0, DOCS, 1000):
        couch_db.server.bulk_docs(couch_db.name, make_docs(1000, start))
    panda.set_latency(latency)
    pipeline.extra = {"batch": {"max_changes": BASE, "grow_to": CAP}}
    result = pipeline.once(timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert pipeline.rows() == pipeline.expected(couch_db.server.live_docs(couch_db.name))

    puts = [r for r in panda.requests if r.method == "PUT" and r.path.endswith("/data/") and r.status == 202]
    counts = [len(r.body["objects"]) for r in puts]
    assert sum(counts) == DOCS
    assert max(counts) <= CAP
    if grows:
        assert max(counts) > BASE, counts  # fewer, bigger writes while each costs PANDA a slow commit
        assert len(puts) < DOCS // BASE
    else:
        assert max(counts) == BASE, counts  # rows, not requests, decide a fast PANDA's speed
