"""50 idle pipelines in one `bridge run`: peak RSS and CPU seconds per idle minute (`./dev bench` does not run
it; run `.venv/bin/python benchmarks/idle_pipelines.py`).

Starts PouchDB Server and the PANDA emulator, creates `--pipelines` databases of a few documents each, writes
one `[pipelines.<name>]` table per database, starts `bridge run`, waits until every dataset holds its rows
(all caught up), then measures the bridge process's CPU over `--idle-seconds` of no writes, and its peak RSS
(VmHWM) at the end. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support.couchdb_server

from servers import EmulatorProcess, cpu_seconds  # noqa: E402

from bridge.emulator import DEFAULT_API_KEY, DEFAULT_EMAIL  # noqa: E402
from tests.support.couchdb_server import CouchServer  # noqa: E402

DOCS_EACH = 5


def _peak_rss_mb(pid: int) -> float:
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/%d/status" % pid)


def _config(couch: CouchServer, emulator: EmulatorProcess, names: list[str], state: Path) -> str:
    lines = ["[source]", f'url = "{couch.url}"', "heartbeat = 10.0",
             "[panda]", f'url = "{emulator.url}"', f'email = "{DEFAULT_EMAIL}"', "create_dataset = true",
             "[mapping]", 'columns = ["first_name", "last_name"]']
    for name in names:
        lines += [f"[pipelines.{name}]", f'source = {{database = "{name}"}}', f'panda = {{dataset = "{name}"}}',
                  f'checkpoint = {{path = "{state / name}.checkpoint"}}']
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed to catch up")
    options = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bridge-idle-"))
    couch = CouchServer().start()
    emulator = EmulatorProcess(scratch / "emulator.log").start()
    bridge: subprocess.Popen[bytes] | None = None
    try:
        names = [f"idle_{n:03d}" for n in range(options.pipelines)]
        for name in names:
            couch.create_db(name)
            couch.bulk_docs(name, [{"_id": f"d{n}", "first_name": f"F{n}", "last_name": f"L{n}"}
                                   for n in range(DOCS_EACH)])
        config = scratch / "bridge.toml"
        config.write_text(_config(couch, emulator, names, scratch / "state"))
        env = {**os.environ, "PANDA_API_KEY": DEFAULT_API_KEY, "PYTHONPATH": str(ROOT)}
        with open(scratch / "bridge.log", "wb") as log:
            bridge = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)], env=env,
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        started = time.monotonic()
        while not all(emulator.row_count(name) == DOCS_EACH for name in names):
            if bridge.poll() is not None or time.monotonic() - started > options.timeout:
                raise RuntimeError("the pipelines did not catch up; see %s" % (scratch / "bridge.log"))
            time.sleep(0.5)
        caught_up = time.monotonic() - started
        time.sleep(2.0)  # the last commits and the first long polls settle
        before = cpu_seconds(bridge.pid)
        time.sleep(options.idle_seconds)
        idle_cpu = cpu_seconds(bridge.pid) - before
        result = {
            "pipelines": options.pipelines,
            "seconds_to_catch_up": round(caught_up, 2),
            "idle_seconds": options.idle_seconds,
            "cpu_seconds_per_idle_minute": round(idle_cpu * 60 / options.idle_seconds, 3),
            "peak_rss_mb": round(_peak_rss_mb(bridge.pid), 1),
            "threads": len(os.listdir("/proc/%d/task" % bridge.pid)),
        }
        bridge.send_signal(signal.SIGTERM)
        result["exit_code"] = bridge.wait(60)
        print(json.dumps(result, indent=2))
        return 0 if result["exit_code"] == 0 else 1
    finally:
        if bridge is not None and bridge.poll() is None:
            bridge.kill()
        emulator.stop()
        couch.close()


if __name__ == "__main__":
    sys.exit(main())
