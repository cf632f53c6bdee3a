"""Shared by the example scripts: run `bridge` as a process with a config and wait for PANDA rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.emulator import DEFAULT_API_KEY, PandaEmulator  # noqa: E402


def rows(emulator: PandaEmulator, dataset: str) -> dict[str, list[Any]]:
    """The dataset's rows; none until the bridge has created the dataset."""
    try:
        return emulator.rows(dataset)
    except KeyError:
        return {}


def show(emulator: PandaEmulator, dataset: str, title: str, columns: list[str]) -> None:
    rows_now = rows(emulator, dataset)
    print(f"\n--- {title}: PANDA dataset {dataset!r} holds {len(rows_now)} rows")
    print(f"    {'external_id':<40} " + " | ".join(columns))
    for external_id, data in sorted(rows_now.items()):
        print(f"    {external_id:<40} " + " | ".join("null" if cell is None else str(cell) for cell in data))
    sys.stdout.flush()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"example: timed out waiting until {what}")


def start_bridge(config: Path, command: str = "run") -> subprocess.Popen[bytes]:
    env = dict(os.environ, PANDA_API_KEY=DEFAULT_API_KEY, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "bridge", command, "--config", str(config)], env=env)


def stop_bridge(bridge: subprocess.Popen[bytes]) -> int:
    if bridge.poll() is None:
        bridge.send_signal(signal.SIGTERM)
    return bridge.wait(timeout=30)
