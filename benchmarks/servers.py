"""Both ends for the benchmark: the PANDA emulator in its own process, and process CPU and idle checks.

The emulator runs apart from every measured client so that its CPU never shares a GIL with them; it is
driven through its /_emulator/ control endpoints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.couchdb_server import free_port  # the benchmark runs with the project root on sys.path

__all__ = ["EmulatorProcess", "cpu_seconds", "wait_idle"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (Linux /proc)."""
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def wait_idle(*pids: int, window: float = 0.5, busy: float = 0.05, timeout: float = 120.0) -> float:
    """Wait until each process used under `busy` of one CPU over the same `window`; returns the seconds waited.

    pouchdb-server keeps producing a continuous feed into a dead socket after its client left, and its
    garbage collector runs after big reads: a run that starts before it settles pays for the last one.
    The processes are watched together, so servers that are already idle cost one window, not one each.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(window)
        if all(cpu_seconds(pid) - used < busy * window for pid, used in zip(pids, before, strict=True)):
            break
    return time.monotonic() - started


class EmulatorProcess:
    """`python -m bridge.emulator` on a free loopback port, with its control endpoints as methods."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = requests.Session()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> EmulatorProcess:
        for _ in range(5):
            self.port = free_port()
            with open(self.log, "ab") as out:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "bridge.emulator", "--port", str(self.port)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self._proc.poll() is None:
                try:
                    self._http.get(self.url + "/_emulator/requests", timeout=1).raise_for_status()
                    return self
                except requests.RequestException:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError("the PANDA emulator did not start; see %s" % self.log)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._http.close()
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, self.url + "/_emulator/" + path, json=body, timeout=120)
        response.raise_for_status()
        return response.json()

    def reset(self, latency: float = 0.0) -> None:
        """Drop datasets, rows and recorded requests; set the per-write latency."""
        self.control("POST", "reset")
        self.control("POST", "latency", {"seconds": latency})

    def create_dataset(self, slug: str, columns: list[str]) -> None:
        self.control("POST", "datasets", {"slug": slug, "columns": columns})

    def row_count(self, slug: str) -> int:
        try:
            return int(self.control("GET", "datasets/%s" % slug).get("row_count") or 0)
        except requests.HTTPError:
            return 0

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", "requests")
        return result
