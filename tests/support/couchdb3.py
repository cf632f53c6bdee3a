"""A real Apache CouchDB 3.4.3 (the release in ../shared/couchdb, beside the repository) for the tests that need
what PouchDB Server lacks (`_purge`): started on a free loopback port, its Erlang node on another, stopped by
its PID at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.couchdb_server import free_port

__all__ = ["RealCouch", "SCRIPT"]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT.parent / "shared" / "couchdb" / "couchdb"
ADMIN, PASSWORD = "admin", "secret"


class RealCouch:
    """One CouchDB process with its own data directory; HTTP helpers authenticate as its admin."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bridge-couch3-")
        self.port = free_port()
        self.pid: int | None = None
        self.http = requests.Session()
        self.http.auth = (ADMIN, PASSWORD)

    @property
    def url(self) -> str:
        """The server root with the admin's credentials, as a bridge [source] url takes it."""
        return f"http://{ADMIN}:{PASSWORD}@127.0.0.1:{self.port}/"

    @property
    def plain_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> RealCouch:
        env = dict(os.environ, DIST_PORT=str(free_port()))
        done = subprocess.run([str(SCRIPT), "start", "-p", str(self.port), "-u", ADMIN, "-w", PASSWORD,
                               "-d", self._dir.name], env=env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        found = re.search(r"PID=(\d+)", done.stdout)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"CouchDB did not start ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        self.pid = int(found.group(1))
        return self

    def close(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                for _ in range(100):  # bounded: 10 s, then SIGKILL
                    os.kill(self.pid, 0)
                    time.sleep(0.1)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        self.http.close()
        self._dir.cleanup()

    def request(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202), **kwargs: Any) -> Any:
        response = self.http.request(method, self.plain_url + path, timeout=30, **kwargs)
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def create_db(self, name: str) -> None:
        self.request("PUT", name)

    def bulk_docs(self, db: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("POST", f"{db}/_bulk_docs", json={"docs": docs})
        return result

    def live_docs(self, db: str) -> dict[str, dict[str, Any]]:
        rows = self.request("GET", f"{db}/_all_docs", params={"include_docs": "true"})["rows"]
        return {row["id"]: row["doc"] for row in rows}

    def purge(self, db: str, docs: list[dict[str, Any]]) -> None:
        self.request("POST", f"{db}/_purge", json={doc["_id"]: [doc["_rev"]] for doc in docs})
