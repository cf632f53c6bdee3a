"""Real Apache CouchDB 3 for the suite: one started from ../shared/couchdb, or a server the user runs.

`LaunchedCouchDB` starts the release beside the repository (`<repo>/../shared/couchdb/couchdb start`) on a
free loopback port, with its Erlang distribution port chosen free too (the script would use PORT+10000,
which may be taken or past 65535), a fresh admin password and a temporary data directory; `close()` stops
it and removes the directory. `ExternalCouchDB` is the server in BRIDGE_TEST_COUCHDB_URL (admin credentials
in the URL): the suite only creates, and deletes again, databases and users named with its own prefix.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

from tests.support.couch_api import CouchServer, CouchServerError, free_port

__all__ = ["COUCHDB_SCRIPT", "ENV_URL", "ExternalCouchDB", "LaunchedCouchDB", "couchdb_unavailable_reason"]

ROOT = Path(__file__).resolve().parents[2]
COUCHDB_SCRIPT = ROOT.parent / "shared" / "couchdb" / "couchdb"
"""The release's start/stop script, beside the repository root (../shared/couchdb/couchdb)."""
ENV_URL = "BRIDGE_TEST_COUCHDB_URL"
RUN_PREFIX = "bridge_test_%s_" % uuid.uuid4().hex[:8]
"""Names of this run's databases and users on real CouchDB (lowercase, as CouchDB wants database names)."""
_ADMIN = "bridge_admin"
_PORT_ATTEMPTS = 5

_launched: set[LaunchedCouchDB] = set()


def couchdb_unavailable_reason() -> str | None:
    """None when real CouchDB can be had (BRIDGE_TEST_COUCHDB_URL, or the release beside the repository)."""
    if os.environ.get(ENV_URL):
        return None
    if os.access(COUCHDB_SCRIPT, os.X_OK):
        return None
    return "%s is not set and there is no CouchDB release at ../shared/couchdb" % ENV_URL


class _RealCouchDB(CouchServer):
    kind = "couchdb"
    db_prefix = RUN_PREFIX

    def version(self) -> str:
        body = self._request("GET", "", ok=(200,))
        return str(body.get("version", "?"))

    def create_user(self, name: str, password: str) -> None:
        """A user in `_users` (no roles)."""
        doc = {"_id": "org.couchdb.user:" + name, "name": name, "password": password, "roles": [],
               "type": "user"}
        self._request("PUT", "_users/" + urllib.parse.quote(doc["_id"], safe=""), json=doc, ok=(201, 202))
        self._users.add(name)

    def delete_user(self, name: str) -> None:
        doc_id = urllib.parse.quote("org.couchdb.user:" + name, safe="")
        current = self._send("GET", "_users/" + doc_id)
        if current.status_code == 200:
            self._request("DELETE", "_users/" + doc_id, params={"rev": current.json()["_rev"]}, ok=(200, 202))
        self._users.discard(name)

    def set_members(self, db: str, names: list[str]) -> None:
        """Make `names` the database's only members (`_security`); admins stay as they are."""
        security = {"admins": {"names": [], "roles": []}, "members": {"names": names, "roles": []}}
        self._request("PUT", urllib.parse.quote(db, safe="") + "/_security", json=security, ok=(200,))

    def leftovers(self) -> list[str]:
        """This run's databases still on the server."""
        return [name for name in self.all_dbs() if name.startswith(RUN_PREFIX)]

    def remove_leftovers(self) -> None:
        for name in self.leftovers():
            self.delete_db(name)
        for user in list(self._users):
            self.delete_user(user)

    _users: set[str]


