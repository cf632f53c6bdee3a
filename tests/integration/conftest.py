"""Fixtures for end-to-end tests: a PANDA emulator per test and a pipeline wired to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.emulator import PandaEmulator
from tests.support.couchdb_server import CouchDatabase
from tests.support.pipeline import Pipeline


@pytest.fixture(scope="module")
def panda_server() -> Iterator[PandaEmulator]:
    """One emulator per test module, for tests that reset it themselves."""
    with PandaEmulator() as emulator:
        yield emulator


@pytest.fixture
def panda() -> Iterator[PandaEmulator]:
    """A fresh PANDA emulator on a free loopback port."""
    with PandaEmulator(port=0) as emulator:
        yield emulator


@pytest.fixture
def pipeline(couch_db: CouchDatabase, panda: PandaEmulator, tmp_path: Path) -> Iterator[Pipeline]:
    """A bridge configuration from a fresh database to a new dataset, state under tmp_path; the processes
    it started and the test left running are killed at the end."""
    made = Pipeline(source_url=couch_db.server.url, database=couch_db.name, panda=panda, dir=tmp_path / "bridge")
    try:
        yield made
    finally:
        made.reap()
