"""Shared fixtures: the PouchDB Server stand-in for CouchDB, fresh databases, a clock, a checkpoint path."""

from __future__ import annotations

import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clock import ManualClock
from tests.support.couchdb_server import SERVER_BIN, CouchDatabase, CouchServer

_INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration `integration` (deselect with -m 'not integration')."""
    for item in items:
        if _INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def _require_node() -> None:
    # Fail loudly, never skip: a suite that silently skips its integration tests proves nothing.
    if shutil.which("node") is None:
        pytest.fail("Node.js ('node') is not on PATH; the CouchDB integration tests need it", pytrace=False)
    if not SERVER_BIN.exists():
        pytest.fail("pouchdb-server is not installed; run ./dev test (npm ci in tests/support/couchdb)",
                    pytrace=False)


@pytest.fixture(scope="session")
def couch_server() -> Iterator[CouchServer]:
    """One in-memory PouchDB Server for the whole run, on a free 127.0.0.1 port."""
    _require_node()
    server = CouchServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def couch_db(couch_server: CouchServer) -> Iterator[CouchDatabase]:
    """A fresh, uniquely named, empty database on the shared server; deleted afterwards."""
    if not couch_server.running:
        # pouchdb-server dies on the _changes request after a failed one (reference, section 9); keep the
        # rest of the run meaningful, but say so.
        warnings.warn("the shared pouchdb-server had died; restarting it.\n" + couch_server.log_tail(10),
                      stacklevel=1)
        couch_server.restart()
    db = CouchDatabase(couch_server, "t_" + uuid.uuid4().hex)
    couch_server.create_db(db.name)
    try:
        yield db
    finally:
        if couch_server.running:
            couch_server.delete_db(db.name)


@pytest.fixture
def persistent_couch(tmp_path: Path) -> Iterator[CouchServer]:
    """A PouchDB Server of this test's own, storing its data in tmp_path, so restart() keeps the data."""
    _require_node()
    server = CouchServer(data_dir=tmp_path / "couchdb-data")
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
