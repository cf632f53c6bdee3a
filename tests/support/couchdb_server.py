"""Runs PouchDB Server, the suite's first CouchDB-protocol server, on a free 127.0.0.1 port.

Install it with `./dev test` (npm ci in tests/support/couchdb). The stand-in's quirks are listed in the
shared CouchDB reference, section 9; the helpers (couch_api.py) stay clear of them (identity encoding,
feed=normal). Real CouchDB, the second server, is in real_couchdb.py.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.couch_api import CouchDatabase, CouchServer, CouchServerError, free_port

__all__ = ["CouchDatabase", "CouchServer", "CouchServerError", "PouchServer", "SERVER_BIN", "free_port"]

SERVER_BIN = Path(__file__).resolve().parent / "couchdb" / "node_modules" / ".bin" / "pouchdb-server"
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 40

_running: set[PouchServer] = set()
_workdirs: set[Path] = set()  # removed at exit even if a caller forgot close()


class PouchServer(CouchServer):
    """One pouchdb-server process: in memory by default, or persistent in `data_dir` (kept across restart()).

    The process runs in its own process group, with a temporary working directory it owns (pouchdb-server
    writes config.json and log.txt into its cwd). It never outlives this Python process: atexit stops it,
    and on Linux the kernel kills it if the thread that started it dies first (so start it from a
    thread that lives as long as the server should, e.g. pytest's own).
    """

    kind = "pouchdb"
    logs_requests = True

    def __init__(self, data_dir: Path | None = None, *, start_timeout: float = 30.0) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_start = 0  # offset in server.out where the current process's output begins

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Base URL with a trailing slash, e.g. http://127.0.0.1:41234/."""
        if self._port is None:
            raise CouchServerError("server was never started")
        return f"http://127.0.0.1:{self._port}/"

    @property
    def label(self) -> str:
        return "PouchDB Server 4.2.0 (npm, in memory)"

    @property
    def port(self) -> int:
        if self._port is None:
            raise CouchServerError("server was never started")
        return self._port

    @property
    def pid(self) -> int:
        """The server process's id (benchmarks count its CPU time)."""
        if self._proc is None:
            raise CouchServerError("server was never started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        """True while the process is alive (it may still be starting)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> PouchServer:
        """Start on a fresh free port (retrying on a port race) and wait until `GET /` answers."""
        if self.running:
            raise CouchServerError("server already running at %s" % self.url)
        errors: list[str] = []
        for _ in range(_PORT_ATTEMPTS):
            self._port = free_port()
            try:
                self._launch_and_wait()
                return self
            except _PortTaken as exc:
                errors.append(str(exc))
        raise CouchServerError("no free port after %d attempts: %s" % (_PORT_ATTEMPTS, "; ".join(errors)))

    def restart(self) -> PouchServer:
        """Stop, then start again on the same port (and the same data directory, if persistent)."""
        self.stop()
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._launch_and_wait()
                return self
            except _PortTaken:
                if time.monotonic() > deadline:
                    raise CouchServerError("port %d stayed taken after stop()" % self.port) from None
                time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout` seconds, and reap it. Idempotent."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, as the bridge would see it) and reap it."""
        self._end(signal.SIGKILL, 10.0)

    def close(self) -> None:
        """Stop the server and remove its working directory (not a caller-owned data_dir)."""
        self.stop()
        self._http.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            _workdirs.discard(self._workdir)
            self._workdir = None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines the current (or last) process printed: startup errors, crashes, requests."""
        if self._workdir is None:
            return ""
        try:
            with open(self._workdir / "server.out", "rb") as out:
                out.seek(self._log_start)
                text = out.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PouchServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------------

    def _launch_and_wait(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise CouchServerError("'node' is not on PATH: install Node.js to run the integration tests")
        if not SERVER_BIN.exists():
            raise CouchServerError("%s is missing: run ./dev test (it runs npm ci in tests/support/couchdb)"
                                   % SERVER_BIN)
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="pouchdb-server-"))
            _workdirs.add(self._workdir)
        args = [node, str(SERVER_BIN.resolve()), "--host", "127.0.0.1", "--port", str(self.port),
                "--config", str(self._workdir / "config.json"), "--no-color"]
        if self.data_dir is None:
            args.append("--in-memory")
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--dir", str(self.data_dir)]
        with open(self._workdir / "server.out", "ab") as out:
            self._log_start = out.tell()
            self._proc = subprocess.Popen(
                args, cwd=self._workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent(os.getpid()),
            )
        _running.add(self)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_tail()
                self._end(signal.SIGKILL, 5.0)
                if "already in use" in tail:
                    raise _PortTaken("port %d in use" % self.port)
                raise CouchServerError("pouchdb-server exited with %s during startup:\n%s"
                                       % (self._proc.returncode, tail))
            with contextlib.suppress(requests.RequestException):
                if self._http.get(self.url, timeout=(0.5, 2.0)).status_code == 200:
                    return
            time.sleep(0.05)
        tail = self.log_tail()
        self._end(signal.SIGKILL, 5.0)
        raise CouchServerError("pouchdb-server did not answer GET / within %.0f s:\n%s"
                               % (self.start_timeout, tail))

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        _running.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        self._http.close()  # drop pooled keep-alive connections to the old process


class _PortTaken(Exception):
    pass


def _die_with_parent(parent_pid: int) -> Any:
    """A preexec_fn asking Linux to SIGKILL the child when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.kill()
    for workdir in list(_workdirs):
        shutil.rmtree(workdir, ignore_errors=True)
