"""A running bridge process whose log is read as it comes, so a test can wait for a line before acting."""

from __future__ import annotations

import signal as signals
import subprocess
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.secrets import SecretScan

__all__ = ["Watched"]


class Watched:
    """Reads the process's stderr in a thread; every wait is bounded and fails with the log so far."""

    def __init__(self, process: subprocess.Popen[str], scan: SecretScan | None = None) -> None:
        self.process = process
        self._scan = scan
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="bridge-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self._lines.append(line)

    @property
    def log(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Wait until `text` appears in the log; fail if the process exits first or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                if text in self.log:
                    return
                raise AssertionError(f"bridge exited ({self.process.returncode}) before logging {text!r}:\n"
                                     f"{self.log[-3000:]}")
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"no {text!r} in the bridge's log within {timeout}s:\n{self.log[-3000:]}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit code, once the process ends by itself within `timeout` seconds."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"bridge still running after {timeout}s:\n{self.log[-3000:]}") from None
        self._reader.join(timeout=5)
        self._check_secrets()
        return code

    def _check_secrets(self) -> None:
        if self._scan is not None:
            self._scan.check(self.log, f"bridge pid {self.process.pid}")

    def signal(self, sig: int = signals.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, sig: int = signals.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process and return its exit code (failing if it does not exit in time)."""
        self.signal(sig)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(timeout=5)
