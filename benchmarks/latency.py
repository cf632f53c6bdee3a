"""Follow-mode latency: a steady stream of writes to CouchDB while `bridge run` follows, and the time
from each write until PANDA received the row carrying it (the emulator records each request's arrival)."""

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
                   ) -> dict[str, Any]:
    """Write `rate` documents a second for `seconds` while the bridge follows; latency percentiles in ms."""
    db = "follow"
    couch.delete_db(db)
    couch.create_db(db)
    emulator.reset()
    config = bridge_proc.write_config(workdir / "follow", couch.url, db, emulator.url)
    started = start_measured(bridge_proc.command(config, "run"), servers={}, env=bridge_proc.env())
    try:
        # warm-up: the bridge has prepared and is following once this row arrives
        couch.put_doc(db, people.person(0, "warm"))
        _wait(lambda: emulator.row_count(bridge_proc.DATASET) == 1, "the bridge follows", 60)
        emulator.control("DELETE", "requests")
        written: dict[str, float] = {}
        count = int(rate * seconds)
        t0 = time.time()
        for n in range(count):
            due = t0 + n / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            now = time.time()
            doc = people.person(n, "live", written_at=now)
            couch.put_doc(db, doc)
            written[doc["_id"]] = now
        achieved = count / (time.time() - t0)
        _wait(lambda: emulator.row_count(bridge_proc.DATASET) == count + 1, "every row arrived", 60)
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
        "seen": len(latencies),
        "put_requests": requests,
        "p50_ms": round(_percentile(latencies, 0.50), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "bridge": run.as_json(),
    }