class LaunchedCouchDB(_RealCouchDB):
    """CouchDB 3 from ../shared/couchdb on free loopback ports, data in a temporary directory."""

    logs_requests = True  # at log level notice, one line per request

    def __init__(self, *, start_timeout: float = 60.0) -> None:
        super().__init__()
        self._users = set()
        self.start_timeout = start_timeout
        self.credentials = (_ADMIN, secrets.token_hex(12))
        self._dir = Path(tempfile.mkdtemp(prefix="bridge-couchdb-"))
        self._port: int | None = None
        self._dist_port: int | None = None
        self._pid: int | None = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise CouchServerError("CouchDB was never started")
        return f"http://127.0.0.1:{self._port}/"

    @property
    def label(self) -> str:
        return "Apache CouchDB 3.4.3 (../shared/couchdb)"

    @property
    def pid(self) -> int:
        if self._pid is None:
            raise CouchServerError("CouchDB was never started")
        return self._pid

    @property
    def running(self) -> bool:
        if self._pid is None:
            return False
        try:
            os.kill(self._pid, 0)
        except ProcessLookupError:
            return False
        return True

    def start(self) -> LaunchedCouchDB:
        """Start on fresh free ports, retrying when another process took one first."""
        errors = []
        for _ in range(_PORT_ATTEMPTS):
            self._port = free_port()
            self._dist_port = free_port()
            if self._dist_port == self._port:
                continue
            try:
                self._launch()
                return self
            except CouchServerError as exc:
                errors.append(str(exc))
        raise CouchServerError("CouchDB did not start after %d attempts:\n%s" % (_PORT_ATTEMPTS, "\n".join(errors)))

    def restart(self) -> LaunchedCouchDB:
        """Stop, then start on the same ports with the same data (retrying while the old ports linger)."""
        self.stop()
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._launch()
                return self
            except CouchServerError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a clean shutdown, about 3 s), SIGKILL after `timeout`. Idempotent."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        self._end(signal.SIGKILL, 10.0)

    def close(self) -> None:
        """Kill the server (its data is thrown away, so the 3 s clean shutdown buys nothing) and remove it."""
        self.kill()
        super().close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self._dir / "log" / "couchdb.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _launch(self) -> None:
        assert self._port is not None and self._dist_port is not None
        user, password = self.credentials or ("", "")
        env = dict(os.environ, DIST_PORT=str(self._dist_port))
        try:
            result = subprocess.run(
                [str(COUCHDB_SCRIPT), "start", "-p", str(self._port), "-u", user, "-w", password,
                 "-d", str(self._dir), "-t", str(int(self.start_timeout)), "-l", "notice"],
                env=env, capture_output=True, text=True, timeout=self.start_timeout + 120,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise CouchServerError("`couchdb start` did not return") from exc
        pid = next((line[4:] for line in result.stdout.splitlines() if line.startswith("PID=")), None)
        if pid is not None:
            self._pid = int(pid)
            _launched.add(self)
        if result.returncode != 0:
            self._end(signal.SIGKILL, 10.0)
            raise CouchServerError("`couchdb start` failed (%d):\n%s%s" % (result.returncode, result.stdout,
                                                                         result.stderr[-3000:]))

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        pid, self._pid = self._pid, None
        _launched.discard(self)
        self._http.close()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        (self._dir / "couchdb.pid").unlink(missing_ok=True)


class ExternalCouchDB(_RealCouchDB):
    """The CouchDB in BRIDGE_TEST_COUCHDB_URL: used, never started, stopped or otherwise changed."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._users = set()
        parts = urllib.parse.urlsplit(url)
        if parts.username is None or parts.password is None or parts.hostname is None:
            raise CouchServerError("%s must be http://ADMIN:PASSWORD@host:port/ (admin credentials)" % ENV_URL)
        self.credentials = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password))
        port = f":{parts.port}" if parts.port else ""
        self._base = f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}/"

    @property
    def base_url(self) -> str:
        return self._base

    @property
    def label(self) -> str:
        return "Apache CouchDB %s at %s (%s)" % (self.version(), self._base, ENV_URL)

    def close(self) -> None:
        self.remove_leftovers()
        super().close()


@atexit.register
def _stop_all() -> None:
    for server in list(_launched):
        server.kill()
        shutil.rmtree(server._dir, ignore_errors=True)
