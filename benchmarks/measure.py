"""Runs one measured program in a fresh process and reports its wall time, CPU and peak RSS.

The program runs under /usr/bin/time: Linux carries a process's peak RSS across exec, so a child forked
straight from this (larger) driver would report the driver's size. The servers' CPU comes from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from servers import cpu_seconds

__all__ = ["Run", "run_measured", "start_measured", "finish_measured", "stop_measured"]

TIME = "/usr/bin/time"


@dataclass
class Run:
    """One measured process."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_code: int
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    """The JSON line the program printed last, if any."""
    log_tail: str = ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["log_tail"]:
            del data["log_tail"]
        return data


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    started: float
    servers: dict[str, tuple[int, float]]
    out: Any
    err: Any
    usage: Any


def start_measured(command: Sequence[str], *, servers: Mapping[str, int], env: Mapping[str, str] | None = None,
                   ) -> Started:
    """Start `command`; `servers` names the pids whose CPU is charged to this run."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    usage = tempfile.NamedTemporaryFile("r", suffix=".time")
    before = {name: (pid, cpu_seconds(pid)) for name, pid in servers.items()}
    started = time.perf_counter()
    proc = subprocess.Popen([TIME, "-q", "-o", usage.name, "-f", "%U %S %M", *command], stdin=subprocess.DEVNULL,
                            stdout=out, stderr=err, env=dict(env) if env is not None else None)
    return Started(proc, started, before, out, err, usage)


def stop_measured(started: Started, sig: int = signal.SIGTERM) -> None:
    """Signal the measured program (the child of /usr/bin/time, which would only die itself)."""
    try:
        with open("/proc/%d/task/%d/children" % (started.proc.pid, started.proc.pid)) as children:
            pids = [int(pid) for pid in children.read().split()]
    except OSError:
        return
    for pid in pids:
        os.kill(pid, sig)


def finish_measured(started: Started) -> Run:
    """Wait for the process and collect its figures."""
    exit_code = started.proc.wait()  # /usr/bin/time exits as its child did (128 + signal when killed)
    wall = time.perf_counter() - started.started
    fields = started.usage.read().split()
    started.usage.close()
    user, system, rss_kb = float(fields[-3]), float(fields[-2]), int(fields[-1])
    server_cpu = {name: round(cpu_seconds(pid) - cpu, 3) for name, (pid, cpu) in started.servers.items()}
    started.out.seek(0)
    started.err.seek(0)
    lines = [line for line in started.out.read().splitlines() if line.startswith(b"{")]
    err = started.err.read().decode(errors="replace")
    started.out.close()
    started.err.close()
    run = Run(
        wall_s=round(wall, 3),
        cpu_s=round(user + system, 3),
        peak_rss_mb=round(rss_kb / 1024, 1),
        exit_code=exit_code,
        server_cpu_s=server_cpu,
        output=orjson.loads(lines[-1]) if lines else {},
    )
    if run.exit_code != 0:
        run.log_tail = "\n".join(err.splitlines()[-15:])
    return run


def run_measured(command: Sequence[str], *, servers: Mapping[str, int], env: Mapping[str, str] | None = None,
                 ) -> Run:
    return finish_measured(start_measured(command, servers=servers, env=env))
