"""Runs PouchDB Server, the suite's CouchDB stand-in, on a free 127.0.0.1 port, with small HTTP helpers.

Install it with `./dev test` (npm ci in tests/support/couchdb). The stand-in's quirks are listed in the
shared CouchDB reference, section 9; the helpers here stay clear of them (identity encoding, feed=normal).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

__all__ = ["CouchDatabase", "CouchServer", "CouchServerError", "SERVER_BIN"]

SERVER_BIN = Path(__file__).resolve().parent / "couchdb" / "node_modules" / ".bin" / "pouchdb-server"
_HEADERS = {"Accept-Encoding": "identity", "Accept": "application/json"}
_TIMEOUT = (5.0, 30.0)  # connect, read: every helper call is bounded
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 40

_running: set[CouchServer] = set()
_workdirs: set[Path] = set()  # removed at exit even if a caller forgot close()


class CouchServerError(RuntimeError):
    """The test server could not be started, or a helper request got an unexpected status."""


class CouchServer:
    """One pouchdb-server process: in memory by default, or persistent in `data_dir` (kept across restart()).

    The process runs in its own process group, with a temporary working directory it owns (pouchdb-server
    writes config.json and log.txt into its cwd). It never outlives this Python process: atexit stops it,
    and on Linux the kernel kills it if the thread that started it dies first (so start it from a
    thread that lives as long as the server should, e.g. pytest's own).
    """

    def __init__(self, data_dir: Path | None = None, *, start_timeout: float = 30.0) -> None:
        self.data_dir = data_dir
        self.start_timeout = start_timeout
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_start = 0  # offset in server.out where the current process's output begins
        self._http = requests.Session()
        self._http.headers.update(_HEADERS)

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL with a trailing slash, e.g. http://127.0.0.1:41234/."""
        if self._port is None:
            raise CouchServerError("server was never started")
        return f"http://127.0.0.1:{self._port}/"

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

    def start(self) -> CouchServer:
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

    def restart(self) -> CouchServer:
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

    def __enter__(self) -> CouchServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- HTTP helpers (for arranging and asserting; the bridge has its own client) ------------------------

    def create_db(self, name: str) -> None:
        self._request("PUT", _quote(name), ok=(201, 202))

    def delete_db(self, name: str, *, missing_ok: bool = True) -> None:
        self._request("DELETE", _quote(name), ok=(200, 202, 404) if missing_ok else (200, 202))

    def put_doc(self, db: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update one document (`_rev` needed to update); returns {"ok", "id", "rev"}."""
        if "_id" in doc:
            return self._request("PUT", "%s/%s" % (_quote(db), _doc_path(str(doc["_id"]))), json=doc,
                                 ok=(201, 202))
        return self._request("POST", _quote(db), json=doc, ok=(201, 202))

    def get_doc(self, db: str, doc_id: str) -> dict[str, Any] | None:
        """The current revision of a document, or None when it is missing or deleted."""
        resp = self._send("GET", "%s/%s" % (_quote(db), _doc_path(doc_id)))
        if resp.status_code == 404:
            return None
        return _checked(resp, (200,))

    def delete_doc(self, db: str, doc_id: str) -> dict[str, Any]:
        """Delete the current revision of a document; returns {"ok", "id", "rev"} of the tombstone."""
        current = self.get_doc(db, doc_id)
        if current is None:
            raise CouchServerError("cannot delete %r in %r: no such document" % (doc_id, db))
        return self._request("DELETE", "%s/%s" % (_quote(db), _doc_path(doc_id)),
                             params={"rev": current["_rev"]}, ok=(200, 202))

    def bulk_docs(self, db: str, docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """POST _bulk_docs; returns the per-document results (each has "id" and "rev", or "error")."""
        result = self._request_any("POST", "%s/_bulk_docs" % _quote(db), json={"docs": list(docs)},
                                   ok=(201, 202))
        if not isinstance(result, list):
            raise CouchServerError("_bulk_docs answered %r" % (result,))
        return result

    def changes_all(self, db: str, *, include_docs: bool = True) -> dict[str, Any]:
        """The whole normal feed, {"results": [...], "last_seq": ...}, seqs as the server sent them."""
        params = {"feed": "normal", "style": "main_only", "include_docs": "true" if include_docs else "false"}
        return self._request("GET", "%s/_changes" % _quote(db), params=params, ok=(200,))

    def live_docs(self, db: str) -> dict[str, dict[str, Any]]:
        """Every non-deleted document by id, read from the feed (pouchdb's _all_docs skips ids >= U+0100)."""
        return {row["id"]: row["doc"] for row in self.changes_all(db)["results"] if not row.get("deleted")}

    def db_info(self, db: str) -> dict[str, Any]:
        return self._request("GET", _quote(db), ok=(200,))

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

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self._http.request(method, self.url + path, timeout=_TIMEOUT, **kwargs)

    def _request_any(self, method: str, path: str, *, ok: tuple[int, ...], **kwargs: Any) -> Any:
        return _checked_any(self._send(method, path, **kwargs), ok)

    def _request(self, method: str, path: str, *, ok: tuple[int, ...], **kwargs: Any) -> dict[str, Any]:
        return _checked(self._send(method, path, **kwargs), ok)


@dataclass(frozen=True)
class CouchDatabase:
    """A database on a test server (what the `couch_db` fixture yields)."""

    server: CouchServer
    name: str

    @property
    def url(self) -> str:
        """The database URL without a trailing slash, e.g. http://127.0.0.1:41234/t_0f3c..."""
        return self.server.url + self.name


class _PortTaken(Exception):
    pass


def free_port() -> int:
    """A port the kernel just handed out; another process may still grab it, hence the retries."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _doc_path(doc_id: str) -> str:
    for prefix in ("_design/", "_local/"):
        if doc_id.startswith(prefix):
            return prefix + _quote(doc_id[len(prefix):])
    return _quote(doc_id)


def _checked_any(resp: requests.Response, ok: tuple[int, ...]) -> Any:
    if resp.status_code not in ok:
        raise CouchServerError("%s %s -> %d %s" % (resp.request.method, resp.url, resp.status_code,
                                                   resp.text[:500]))
    return resp.json() if resp.content else {}


def _checked(resp: requests.Response, ok: tuple[int, ...]) -> dict[str, Any]:
    body = _checked_any(resp, ok)
    if not isinstance(body, dict):
        raise CouchServerError("expected a JSON object from %s, got %r" % (resp.url, body))
    return body


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
