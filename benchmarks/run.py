"""The bridge's benchmark suite (`./dev bench [options]`): the source and sink limits, the bridge end to end,
a peer reading the same feed, deletes, follow-mode latency and peak memory, in one run, side by side.

Every measured program runs in a fresh process (peak RSS and CPU from wait4); the variants alternate
round by round and the table shows medians. See benchmarks/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support.couchdb_server

import bridge_proc  # noqa: E402
import people  # noqa: E402
import phases  # noqa: E402
from latency import follow_latency  # noqa: E402
from measure import Run, run_measured  # noqa: E402
from servers import EmulatorProcess, wait_idle  # noqa: E402

from tests.support.couch_api import CouchServer  # noqa: E402
from tests.support.couchdb_server import PouchServer  # noqa: E402
from tests.support.real_couchdb import LaunchedCouchDB, couchdb_unavailable_reason  # noqa: E402

CLIENTS = str(Path(__file__).resolve().parent / "clients.py")
SLOW_WRITE = 0.020
PHASES = ("throughput", "slow", "deletes", "follow", "memory", "big", "adaptive", "followslow", "shapes")


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./dev bench", description=__doc__)
    parser.add_argument("--source", choices=("pouchdb", "couchdb"), default="pouchdb",
                        help="the CouchDB-protocol server to read from: PouchDB Server (npm) or real CouchDB 3 "
                             "from ../shared/couchdb (%(default)s)")
    parser.add_argument("--docs", type=int, default=100_000, help="documents for the throughput runs (%(default)s)")
    parser.add_argument("--memory-sizes", default="100000,1000000",
                        help="comma-separated database sizes for the peak-RSS runs (%(default)s)")
    parser.add_argument("--quick", action="store_true", help="skip memory sizes over 100,000 documents")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the throughput variants (%(default)s)")
    parser.add_argument("--delete-repeat", type=int, default=3, help="rounds of the delete variants (%(default)s)")
    parser.add_argument("--deletes", type=int, default=1000, help="rows deleted in the delete runs (%(default)s)")
    parser.add_argument("--latency-seconds", type=float, default=20.0,
                        help="length of the follow-mode write stream, 0 to skip (%(default)s)")
    parser.add_argument("--rate", type=float, default=100.0, help="writes per second in follow mode (%(default)s)")
    parser.add_argument("--shape", default=",".join(people.SHAPES),
                        help="document shapes for the backfill runs, comma-separated (%(default)s)")
    parser.add_argument("--big-docs", type=int, default=2000, help="512 KB documents in the big run (%(default)s)")
    parser.add_argument("--big-small", type=int, default=10_000,
                        help="small documents around the 7 MB one (%(default)s)")
    parser.add_argument("--adaptive-docs", type=int, default=20_000,
                        help="documents in the slow-PANDA adaptive-batch runs (%(default)s)")
    parser.add_argument("--adaptive-repeat", type=int, default=2, help="rounds of those runs (%(default)s)")
    parser.add_argument("--follow-rates", default="100,1000",
                        help="writes/s of the follow runs with a 20 ms PANDA (%(default)s)")
    parser.add_argument("--follow-backlog", type=int, default=20_000,
                        help="documents backfilled before those follow runs (%(default)s)")
    parser.add_argument("--follow-repeat", type=int, default=3,
                        help="rounds of those runs, each also read by a plain follower alone (%(default)s)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="comma-separated subset of %(default)s to run")
    parser.add_argument("--no-settle", action="store_true",
                        help="start each run without first waiting for both servers to be idle (the smoke test: "
                             "its timings are not compared, and each wait costs at least 0.5 s)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json",
                        help="JSON results file (%(default)s)")
    args = parser.parse_args(argv)
    args.phases = [phase for phase in args.phases.split(",") if phase]
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        parser.error("unknown phases: %s" % ", ".join(unknown))
    args.sizes = [int(size) for size in args.memory_sizes.split(",") if size.strip()]
    args.shapes = [shape for shape in args.shape.split(",") if shape]
    if sorted(set(args.shapes) - set(people.SHAPES)):
        parser.error("unknown shapes: %s" % ", ".join(sorted(set(args.shapes) - set(people.SHAPES))))
    args.follow_rates = [float(rate) for rate in args.follow_rates.split(",") if rate.strip()]
    if args.quick:
        args.sizes = [size for size in args.sizes if size <= 100_000]
    if args.source == "couchdb" and couchdb_unavailable_reason() is not None:
        parser.error("--source couchdb: no CouchDB release at ../shared/couchdb")
    return args


def _start_source(kind: str) -> PouchServer | LaunchedCouchDB:
    return PouchServer(start_timeout=60).start() if kind == "pouchdb" else LaunchedCouchDB().start()


class Bench:
    """Both servers, a scratch directory and the results collected so far."""

    def __init__(self, couch: PouchServer | LaunchedCouchDB, emulator: EmulatorProcess, scratch: Path, *,
                 settle: bool = True) -> None:
        self.couch = couch
        self.emulator = emulator
        self.scratch = scratch
        self._settle = settle
        self.results: dict[str, dict[str, Any]] = {}
        self._runs = 0

    @property
    def couch_pid(self) -> int:
        return self.couch.pid  # its CPU is part of every figure

    def settle(self) -> None:
        """Wait until both servers are idle, so a run does not pay for the one before (unless --no-settle)."""
        if self._settle:
            wait_idle(self.couch_pid, self.emulator.pid)

    def measure(self, name: str, command: list[str], rows: int, *, env: dict[str, str] | None = None,
                check: Callable[[], str | None] | None = None, settle: bool = True, **info: Any) -> Run:
        if settle:
            self.settle()
        run = run_measured(command, servers={"couch": self.couch_pid, "panda": self.emulator.pid}, env=env)
        problem = check() if check is not None and run.exit_code == 0 else None
        entry = self.results.setdefault(name, {"rows": rows, "runs": [], **info})
        data = run.as_json()
        if problem:
            data["problem"] = problem
        entry["runs"].append(data)
        status = "exit %d" % run.exit_code if run.exit_code else (problem or "ok")
        print("  %-34s %7.2f s  %6.1f MB  %s" % (name, run.wall_s, run.peak_rss_mb, status), flush=True)
        if run.exit_code:
            print(run.log_tail, file=sys.stderr)
        return run

    def fresh_dir(self, label: str) -> Path:
        self._runs += 1
        path = self.scratch / ("%03d-%s" % (self._runs, label))
        return path

    def rows_check(self, expected: int) -> Callable[[], str | None]:
        def check() -> str | None:
            got = self.emulator.row_count(bridge_proc.DATASET)
            return None if got == expected else "emulator holds %d rows, expected %d" % (got, expected)
        return check

    # variants

    def source(self, name: str, db: str, rows: int) -> None:
        self.measure(name, [sys.executable, CLIENTS, "source", "--url", self.couch.url, "--db", db], rows)

    def source_beside_busy_core(self, name: str, db: str, rows: int) -> None:
        """The source limit while another process keeps one core busy: what any consumer that needs a core
        of its own costs PouchDB Server on this machine (a control, not a limit)."""
        self.settle()
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        try:
            self.measure(name, [sys.executable, CLIENTS, "source", "--url", self.couch.url, "--db", db], rows,
                         settle=False)
        finally:
            burner.kill()
            burner.wait()

    def reader(self, name: str, db: str, rows: int) -> None:
        self.measure(name, [sys.executable, CLIENTS, "reader", "--url", self.couch.url, "--db", db], rows)

    def peer(self, name: str, db: str, rows: int) -> None:
        self.measure(name, [sys.executable, CLIENTS, "peer", "--url", self.couch.url, "--db", db,
                            "--expect", str(rows), "--deadline", _deadline(rows)], rows)

    def peer_ibm(self, name: str, db: str, rows: int) -> None:
        """ibmcloudant's ChangesFollower, one-off from 0. Its one-off mode ends when a page says `pending: 0`;
        PouchDB Server sends no `pending`, so there the follower would ask for empty pages for ever (it asked
        about 150 a second) and is given its own `limit` option, the feed's row count, instead."""
        limit = ["--limit", str(rows)] if isinstance(self.couch, PouchServer) else []
        self.measure(name, [sys.executable, CLIENTS, "peer-ibm", "--url", self.couch.url, "--db", db,
                            "--expect", str(rows), "--deadline", _deadline(rows), *limit], rows,
                     **({"limit": rows} if limit else {}))

    def sink(self, name: str, rows_file: Path, rows: int, live: int, latency: float = 0.0) -> None:
        self.emulator.reset(latency)
        self.emulator.create_dataset(bridge_proc.DATASET, people.COLUMNS)
        self.measure(name, [sys.executable, CLIENTS, "sink", "--panda", self.emulator.url, "--rows", str(rows_file)],
                     rows, check=self.rows_check(live), latency_s=latency)

    def bridge(self, name: str, db: str, rows: int, live: int, latency: float = 0.0,
               extra: dict[str, dict[str, Any]] | None = None) -> Run:
        self.emulator.reset(latency)
        config = bridge_proc.write_config(self.fresh_dir("bridge"), self.couch.url, db, self.emulator.url, extra)
        return self.measure(name, bridge_proc.command(config), rows, env=bridge_proc.env(),
                            check=self.rows_check(live), latency_s=latency, **({"settings": extra} if extra else {}))

    def raw_deletes(self, name: str, rows_file: Path, count: int, latency: float) -> None:
        self.emulator.reset()
        self.emulator.create_dataset(bridge_proc.DATASET, people.COLUMNS)
        put = run_measured([sys.executable, CLIENTS, "sink", "--panda", self.emulator.url, "--rows", str(rows_file)],
                           servers={})
        assert put.exit_code == 0, put.log_tail
        self.emulator.control("POST", "latency", {"seconds": latency})
        self.measure(name, [sys.executable, CLIENTS, "delete", "--panda", self.emulator.url, "--rows",
                            str(rows_file)], count, check=self.rows_check(0), latency_s=latency)

    def bridge_deletes(self, name: str, count: int, latency: float, tag: str) -> None:
        """Backfill `count` documents, delete them all in CouchDB, then time the `bridge once` that follows."""
        db = "deletes-%s" % tag
        self.couch.delete_db(db)
        _seconds, revs = people.load(self.couch, db, count, churn=False, prefix="d")
        self.emulator.reset()
        config = bridge_proc.write_config(self.fresh_dir("deletes"), self.couch.url, db, self.emulator.url)
        backfill = run_measured(bridge_proc.command(config), servers={}, env=bridge_proc.env())
        assert backfill.exit_code == 0, backfill.log_tail
        people.delete(self.couch, db, revs)
        self.emulator.control("POST", "latency", {"seconds": latency})
        self.measure(name, bridge_proc.command(config), count, env=bridge_proc.env(), check=self.rows_check(0),
                     latency_s=latency)
        self.couch.delete_db(db)


