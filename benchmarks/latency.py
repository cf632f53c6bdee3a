"""Follow-mode latency: a steady stream of writes to CouchDB while `bridge run` follows, and the time
from each write until PANDA received the row carrying it (the emulator records each request's arrival).

Optionally PANDA is slow (`panda_latency` per write) and the bridge first backfills `backlog` documents,
so the stream starts right after a backfill whose batches grew. Writes due at the same moment go in one
`_bulk_docs` request, so one writing thread keeps up with 1,000 writes a second.

`source_latency` runs the same stream with no bridge and no PANDA: a plain longpoll follower
(`clients.py follower`) measures how late the source itself hands each write out, the floor under the
bridge's figure in the same conditions.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bridge_proc
import orjson
import people
from measure import finish_measured, start_measured, stop_measured
from servers import EmulatorProcess

__all__ = ["follow_latency", "source_latency"]


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


def _write_stream(couch: Any, db: str, rate: float, seconds: float) -> tuple[dict[str, float], float]:
    """Write `rate` documents a second for `seconds`, each carrying its time (`written_at`); returns each
    document's time by id, and the rate achieved."""
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
    return written, count / (time.time() - t0)


def _fresh_db(couch: Any, backlog: int) -> str:
    """The database the stream is written to, made anew, holding `backlog` older documents."""
    db = "follow"
    couch.delete_db(db)
    if backlog:
        people.load(couch, db, backlog, churn=False, prefix="old")
    else:
        couch.create_db(db)
    return db


def _figures(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_percentile(latencies, 0.50), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
    }


def source_latency(couch: Any, workdir: Path, *, rate: float, seconds: float, backlog: int = 0,
                   deadline: float = 600.0) -> dict[str, Any]:
    """The same stream as `follow_latency`, read by a plain longpoll follower alone: the source's own delay."""
    db = _fresh_db(couch, backlog)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "source-latency.json"
    count = int(rate * seconds)
    command = [sys.executable, str(Path(__file__).with_name("clients.py")), "follower", "--url", couch.url,
               "--db", db, "--expect", str(count), "--out", str(out), "--deadline", str(deadline)]
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != b"ready":  # it exits at its deadline: readline cannot hang
                raise RuntimeError("the source follower did not start (exit %s)" % proc.wait())
            written, achieved = _write_stream(couch, db, rate, seconds)
            proc.stdout.read()
        except BaseException:
            proc.kill()  # the stream failed: the follower would wait for its rows until its deadline
            raise
        if proc.wait() != 0:
            raise RuntimeError("the source follower failed (exit %d)" % proc.returncode)
    latencies: list[float] = orjson.loads(out.read_bytes())
    return {"writes": len(written), "rate_per_s": round(achieved, 1), "backlog": backlog, "seen": len(latencies),
            **_figures(latencies)}


def follow_latency(couch: Any, emulator: EmulatorProcess, workdir: Path, *, rate: float, seconds: float,
                   panda_latency: float = 0.0, backlog: int = 0) -> dict[str, Any]:
    """Write `rate` documents a second for `seconds` while the bridge follows; latency percentiles in ms."""
    db = _fresh_db(couch, backlog)
    emulator.reset(panda_latency)
    config = bridge_proc.write_config(workdir / "follow", couch.url, db, emulator.url)
    started = start_measured(bridge_proc.command(config, "run"), servers={}, env=bridge_proc.env())
    try:
        # warm-up: the bridge has backfilled, prepared and is following once this row arrives
        couch.put_doc(db, people.person(0, "warm"))
        _wait(lambda: emulator.row_count(bridge_proc.DATASET) == backlog + 1, "the bridge follows", 600)
        emulator.control("DELETE", "requests")
        written, achieved = _write_stream(couch, db, rate, seconds)
        count = len(written)
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
        **_figures(latencies),
        "bridge": run.as_json(),
    }
