"""Helpers for tests of many pipelines in one process: a `[pipelines]` config on disk, the bridge as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bridge.emulator import DEFAULT_API_KEY, DEFAULT_EMAIL, PandaEmulator
from tests.support.couchdb_server import CouchServer
from tests.support.pipeline import ROOT, toml_key, toml_value
from tests.support.watch import Watched

__all__ = ["Fleet", "databases", "delete_dataset"]


@dataclass
class Fleet:
    """A configuration of several pipelines sharing one CouchDB server and one PANDA."""

    source_url: str
    panda: PandaEmulator
    dir: Path
    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """pipeline name -> section -> keys."""
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.dir / "bridge.toml"

    def write_config(self) -> Path:
        sections: dict[str, dict[str, Any]] = {
            "source": {"url": self.source_url, "heartbeat": 1.0},
            "panda": {"url": self.panda.url, "email": DEFAULT_EMAIL, "create_dataset": True, "timeout": 5.0},
            "mapping": {"columns": ["first_name", "last_name"]},
            "batch": {"max_age": 0.1},
            "retry": {"initial_delay": 0.05, "max_delay": 0.5},
        }
        for name, values in self.defaults.items():
            sections.setdefault(name, {}).update(values)
        lines = []
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{toml_key(key)} = {toml_value(value)}" for key, value in values.items()]
        for pipeline, table in self.tables.items():
            for name, values in table.items():
                lines.append(f"[pipelines.{pipeline}.{name}]")
                lines += [f"{toml_key(key)} = {toml_value(value)}" for key, value in values.items()]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n")
        return self.config

    def state(self, name: str) -> str:
        return str(self.dir / "state" / f"{name}.checkpoint")

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bridge", *args, "--config", str(self.config)]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PANDA_API_KEY": DEFAULT_API_KEY, "PYTHONPATH": str(ROOT)}

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        self.write_config()
        return subprocess.run(self.command(*args), env=self.env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.dir)

    def watch(self, *args: str, command: str = "run") -> Watched:
        self.write_config()
        return Watched(subprocess.Popen(self.command(command, *args), env=self.env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, cwd=self.dir))

    def rows(self, dataset: str) -> dict[str, list[Any]]:
        try:
            return self.panda.rows(dataset)
        except KeyError:
            return {}


@contextmanager
def databases(server: CouchServer, count: int) -> Iterator[list[str]]:
    """`count` fresh databases on the shared server (with its prefix), deleted afterwards."""
    names = [f"{server.db_prefix}{uuid.uuid4().hex[:12]}" for _ in range(count)]
    for name in names:
        server.create_db(name)
    try:
        yield names
    finally:
        if server.running:
            for name in names:
                server.delete_db(name)


def delete_dataset(panda: PandaEmulator, slug: str) -> None:
    """DELETE the dataset through the API, as a PANDA user would."""
    response = requests.delete(f"{panda.url}/api/1.0/dataset/{slug}/", timeout=10,
                               headers={"PANDA-EMAIL": DEFAULT_EMAIL, "PANDA-API-KEY": DEFAULT_API_KEY})
    assert response.status_code in (200, 204), (response.status_code, response.text)


def docs(prefix: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"_id": f"{prefix}-{n:05d}", "first_name": f"F{n}", "last_name": f"L{n}"}
            for n in range(start, start + count)]


