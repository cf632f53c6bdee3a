"""Shared fixtures: the CouchDB-protocol servers (PouchDB Server and real CouchDB), fresh databases, a clock.

Every test that asks for `couch_server`, `couch_db` or `persistent_couch` runs once per server kind
(`[pouchdb]`, `[couchdb]`): the `server_kind` parameter. Real CouchDB is the release beside the repository
(../shared/couchdb), or the server in BRIDGE_TEST_COUCHDB_URL; without either, only PouchDB Server runs,
and the summary says so. `@pytest.mark.only_on("couchdb", reason=...)` skips a test on the other server.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clock import ManualClock
from tests.support.couch_api import CouchDatabase, CouchServer
from tests.support.couchdb_server import SERVER_BIN, PouchServer
from tests.support.real_couchdb import ENV_URL, ExternalCouchDB, LaunchedCouchDB, couchdb_unavailable_reason

_INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
_COUCHDB_MISSING = couchdb_unavailable_reason()
SERVER_KINDS = ["pouchdb"] if _COUCHDB_MISSING else ["pouchdb", "couchdb"]
_used: dict[str, str] = {}  # server kind -> what it was, for the summary


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration `integration`; apply `only_on` to the server parameter."""
    for item in items:
        if _INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("server_kind") if callspec is not None else None
        for mark in item.iter_markers("only_on"):
            if kind is not None and kind not in mark.args:
                item.add_marker(pytest.mark.skip(reason="%s only: %s" % ("/".join(mark.args),
                                                                         mark.kwargs.get("reason", ""))))


def pytest_report_header() -> str:
    if _COUCHDB_MISSING:
        return "CouchDB-protocol servers: PouchDB Server only (real CouchDB unavailable: %s)" % _COUCHDB_MISSING
    source = ENV_URL if os.environ.get(ENV_URL) else "../shared/couchdb"
    return "CouchDB-protocol servers: PouchDB Server and real CouchDB (%s)" % source


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _used:
        terminalreporter.write_line("integration tests ran on: %s" % ", ".join(_used.values()))
    if _COUCHDB_MISSING:
        terminalreporter.write_line("real CouchDB was unavailable (%s): PouchDB Server only" % _COUCHDB_MISSING)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, a worker hands the servers it used to the controller, which prints the summary."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["bridge_servers_used"] = dict(_used)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist's controller: collect what each worker's servers were (see pytest_sessionfinish)."""
    _used.update(getattr(node, "workeroutput", {}).get("bridge_servers_used", {}))


def _require_node() -> None:
    # Fail loudly, never skip: a suite that silently skips its integration tests proves nothing.
    if shutil.which("node") is None:
        pytest.fail("Node.js ('node') is not on PATH; the CouchDB integration tests need it", pytrace=False)
    if not SERVER_BIN.exists():
        pytest.fail("pouchdb-server is not installed; run ./dev test (npm ci in tests/support/couchdb)",
                    pytrace=False)


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """`pouchdb` or `couchdb`: which server the test runs on."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def pouchdb_server() -> Iterator[PouchServer]:
    """One in-memory PouchDB Server for the whole run, on a free 127.0.0.1 port."""
    _require_node()
    server = PouchServer()
    server.start()
    _used["pouchdb"] = server.label
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def real_couchdb() -> Iterator[LaunchedCouchDB | ExternalCouchDB]:
    """Real CouchDB for the whole run: BRIDGE_TEST_COUCHDB_URL's, or one started from ../shared/couchdb."""
    external = os.environ.get(ENV_URL)
    server: LaunchedCouchDB | ExternalCouchDB = ExternalCouchDB(external) if external else LaunchedCouchDB()
    if isinstance(server, LaunchedCouchDB):
        server.start()
    _used["couchdb"] = server.label
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def couch_server(server_kind: str, request: pytest.FixtureRequest) -> CouchServer:
    """The shared server of this test's kind."""
    server: CouchServer = request.getfixturevalue("pouchdb_server" if server_kind == "pouchdb" else "real_couchdb")
    return server


def fresh_database(server: CouchServer, *, partitioned: bool = False) -> CouchDatabase:
    """A new, uniquely named database on `server` (with the server's prefix); the caller deletes it."""
    if isinstance(server, PouchServer) and not server.running:
        # pouchdb-server dies on the _changes request after a failed one (reference, section 9); keep the
        # rest of the run meaningful, but say so.
        warnings.warn("the shared pouchdb-server had died; restarting it.\n" + server.log_tail(10), stacklevel=1)
        server.restart()
    db = CouchDatabase(server, server.db_prefix + uuid.uuid4().hex)
    db.create(partitioned=partitioned)
    return db


@pytest.fixture
def couch_db(couch_server: CouchServer) -> Iterator[CouchDatabase]:
    """A fresh, uniquely named, empty database on the shared server; deleted afterwards."""
    db = fresh_database(couch_server)
    try:
        yield db
    finally:
        if couch_server.running:
            db.delete()


@pytest.fixture
def persistent_couch(server_kind: str, tmp_path: Path) -> Iterator[CouchServer]:
    """A server of this test's own, storing its data under tmp_path, so restart() keeps the data."""
    server: PouchServer | LaunchedCouchDB
    if server_kind == "pouchdb":
        _require_node()
        server = PouchServer(data_dir=tmp_path / "couchdb-data")
    elif os.environ.get(ENV_URL):
        pytest.skip("needs a CouchDB of its own to stop and restart; %s is a server the suite must not touch"
                    % ENV_URL)
    else:
        server = LaunchedCouchDB()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def manual_clock() -> ManualClock:
    """A clock at 0.0 that moves only on advance(seconds)."""
    return ManualClock()


@pytest.fixture
def checkpoint_path(tmp_path: Path) -> Path:
    """Where a test's checkpoint goes; the `state` directory does not exist yet."""
    return tmp_path / "state" / "test.checkpoint"
