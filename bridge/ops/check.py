"""`bridge check`: every start-up check of `bridge run`, reported one by one, with nothing written anywhere.

The checks run in the order `run` makes them, each independent of the others' outcome, and the exit code
is that of the first failure: the code `run` would have stopped with (0 when everything would work).
The state file is read into memory, the dataset and the database marker only read, the lock only probed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import requests

from bridge.config.settings import STARTUP_RETRY, Settings, scrub_url
from bridge.errors import (
    BridgeError,
    CheckpointMismatch,
    ConfigError,
    InstanceLocked,
    NotFoundError,
    SourceUnavailable,
    StateError,
    TransientError,
)
from bridge.model import Seq
from bridge.retry import call_with_retry
from bridge.run.builder import check_key_space
from bridge.sink.panda import PandaSink
from bridge.source.couchdb import CouchSource
from bridge.source.sse import check_response
from bridge.state.checkpoint import Checkpoint
from bridge.state.lock import holder
from bridge.state.snapshot import SnapshotStore

__all__ = ["CheckResult", "run_checks", "report"]

_QUICK = STARTUP_RETRY  # the tries run's start-up checks make


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: its name, what was found, and the exit code `run` would stop with (0: passed)."""

    name: str
    detail: str
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _outcome(name: str, attempt: Callable[[], str]) -> CheckResult:
    """Run one check; a BridgeError becomes a failure with the exit code run would give it."""
    try:
        return CheckResult(name, attempt())
    except TransientError as exc:  # run turns an end it cannot reach at start into a configuration error
        return CheckResult(name, f"cannot start: {type(exc).__name__}: {exc}", ConfigError.exit_code)
    except BridgeError as exc:
        return CheckResult(name, f"{type(exc).__name__}: {exc}", exc.exit_code)


def run_checks(settings: Settings) -> Iterator[CheckResult]:
    """Each check of a start-up, in `run`'s order."""
    path = Path(settings.checkpoint.path)
    yield _outcome("lock", lambda: _check_lock(path))
    store = SnapshotStore(path)
    saved: list[Checkpoint | None] = [None]
    try:
        yield _outcome("checkpoint", lambda: _check_checkpoint(store, settings, saved))
    finally:
        store.close()
    yield _outcome("state directory", lambda: _check_writable(path))
    stop = threading.Event()
    if settings.source.kind == "couchdb":
        couch = CouchSource(settings.source, retry=_QUICK, stop=stop)
        try:
            yield _outcome("source", lambda: _check_couch(couch, settings))
            if saved[0] is not None and saved[0].source_marker is not None:
                marker = saved[0].source_marker
                yield _outcome("database marker", lambda: _check_marker(couch, settings, marker))
        finally:
            couch.close()
    else:
        yield _outcome("source", lambda: _check_stream(settings))
    panda = settings.panda
    sink = PandaSink(panda, retry=_QUICK, stop=stop, width=len(settings.mapping.columns))
    try:
        yield _outcome("PANDA dataset", lambda: _check_dataset(sink, settings))
    finally:
        sink.close()


def _check_lock(path: Path) -> str:
    running, pid = holder(path)
    if running:
        raise InstanceLocked(f"a running bridge (pid {pid}) holds {path}; `run` would be refused")
    return "no bridge holds the state file"


def _check_checkpoint(store: SnapshotStore, settings: Settings, saved: list[Checkpoint | None]) -> str:
    current = store.load()
    if current is None:
        return f"no checkpoint at {store.path}: a run starts from the beginning"
    store.claim(settings.fingerprint())  # in memory only; raises CheckpointMismatch naming what differs
    saved[0] = current
    seq: Seq | None = current.seq
    return f"{store.path} belongs to this configuration (seq {seq if seq is not None else 'none yet'})"


def _check_writable(path: Path) -> str:
    """The state file (or the directory that will hold it, or its nearest existing ancestor) is writable."""
    if path.exists():
        target = path
    else:
        target = path.parent
        while not target.exists() and target != target.parent:
            target = target.parent
    if not os.access(target, os.W_OK | (os.X_OK if target.is_dir() else 0)):
        raise StateError(f"{target} is not writable: the checkpoint {path} could not be saved")
    return f"{target} is writable"


def _check_couch(couch: CouchSource, settings: Settings) -> str:
    info = couch.info()
    couch.check_filter()
    where = f"database {settings.source.database!r} at {scrub_url(settings.source.url)}"
    return f"{where}: {info.get('doc_count')} documents, update_seq {info.get('update_seq')}"


def _check_marker(couch: CouchSource, settings: Settings, expected: str) -> str:
    found = couch.ensure_marker(settings.fingerprint_hash(), expected)  # with `expected` set it only reads
    if found != expected:
        raise CheckpointMismatch(
            f"database {settings.source.database!r} was deleted and recreated since the checkpoint was saved "
            "(its marker is gone or different); run `bridge checkpoint reset`, then start again"
        )
    return "the database is the one the checkpoint was saved against"


def _check_stream(settings: Settings) -> str:
    source = settings.source

    def attempt() -> str:
        try:
            response = requests.get(source.url, headers={**source.headers, "Accept": "text/event-stream"},
                                    stream=True, timeout=(source.connect_timeout, source.effective_read_timeout))
        except requests.RequestException as exc:
            raise SourceUnavailable(f"cannot reach {scrub_url(source.url)}: {type(exc).__name__}") from None
        with response:
            check_response(response.status_code, response.headers.get("Content-Type"))
        return f"event stream {scrub_url(source.url)} answers"

    return call_with_retry(attempt, policy=_QUICK, stop=threading.Event(), what="opening the event stream")


def _check_dataset(sink: PandaSink, settings: Settings) -> str:
    check_key_space(sink, settings)  # as run does, before the dataset may be created
    columns = settings.mapping.columns
    try:
        sink.ensure_dataset(columns, create=False, name=settings.panda.dataset_name or None)
    except NotFoundError:
        if not settings.panda.create_dataset:
            raise
        return f"dataset {settings.panda.dataset!r} does not exist; a run creates it with columns {columns}"
    return f"dataset {settings.panda.dataset!r} has the columns {columns}"


def report(results: Iterator[CheckResult], out: TextIO) -> int:
    """Print each result as it comes; the exit code of the first failure (0 when all passed)."""
    code = 0
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'}  {result.name}: {result.detail}", file=out, flush=True)
        if not result.ok and code == 0:
            code = result.exit_code
    return code
