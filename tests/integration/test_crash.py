"""Issue 3: `kill -9` at any instant, then `bridge --since last`, converges to the right dataset.

A writer thread keeps creating, updating (also back to earlier content), deleting and recreating
documents while the bridge is started and SIGKILLed again and again at random moments (seeded). After
every kill the checkpoint must open; at the end one `bridge once` must leave PANDA equal to CouchDB.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.couch_api import CouchServer
from tests.support.pipeline import Pipeline, make_docs

KILLS = 24
SEED = 20261127
_SURNAMES = ("Ames", "Bligh", "Cole")  # few values, so content often goes back to what was sent before


class Writer(threading.Thread):
    """Creates, updates, deletes and recreates documents until stopped; keeps every revision it made."""

    def __init__(self, server: CouchServer, db: str, revs: dict[str, str], seed: int) -> None:
        super().__init__(name="workload-writer", daemon=True)
        self.server, self.db, self.revs = server, db, revs
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.deleted: dict[str, str] = {}
        self.next_id = 10_000
        self.writes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.wait(self.rng.uniform(0.0, 0.03)):
                self.step()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def step(self) -> None:
        rng, docs = self.rng, []
        for _ in range(rng.randint(1, 6)):
            action = rng.random()
            if action < 0.3 or not self.revs:
                doc = make_docs(1, start=self.next_id)[0]
                self.next_id += 1
            elif action < 0.75:
                doc_id = rng.choice(sorted(self.revs))
                doc = {"_id": doc_id, "_rev": self.revs[doc_id], "first_name": doc_id,
                       "last_name": rng.choice(_SURNAMES), "job": {"employer": "E"}}
            elif action < 0.9:
                doc_id = rng.choice(sorted(self.revs))
                doc = {"_id": doc_id, "_rev": self.revs[doc_id], "_deleted": True}
            elif self.deleted:
                doc_id = rng.choice(sorted(self.deleted))  # recreated without a _rev: CouchDB 3 answers a
                doc = {"_id": doc_id, "first_name": doc_id,   # tombstone's rev with 409, both accept none
                       "last_name": rng.choice(_SURNAMES), "job": {"employer": "E"}}
            else:
                continue
            if all(d["_id"] != doc["_id"] for d in docs):
                docs.append(doc)
        for doc, result in zip(docs, self.server.bulk_docs(self.db, docs), strict=True):
            assert "rev" in result, result
            doc_id = doc["_id"]
            if doc.get("_deleted"):
                self.revs.pop(doc_id, None)
                self.deleted[doc_id] = result["rev"]
            else:
                self.deleted.pop(doc_id, None)
                self.revs[doc_id] = result["rev"]
        self.writes += len(docs)


def show_checkpoint(pipeline: Pipeline) -> dict[str, Any]:
    result = subprocess.run(pipeline.command("checkpoint", "show"), env=pipeline.env(), capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def test_sigkill_at_random_points_then_since_last_converges(couch_db, pipeline, panda, tmp_path: Path):
    server, db = couch_db.server, couch_db.name
    rng = random.Random(SEED)
    # Small batches and a short heartbeat: many commits, so kills land in every part of the cycle.
    pipeline.extra = {"source": {"heartbeat": 0.5, "page_size": 40}, "batch": {"max_changes": 25, "max_age": 0.05}}
    pipeline.write_config()
    docs = make_docs(200)
    revs = {doc["_id"]: result["rev"] for doc, result in zip(docs, server.bulk_docs(db, docs), strict=True)}
    writer = Writer(server, db, revs, SEED)
    writer.start()
    seqs = []
    try:
        for attempt in range(KILLS):
            with (tmp_path / f"run-{attempt:02d}.log").open("w") as log:
                process = subprocess.Popen(pipeline.command("run", "--since", "last"), env=pipeline.env(),
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
                time.sleep(rng.uniform(0.0, 1.5))
                process.kill()
                process.wait(30)
            assert process.returncode == -9, (tmp_path / f"run-{attempt:02d}.log").read_text()[-3000:]
            if pipeline.checkpoint.exists():
                seqs.append(show_checkpoint(pipeline).get("seq"))  # opens, reads, is never torn
            assert writer.error is None and writer.is_alive()
    finally:
        writer.halt.set()
        writer.join(30)
    assert writer.error is None, writer.error
    assert writer.writes > 100 and any(seq is not None for seq in seqs)  # work happened between kills

    result = pipeline.once()  # --since last is the default
    assert result.returncode == 0, result.stderr
    assert pipeline.rows() == pipeline.expected(server.live_docs(db))
    assert not pipeline.deadletter.exists() or pipeline.deadletter.read_text() == ""