def _deadline(rows: int) -> str:
    """Seconds after which a peer client gives up (exit 124): about 100 times its expected time."""
    return str(max(60, rows // 500))


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    runs = [run for run in entry["runs"] if run["exit_code"] == 0 and "problem" not in run]
    if not runs:
        return {"ok_runs": 0}
    walls = [run["wall_s"] for run in runs]
    wall = statistics.median(walls)
    return {
        "ok_runs": len(runs),
        "wall_s": round(wall, 3),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "rows_per_s": round(entry["rows"] / wall),
        "work_s": _median([run["output"].get("work_s") for run in runs]),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "cpu_s": _median([run["cpu_s"] for run in runs]),
        "couch_cpu_s": _median([run["server_cpu_s"].get("couch") for run in runs]),
        "panda_cpu_s": _median([run["server_cpu_s"].get("panda") for run in runs]),
    }


def _median(values: list[Any]) -> float | None:
    present = [value for value in values if value is not None]
    return round(statistics.median(present), 3) if present else None


def _machine(load: float) -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "load_average_1m_at_start": load,
        "platform": platform.platform(),
    }


def _targets(results: dict[str, dict[str, Any]], memory: dict[str, Any], latency: dict[str, Any] | None,
             ) -> dict[str, Any]:
    def rate(name: str) -> float | None:
        value = results.get(name, {}).get("summary", {}).get("rows_per_s")
        return float(value) if value else None

    targets: dict[str, Any] = {}
    source, sink, bridge, peer, ibm = (rate(n) for n in ("source limit", "sink limit", "bridge once", "peer",
                                                         "peer ibmcloudant"))
    reader = rate("bridge reader alone")
    if source and sink and bridge:
        limit = min(source, sink)
        rounds = _round_ratios(results, "bridge once", ("source limit", "sink limit"))
        ratio = statistics.median(rounds) if rounds else bridge / limit
        targets["backfill"] = {"bridge_per_s": bridge, "slower_limit_per_s": limit,
                               "ratio": round(ratio, 3), "ratio_of_medians": round(bridge / limit, 3),
                               "ratio_per_round": [round(r, 3) for r in rounds],
                               "target": ">= 0.8 (median of the rounds)", "met": ratio >= 0.8}
        targets["backfill_shape_current"] = {"ratio": round(ratio, 3), "target": ">= 0.9 (issue 14)",
                                             "met": ratio >= 0.9}
    if memory:
        peaks = {size: entry["peak_rss_mb"] for size, entry in memory.items() if entry.get("peak_rss_mb")}
        if peaks:
            smallest, largest = peaks[min(peaks, key=int)], peaks[max(peaks, key=int)]
            targets["memory"] = {"peak_rss_mb": peaks, "target": "< 150 MB, no growth (largest <= 1.2 x smallest)",
                                 "met": max(peaks.values()) < 150 and largest <= 1.2 * smallest}
    if latency:
        targets["follow_latency"] = {"p50_ms": latency["p50_ms"], "p99_ms": latency["p99_ms"],
                                     "target": "p50 < 100 ms, p99 < 500 ms at 100 writes/s",
                                     "met": latency["p50_ms"] < 100 and latency["p99_ms"] < 500}
    peers = [rate for rate in (peer, ibm) if rate]
    if reader and peers:
        targets["faster_than_peer"] = {"bridge_reader_per_s": reader, "peer_per_s": peer,
                                       "ibmcloudant_peer_per_s": ibm, "bridge_end_to_end_per_s": bridge,
                                       "target": "bridge reader faster than each peer that ran",
                                       "met": reader > max(peers)}
    return targets


def _round_ratios(results: dict[str, dict[str, Any]], name: str, limits: tuple[str, ...]) -> list[float]:
    """Per round, `name`'s rate over the slower of the `limits` measured in the same round (just before it).

    Pairing runs of one round cancels the drift that moves every figure of a run by up to 15% over minutes
    (PouchDB Server's heap grows, the machine is shared); rounds with a failed run are left out.
    """
    def ok(run: dict[str, Any]) -> bool:
        return run["exit_code"] == 0 and "problem" not in run

    series = [results.get(key, {}).get("runs", []) for key in (name, *limits)]
    ratios = []
    for runs in zip(*series, strict=False):  # one run of each per round, failed ones included
        if all(ok(run) for run in runs):
            bridge_wall, *limit_walls = (run["wall_s"] for run in runs)
            ratios.append(max(limit_walls) / bridge_wall)  # same rows in each: rate ratio = wall ratio
    return ratios


def _table(results: dict[str, dict[str, Any]], memory: dict[str, Any], latency: dict[str, Any] | None) -> str:
    head = ("| variant | rows | wall s, median [min-max] | rows/s | peak RSS MB | client CPU s | CouchDB CPU s "
            "| emulator CPU s |")
    lines = [head, "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, entry in results.items():
        s = entry["summary"]
        if not s.get("ok_runs"):
            lines.append("| %s | %d | failed | | | | | |" % (name, entry["rows"]))
            continue
        spread = "%.2f [%.2f-%.2f]" % (s["wall_s"], s["wall_min_s"], s["wall_max_s"])
        lines.append("| %s | %d | %s | %s | %.0f | %.2f | %s | %s |" % (
            name, entry["rows"], spread, "{:,}".format(s["rows_per_s"]), s["peak_rss_mb"], s["cpu_s"],
            _fmt(s["couch_cpu_s"]), _fmt(s["panda_cpu_s"])))
    for size, entry in memory.items():
        if entry.get("wall_s"):
            lines.append("| memory: bridge once, %s docs | %s | %.2f | %s | %.0f | %.2f | %s | %s |" % (
                f"{int(size):,}", size, entry["wall_s"], "{:,}".format(entry["rows_per_s"]),
                entry["peak_rss_mb"], entry["cpu_s"], _fmt(entry["couch_cpu_s"]), _fmt(entry["panda_cpu_s"])))
    if latency:
        lines.append("")
        lines.append("Follow latency (bridge run, %d writes at %.0f/s): p50 %.0f ms, p99 %.0f ms, max %.0f ms, "
                     "%d PUT requests, bridge peak RSS %.0f MB" % (
                         latency["writes"], latency["rate_per_s"], latency["p50_ms"], latency["p99_ms"],
                         latency["max_ms"], latency["put_requests"], latency["bridge"]["peak_rss_mb"]))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "" if value is None else "%.2f" % value


def _throughput(bench: Bench, args: argparse.Namespace, rows_file: Path, live: int) -> None:
    """Source limit, sink limit, bridge and peer, alternating round by round; then the same with slow writes."""
    n = args.docs
    if "throughput" in args.phases:
        # PouchDB Server's first read after the load is 10-20% slower (cold JIT and caches): not measured,
        # so the first variant of round one is not penalised.
        bench.settle()
        warm_up = run_measured([sys.executable, CLIENTS, "source", "--url", bench.couch.url, "--db", "people"],
                               servers={})
        assert warm_up.exit_code == 0, warm_up.log_tail
        print("throughput, %d rounds:" % args.repeat, flush=True)
        for _ in range(args.repeat):
            bench.source("source limit", "people", n)
            bench.sink("sink limit", rows_file, n, live)
            bench.bridge("bridge once", "people", n, live)
            bench.reader("bridge reader alone", "people", n)
            bench.peer("peer", "people", n)
            bench.peer_ibm("peer ibmcloudant", "people", n)
            bench.source_beside_busy_core("source limit, other core busy", "people", n)
    if "slow" in args.phases:
        print("throughput with %.0f ms per PANDA write, %d rounds:" % (SLOW_WRITE * 1000, args.repeat), flush=True)
        for _ in range(args.repeat):
            bench.sink("sink limit, 20 ms/write", rows_file, n, live, SLOW_WRITE)
            bench.bridge("bridge once, 20 ms/write", "people", n, live, SLOW_WRITE)


def _deletes(bench: Bench, args: argparse.Namespace, deletes_file: Path) -> None:
    """Raw DELETEs against deletes through the bridge, with and without a slow PANDA."""
    print("deletes (%d rows), %d rounds:" % (args.deletes, args.delete_repeat), flush=True)
    for round_ in range(args.delete_repeat):
        bench.raw_deletes("deletes: raw DELETEs", deletes_file, args.deletes, 0.0)
        bench.bridge_deletes("deletes: bridge once", args.deletes, 0.0, "a%d" % round_)
        bench.raw_deletes("deletes: raw DELETEs, 20 ms/write", deletes_file, args.deletes, SLOW_WRITE)
        bench.bridge_deletes("deletes: bridge once, 20 ms/write", args.deletes, SLOW_WRITE, "b%d" % round_)


def _memory(bench: Bench, args: argparse.Namespace, loads: dict[str, float]) -> dict[str, Any]:
    """Peak RSS of `bridge once` per database size, each on freshly started servers."""
    memory: dict[str, Any] = {}
    print("memory:", flush=True)
    for size in args.sizes:
        if size == args.docs and "bridge once" in bench.results:
            memory[str(size)] = dict(bench.results["bridge once"]["summary"], reused="bridge once")
            continue
        name = "memory %d" % size
        try:
            _fresh(bench.couch)
            bench.emulator.stop()
            bench.emulator.start()
            print("loading %d documents..." % size, flush=True)
            loads[str(size)], _revs = people.load(bench.couch, "people-%d" % size, size)
            del _revs
            expected = sum(1 for _ in people.live_rows(size))
            bench.bridge(name, "people-%d" % size, size, expected)
            memory[str(size)] = dict(_summary(bench.results[name]), runs=bench.results.pop(name)["runs"])
        except Exception as exc:  # keep the figures already measured
            print("memory run at %d documents failed: %r" % (size, exc), file=sys.stderr)
            memory[str(size)] = {"error": repr(exc)}
            bench.results.pop(name, None)
    return memory


def _fresh(couch: CouchServer) -> None:
    """A server without the earlier data and its garbage: PouchDB Server starts again empty (in memory);
    CouchDB loses its databases and starts again on its data directory."""
    if isinstance(couch, LaunchedCouchDB):
        for name in couch.all_dbs():
            if not name.startswith("_"):
                couch.delete_db(name)
        couch.restart()
    elif isinstance(couch, PouchServer):
        couch.stop()
        couch.start()


def main(argv: list[str] | None = None) -> int:
    args = _options(argv)
    # Measure the bridge as installed: `pip install .` compiles its bytecode, while an editable install run
    # with PYTHONDONTWRITEBYTECODE set would compile every module again at each start (30 ms).
    compileall.compile_dir(str(ROOT / "bridge"), quiet=1)
    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure
    scratch = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    started = time.monotonic()
    couch = _start_source(args.source)
    print("source: %s" % couch.label, flush=True)
    emulator = EmulatorProcess(scratch / "emulator.log").start()
    bench = Bench(couch, emulator, scratch, settle=not args.no_settle)
    if args.no_settle:
        print("--no-settle: runs start while the servers may still be busy; these timings are not comparable",
              flush=True)
    memory: dict[str, Any] = {}
    latency: dict[str, Any] | None = None
    loads: dict[str, float] = {}
    big: dict[str, Any] = {}
    follow: dict[str, Any] = {}
    try:
        print("loading %d documents..." % args.docs, flush=True)
        loads[str(args.docs)], _revs = people.load(couch, "people", args.docs)
        live_list = [[eid, row] for eid, row in people.live_rows(args.docs)]
        rows_file = scratch / "rows.json"
        rows_file.write_bytes(orjson.dumps(live_list))
        deletes_file = scratch / "deletes.json"
        deletes_file.write_bytes(orjson.dumps(live_list[: args.deletes]))
        _throughput(bench, args, rows_file, len(live_list))
        del live_list
        if "deletes" in args.phases:
            _deletes(bench, args, deletes_file)
        if args.latency_seconds > 0 and "follow" in args.phases:
            print("follow latency, %.0f s at %.0f writes/s..." % (args.latency_seconds, args.rate), flush=True)
            bench.settle()
            latency = follow_latency(couch, emulator, bench.fresh_dir("follow"), rate=args.rate,
                                     seconds=args.latency_seconds)
        if "shapes" in args.phases:
            phases.shapes(bench, args)
        if "adaptive" in args.phases:
            phases.adaptive(bench, args)
        if args.latency_seconds > 0 and "followslow" in args.phases:
            follow = phases.follow_slow(bench, args)
        if "big" in args.phases:
            big = phases.big_documents(bench, args)
        for name in list(bench.results):
            bench.results[name]["summary"] = _summary(bench.results[name])
        if "memory" in args.phases:
            memory = _memory(bench, args, loads)
    finally:
        emulator.stop()
        couch.close()
    report = {
        "command": "./dev bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "source": couch.label,
        "machine": dict(_machine(load_at_start), load_average_1m_at_end=round(os.getloadavg()[0], 2)),
        "settings": {"docs": args.docs, "repeat": args.repeat, "delete_repeat": args.delete_repeat,
                     "deletes": args.deletes,
                     "memory_sizes": args.sizes, "latency_seconds": args.latency_seconds, "rate": args.rate,
                     "slow_write_s": SLOW_WRITE, "phases": args.phases, "shapes": args.shapes,
                     "big_docs": args.big_docs, "big_small": args.big_small, "adaptive_docs": args.adaptive_docs,
                     "adaptive_repeat": args.adaptive_repeat, "follow_rates": args.follow_rates,
                     "follow_backlog": args.follow_backlog,
                     "follow_repeat": args.follow_repeat, "settled": not args.no_settle},
        "load_s": {size: round(seconds, 1) for size, seconds in loads.items()},
        "results": bench.results,
        "memory": memory,
        "follow_latency": latency,
        "follow_after_backfill": follow,
        "big_documents": big,
        "cpu_per_change_us": phases.cpu_per_change(bench.results),
        "targets": dict(_targets(bench.results, memory, latency),
                        **phases.targets(bench.results, big, follow, phases.cpu_per_change(bench.results))),
        "total_s": round(time.monotonic() - started),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print()
    print(_table(bench.results, memory, latency))
    for figure in follow.values():
        print("Follow latency after a %d-doc backfill, PANDA 20 ms/write, %d writes at %.0f/s: p50 %.0f ms, "
              "p99 %.0f ms, max %.0f ms, %d PUT requests (the median round; p99 of each: %s ms); "
              "the source alone: p50 %.0f ms, p99 %.0f ms (%s ms)" % (
                  figure["backlog"], figure["writes"], figure["rate_per_s"], figure["p50_ms"], figure["p99_ms"],
                  figure["max_ms"], figure["put_requests"], figure["p99_rounds_ms"], figure["source"]["p50_ms"],
                  figure["source"]["p99_ms"], figure["source"]["p99_rounds_ms"]))
    print()
    for target, verdict in report["targets"].items():
        met = verdict["met"]
        print("%-18s %s  %s" % (target, "shown " if met is None else "met   " if met else "MISSED",
                                {k: v for k, v in verdict.items() if k != "met"}))
    print("\nwritten to %s (%d s in all)" % (args.output, report["total_s"]))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
