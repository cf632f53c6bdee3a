"""Helpers for end-to-end tests: a bridge config on disk, the bridge as a real process, expected rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.emulator import DEFAULT_API_KEY, DEFAULT_EMAIL, PandaEmulator
from tests.support.oracle import expected_rows
from tests.support.secrets import SecretScan
from tests.support.watch import Watched

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["first_name", "last_name", "employer"]
FIELDS = {"employer": "job.employer"}


@dataclass
class Pipeline:
    """One pipeline under test: its config file, state directory and both ends."""

    source_url: str
    database: str
    panda: PandaEmulator
    dir: Path
    dataset: str = "contributors"
    columns: list[str] = field(default_factory=lambda: list(COLUMNS))
    fields: dict[str, str] = field(default_factory=lambda: dict(FIELDS))
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    """Extra environment variables of the bridge's runs (e.g. COUCHDB_PASSWORD)."""
    log_format: str = ""
    """Passed as --log-format when set."""
    scan: SecretScan | None = None
    """When set, the log of every run made through once(), cli() and watch() is checked for these secrets."""
    spawned: list[subprocess.Popen[str]] = field(default_factory=list)
    """Every background process started by spawn() or start(); reap() kills those still running."""

    @property
    def config(self) -> Path:
        return self.dir / "bridge.toml"

    @property
    def checkpoint(self) -> Path:
        return self.dir / "state" / "bridge.state.checkpoint"

    @property
    def deadletter(self) -> Path:
        return Path(str(self.checkpoint) + ".deadletter.jsonl")

    def write_config(self) -> Path:
        sections: dict[str, dict[str, Any]] = {
            "source": {"url": self.source_url, "database": self.database, "heartbeat": 1.0},
            "panda": {"url": self.panda.url, "email": DEFAULT_EMAIL, "dataset": self.dataset,
                      "create_dataset": True, "timeout": 5.0},
            "mapping": {"columns": self.columns},
            "checkpoint": {"path": str(self.checkpoint)},
            "batch": {"max_age": 0.1},
            "retry": {"initial_delay": 0.05, "max_delay": 0.5},
        }
        for name, values in self.extra.items():
            sections.setdefault(name, {}).update(values)
        lines = []
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{toml_key(key)} = {toml_value(value)}" for key, value in values.items()]
            if name == "mapping" and self.fields:
                lines.append("[mapping.fields]")
                lines += [f"{toml_key(key)} = {toml_value(value)}" for key, value in self.fields.items()]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n")
        return self.config

    def env(self) -> dict[str, str]:
        return {**os.environ, "PANDA_API_KEY": DEFAULT_API_KEY, "PYTHONPATH": str(ROOT), **self.environment}

    def command(self, *args: str) -> list[str]:
        formats = ["--log-format", self.log_format] if self.log_format else []
        return [sys.executable, "-m", "bridge", *args, "--config", str(self.config), *formats]

    def once(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `bridge once` to completion."""
        return self.cli("once", *args, timeout=timeout)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run any `bridge` command to completion (its log scanned for secrets when `scan` is set)."""
        self.write_config() if not self.config.exists() else None
        result = subprocess.run(self.command(*args), env=self.env(), capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        if self.scan is not None:
            self.scan.check(result.stderr, f"bridge {' '.join(args)} (stderr)")
            self.scan.check(result.stdout, f"bridge {' '.join(args)} (stdout)")
        return result

    def watch(self, *args: str, command: str = "run") -> Watched:
        """start(), with the log read as it comes and, when `scan` is set, checked once the process ends."""
        return Watched(self.start(*args, command=command), scan=self.scan)

    def start(self, *args: str, command: str = "run") -> subprocess.Popen[str]:
        """Start `bridge run` in the background; stderr is kept for assertions."""
        self.write_config() if not self.config.exists() else None
        return self.spawn(self.command(command, *args), stdout=subprocess.PIPE)

    def spawn(self, argv: Sequence[str], stdout: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
        """Start a process with this pipeline's environment and stderr piped; the fixture reaps it at the end
        of the test, so a failed assertion never leaves it running."""
        process = subprocess.Popen(list(argv), env=self.env(), stdout=stdout, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.DEVNULL)
        self.spawned.append(process)
        return process

    def reap(self) -> None:
        """Kill every spawned process still running (the test is over, whatever its outcome)."""
        for process in self.spawned:
            if process.poll() is None:
                process.kill()
                process.wait(30)  # not communicate(): a Watched thread may still be reading its stderr
        self.spawned.clear()

    def rows(self) -> dict[str, list[Any]]:
        """The dataset's rows; empty until the bridge has created the dataset."""
        try:
            return self.panda.rows(self.dataset)
        except KeyError:
            return {}

    def expected(self, docs: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Any]]:
        """The rows PANDA must hold for these live documents (design documents are not data), worked out
        by tests/support/oracle.py, not by the bridge's own encoding and cell rules."""
        paths = [self.fields.get(column, column) for column in self.columns]
        prefix = self.extra.get("mapping", {}).get("external_id_prefix", "")
        return expected_rows(docs, paths, prefix)


def toml_key(key: str) -> str:
    return key if key.replace("_", "a").replace("-", "a").isalnum() and key.isascii() else json.dumps(key)


def toml_value(value: Any) -> str:
    """A TOML value (inline tables for mappings); JSON strings are valid TOML basic strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str]:
    """Signal the process and wait; returns (exit code, stderr)."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        _out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
        raise AssertionError(f"bridge did not stop within {timeout}s after {sig}:\n{err[-3000:]}") from None
    return process.returncode, err


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0,
               process: subprocess.Popen[str] | None = None) -> None:
    """Poll `check` (bounded); fail with `what` and the bridge's log if it never holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.poll() is not None:
            _out, err = process.communicate()
            raise AssertionError(f"bridge exited ({process.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.05)
    detail = ""
    if process is not None and process.poll() is None:
        process.kill()
        _out, err = process.communicate()
        detail = "\n" + err[-3000:]
    raise AssertionError(f"timed out after {timeout}s waiting until {what}{detail}")


def written_ids(panda: PandaEmulator, dataset: str) -> list[str]:
    """Every external_id the emulator received in bulk upserts (in order, with repeats)."""
    seen: list[str] = []
    for request in panda.requests:
        if request.method == "PUT" and request.path.endswith(f"/dataset/{dataset}/data/") and request.status == 202:
            seen += [obj["external_id"] for obj in (request.body or {}).get("objects", [])]
    return seen


def deleted_ids(panda: PandaEmulator, dataset: str) -> list[str]:
    """Every external_id the emulator deleted one by one."""
    prefix = f"/api/1.0/dataset/{dataset}/data/"
    return [request.path[len(prefix):-1] for request in panda.requests
            if request.method == "DELETE" and request.path.startswith(prefix) and request.path != prefix]


def make_docs(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"_id": f"doc-{n:05d}", "first_name": f"First{n}", "last_name": f"Last{n}",
             "job": {"employer": f"Employer {n % 17}"}, "n": n} for n in range(start, start + count)]


def bulk_update(server: Any, db: str, docs: Sequence[Mapping[str, Any]], **changes: Any) -> list[dict[str, Any]]:
    """Apply `changes` to each doc (which must carry _rev) and save; returns the updated docs."""
    updated = [dict(doc, **changes) for doc in docs]
    results = server.bulk_docs(db, updated)
    for doc, result in zip(updated, results, strict=True):
        doc["_rev"] = result["rev"]
    return updated
