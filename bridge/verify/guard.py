"""Refuses to repair or rebuild a pipeline's state while a bridge runs on it (an OS lock on a sidecar file).

`bridge run` and `bridge once` hold the lock for as long as they run; `bridge repair` and `bridge checkpoint
rebuild` take it too and refuse when they cannot. The lock is `fcntl.flock` on `<state file>.lock`: the
kernel releases it when the holder exits, however it exits, so a crashed bridge never leaves it behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bridge.errors import FatalError

__all__ = ["StateBusy", "hold_state", "lock_path"]


class StateBusy(FatalError):
    """Another process (a running bridge, a repair) holds the state file: stop without changing anything."""

    exit_code = 7


def lock_path(state: Path) -> Path:
    """The sidecar file whose lock guards `state`."""
    return state.with_name(state.name + ".lock")


@contextmanager
def hold_state(state: Path, purpose: str) -> Iterator[None]:
    """Hold the state file's lock for `purpose` (e.g. "bridge repair"); raises StateBusy when it is held.

    The lock file keeps the holder's pid and purpose, for the message another process shows.
    """
    path = lock_path(state)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise FatalError(f"cannot open the lock file {path}: {exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise StateBusy(f"{purpose} refused: {holder} holds the state file {state} (lock {path}); "
                            "stop it first, or let the running bridge's periodic verify repair "
                            "([verify] repair = true)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{purpose} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
