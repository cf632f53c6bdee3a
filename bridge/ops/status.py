"""`bridge status`: what the state file says, how far the source is ahead of it, and whether a bridge runs.

Like `systemctl status`: read-only (the state file is read into memory, the lock only probed) and it
needs no PANDA key and no CouchDB admin rights: the source is asked only how many changes follow the
checkpoint, and where it cannot be reached `pending` is null rather than an error.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
from pathlib import Path
from typing import Any

from bridge.config.settings import RetrySettings, Settings, scrub_url
from bridge.errors import BridgeError
from bridge.source.couchdb import CouchSource
from bridge.state.deadletter import DeadLetterFile
from bridge.state.lock import holder
from bridge.state.snapshot import SnapshotStore

__all__ = ["gather_status", "render_status"]

logger = logging.getLogger(__name__)

_QUICK = RetrySettings(initial_delay=0.2, max_delay=0.5, max_tries=2)


def _iso(unix: float | None) -> str | None:
    if unix is None:
        return None
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).isoformat(timespec="seconds")


def gather_status(settings: Settings) -> dict[str, Any]:
    """The status object: seq, saved_at, documents, dead_letters, pending, running, pid and where they come from."""
    path = Path(settings.checkpoint.path)
    running, pid = holder(path)
    store = SnapshotStore(path)
    try:
        saved = store.load()
    finally:
        store.close()
    seq = saved.seq if saved is not None else None
    status: dict[str, Any] = {
        "pipeline": settings.panda.dataset,
        "state_file": str(path),
        "seq": None if seq is None else seq.value,
        "saved_at": _iso(saved.saved_at) if saved is not None else None,
        "documents": saved.documents if saved is not None else 0,
        "dead_letters": sum(1 for _ in DeadLetterFile(settings.checkpoint.deadletter_path).entries()),
        "pending": None,
        "running": running,
        "pid": pid,
        "matches_configuration": (saved.fingerprint == json.loads(json.dumps(settings.fingerprint()))
                                  if saved is not None else None),
        "source": scrub_url(settings.source.url),
    }
    if settings.source.kind == "couchdb":
        status["database"] = settings.source.database
        source = CouchSource(settings.source, retry=_QUICK, stop=threading.Event())
        try:
            status["pending"] = source.pending_after(seq)
        except BridgeError as exc:
            status["source_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            source.close()
    return status


def render_status(status: dict[str, Any]) -> str:
    """The status as a few readable lines."""
    state = f"running, pid {status['pid']}" if status["running"] else "not running"
    lines = [f"bridge pipeline {status['pipeline']} ({state})",
             f"  state file:     {status['state_file']}"]
    if status["seq"] is None:
        lines.append("  checkpoint:     none yet (the next run starts from the beginning)")
    else:
        lines.append(f"  checkpoint:     seq {status['seq']} saved {status['saved_at']}")
    if status["matches_configuration"] is False:
        lines.append("  WARNING:        the checkpoint belongs to another configuration")
    lines.append(f"  documents:      {status['documents']} in PANDA")
    lines.append(f"  dead letters:   {status['dead_letters']}")
    where = status["source"] + (f" database {status['database']!r}" if "database" in status else "")
    if status["pending"] is not None:
        lines.append(f"  pending:        {status['pending']} changes in {where} after the checkpoint")
    else:
        reason = status.get("source_error") or "the source does not say"
        lines.append(f"  pending:        unknown ({reason})")
    return "\n".join(lines)
