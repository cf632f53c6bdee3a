"""One bridge per state file: an OS lock (flock) on `<state file>.lock`, held for the process's life.

The kernel releases the lock when the process ends, however it ends (kill -9 included), so there is never
a stale lock to remove by hand; the file itself stays and only says who held it last, as
`<purpose> (pid N)`. Read-only commands never take the lock: `holder()` only probes it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from pathlib import Path

from bridge.errors import InstanceLocked, StateError

__all__ = ["InstanceLock", "lock_path", "holder"]

logger = logging.getLogger(__name__)

_TRIES = 10
_PAUSE = 0.05
"""A `holder()` probe holds a shared lock for microseconds: a starting bridge tries for half a second
before it decides the lock is really held, so a `bridge status` at the same instant never refuses it."""


def lock_path(state_path: Path) -> Path:
    """The lock file of a state file."""
    return state_path.with_name(state_path.name + ".lock")


_PID = re.compile(r"\(pid (\d+)\)")


def _read_pid(fd: int) -> int | None:
    found = _PID.search(os.pread(fd, 200, 0).decode("utf-8", "replace"))
    return int(found.group(1)) if found else None


class InstanceLock:
    """The exclusive lock of one state file; `acquire` raises InstanceLocked naming the holder's pid."""

    def __init__(self, state_path: Path, purpose: str = "bridge") -> None:
        """`purpose` names the holder in the lock file, e.g. `bridge run`."""
        self.state_path = state_path
        self.purpose = purpose
        self.path = lock_path(state_path)
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"cannot open the lock file {self.path}: {exc.strerror or exc}") from None
        for attempt in range(_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _TRIES - 1:
                    pid = _read_pid(fd)
                    os.close(fd)
                    who = f"pid {pid}" if pid is not None else "another process"
                    raise InstanceLocked(
                        f"the state file {self.state_path} is in use by a running bridge ({who}); "
                        "one bridge per state file: stop it first, or give this one its own [checkpoint] path",
                        pid=pid,
                    ) from None
                time.sleep(_PAUSE)
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.purpose} (pid {os.getpid()})\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (the process's end does the same)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def holder(state_path: Path) -> tuple[bool, int | None]:
    """(running, pid): whether a bridge holds the state file's lock, and its pid when it wrote one.

    Takes nothing: a shared lock for the instant of the probe, never the file's contents.
    """
    path = lock_path(state_path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False, None
    except OSError as exc:
        raise StateError(f"cannot read the lock file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = None
            for _ in range(_TRIES):  # the holder writes its pid just after locking
                pid = _read_pid(fd)
                if pid is not None:
                    break
                time.sleep(_PAUSE)
            return True, pid
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None
    finally:
        os.close(fd)
