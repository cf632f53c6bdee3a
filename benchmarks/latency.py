"""Follow-mode latency: a steady stream of writes to CouchDB while `bridge run` follows, and the time
from each write until PANDA received the row carrying it (the emulator records each request's arrival).

Optionally PANDA is slow (`panda_latency` per write) and the bridge first backfills `backlog` documents,
so the stream starts right after a backfill whose batches grew. Writes due at the same moment go in one
`_bulk_docs` request, so one writing thread keeps up with 1,000 writes a second.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import bridge_proc
import people
from measure import finish_measured, start_measured, stop_measured
from servers import EmulatorProcess

__all__ = ["follow_latency"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _wait(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise RuntimeError("timed out waiting until %s" % what)


def follow_latency(couch: Any, emulator: EmulatorProcess, workdir: Path, *, rate: float, seconds: float,
                   panda_latency: float = 0.0, backlog: int = 0) -> dict[str, Any]:
    """Write `rate` documents a second for `seconds` while the bridge follows; latency percentiles in ms."""
    db = "follow"
    couch.delete_db(db)
    if backlog:
        people.load(couch, db, backlog, churn=False, prefix="old")
    else:
        couch.create_db(db)
    emulator.reset(panda_latency)
    config = bridge_proc.write_config(workdir / "follow", couch.url, db, emulator.url)
    started = start_measured(bridge_proc.command(config, "run"), servers={}, env=bridge_proc.env())
    try:
        # warm-up: the bridge has backfilled, prepared and is following once this row arrives
        couch.put_doc(db, people.person(0, "warm"))
        _wait(lambda: emulator.row_count(bridge_proc.DATASET) == backlog + 1, "the bridge follows", 600)
        emulator.control("DELETE", "requests")
        written: dict[str, float] = {}
        count = int(rate * seconds)
        t0 = time.time()
        n = 0
        while n < count:
            pause = t0 + n / rate - time.time()
            if pause > 0:
                time.sleep(pause)
            now = time.time()
            due = min(count, int((now - t0) * rate) + 1)  # every write due by now, at least the next one
            docs = [people.person(i, "live", written_at=now) for i in range(n, max(due, n + 1))]
            couch.bulk_docs(db, docs) if len(docs) > 1 else couch.put_doc(db, docs[0])
            written.update((doc["_id"], now) for doc in docs)
            n += len(docs)
        achieved = count / (time.time() - t0)
        _wait(lambda: emulator.row_count(bridge_proc.DATASET) == backlog + count + 1, "every row arrived", 60)
    finally:
        stop_measured(started)
        run = finish_measured(started)
    arrived: dict[str, float] = {}
    requests = 0
    for request in emulator.requests():
        if request["method"] == "PUT" and request["path"].endswith("/data/") and request["status"] == 202:
            requests += 1
            for obj in request["body"]["objects"]:
                arrived.setdefault(obj["external_id"], request["timestamp"])
    latencies = [(arrived[i] - t) * 1000 for i, t in written.items() if i in arrived]
    return {
        "writes": count,
        "rate_per_s": round(achieved, 1),
        "panda_latency_s": panda_latency,
        "backlog": backlog,
        "seen": len(latencies),
        "put_requests": requests,
        "p50_ms": round(_percentile(latencies, 0.50), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "bridge": run.as_json(),
    }
