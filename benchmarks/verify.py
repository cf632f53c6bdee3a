"""`bridge verify` at scale (`./dev bench-verify [--sizes 50000,200000]`).

For each size: a fresh PouchDB database of that many `people` documents, mirrored by `bridge once`, then
`bridge verify --json` in a fresh process under /usr/bin/time (wall time, peak RSS), in sync; then the same
after deleting 1,000 rows and changing 1,000 in PANDA behind the bridge's back (a twentieth of the rows each
for smaller sizes), the re-read by id of each difference included. Peak RSS at two sizes shows whether memory
grows with the row count.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support.couchdb_server

import bridge_proc  # noqa: E402
import people  # noqa: E402
from measure import Run, run_measured  # noqa: E402
from servers import EmulatorProcess, wait_idle  # noqa: E402

from tests.support.couchdb_server import PouchServer  # noqa: E402

CHANGED = 1000


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50000,200000", help="row counts, comma-separated")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "verify-latest.json")
    return parser.parse_args(argv)


def _panda(emulator: EmulatorProcess, method: str, path: str, body: Any = None) -> None:
    headers = {"PANDA-EMAIL": "panda@pandaproject.net", "PANDA-API-KEY": "panda-demo-key",
               "Content-Type": "application/json"}
    response = requests.request(method, "%s/api/1.0/dataset/%s/%s" % (emulator.url, bridge_proc.DATASET, path),
                                headers=headers, data=None if body is None else orjson.dumps(body), timeout=60)
    response.raise_for_status()


def _verify(config: Path, servers: dict[str, int], couch: PouchServer) -> Run:
    wait_idle(couch.pid)
    run = run_measured([*bridge_proc.command(config, "verify"), "--json", "--examples", "3"], servers=servers,
                       env=bridge_proc.env())
    return run


def _size(size: int, couch: PouchServer, emulator: EmulatorProcess, workdir: Path) -> dict[str, Any]:
    db = "verify_%d" % size
    load_s, _revs = people.load(couch, db, size, churn=False)
    emulator.reset()
    config = bridge_proc.write_config(workdir / db, couch.url, db, emulator.url)
    servers = {"pouchdb": couch.pid, "emulator": emulator.pid}
    mirror = run_measured(bridge_proc.command(config, "once"), servers=servers, env=bridge_proc.env())
    if mirror.exit_code != 0 or emulator.row_count(bridge_proc.DATASET) != size:
        raise RuntimeError("bridge once did not mirror %d rows:\n%s" % (size, mirror.log_tail))
    in_sync = _verify(config, servers, couch)
    if in_sync.output.get("in_sync") is not True:
        raise RuntimeError("verify of a mirrored dataset is not in sync: %r" % (in_sync.output,))
    changed = min(CHANGED, size // 20)
    step = size // changed
    for n in range(changed):
        _panda(emulator, "DELETE", "data/%s/" % people.doc_id(n * step))
    objects = [{"external_id": people.doc_id(n * step + 1), "data": ["edited", "by", "hand"]} for n in range(changed)]
    _panda(emulator, "PUT", "data/", {"objects": objects})
    drifted = _verify(config, servers, couch)
    found = {kind: drifted.output.get(kind, {}).get("count") for kind in ("missing", "stale")}
    if found != {"missing": changed, "stale": changed}:
        raise RuntimeError("verify found %r, not %d missing and %d stale" % (found, changed, changed))
    couch.delete_db(db)
    return {"rows": size, "load_s": round(load_s, 1), "mirror": mirror.as_json(),
            "verify_in_sync": _slim(in_sync), "differences": 2 * changed, "verify_with_differences": _slim(drifted)}


def _slim(run: Run) -> dict[str, Any]:
    data = run.as_json()
    data["output"] = {key: value for key, value in run.output.items() if key in ("in_sync", "seconds", "panda_rows")}
    return data


def main(argv: list[str] | None = None) -> int:
    args = _options(argv)
    sizes = [int(text) for text in args.sizes.split(",") if text]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bridge-bench-verify-") as tmp:
        workdir = Path(tmp)
        couch = PouchServer(start_timeout=60).start()
        emulator = EmulatorProcess(workdir / "emulator.log").start()
        try:
            for size in sizes:
                started = time.monotonic()
                results.append(_size(size, couch, emulator, workdir))
                print("%d rows done in %.0f s" % (size, time.monotonic() - started), file=sys.stderr)
        finally:
            emulator.stop()
            couch.close()
    report = {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
              "sizes": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print("| rows | verify, in sync: wall | peak RSS | per 100,000 rows | differences | verify: wall | peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for entry in results:
        clean, drift = entry["verify_in_sync"], entry["verify_with_differences"]
        print("| %d | %.1f s | %.0f MB | %.1f s | %d | %.1f s | %.0f MB |" % (
            entry["rows"], clean["wall_s"], clean["peak_rss_mb"], clean["wall_s"] * 100_000 / entry["rows"],
            entry["differences"], drift["wall_s"], drift["peak_rss_mb"]))
    print("written to %s" % args.output, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
