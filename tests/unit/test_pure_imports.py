"""The pure modules import nothing that does I/O: each is imported alone in a fresh interpreter.

If importing one pulls in requests, urllib3, http.client or sqlite3 (directly or through another module),
the core is no longer testable, or usable, without the network and the disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("requests", "urllib3", "http.client", "sqlite3")


def pure_modules() -> list[str]:
    """Every module of the pure rooms (new ones included as they are added), and the pure single modules."""
    package = ROOT / "bridge"
    found = ["bridge.model", "bridge.errors", "bridge.retry", "bridge.source.decode", "bridge.source.sse_parser"]
    for room in ("core", "config"):
        found += [f"bridge.{room}.{path.stem}" for path in sorted((package / room).glob("*.py"))
                  if path.stem != "__init__"]
    return found


PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(name for name in sys.argv[2:] if name in sys.modules)))
"""


@pytest.mark.parametrize("module", pure_modules())
def test_a_pure_module_imports_no_io(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, module, *FORBIDDEN], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [], f"importing {module} loads I/O modules"


def test_the_probe_sees_an_io_import() -> None:
    """The check itself can fail: the checkpoint store does import sqlite3."""
    result = subprocess.run([sys.executable, "-c", PROBE, "bridge.state.checkpoint", *FORBIDDEN], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == ["sqlite3"]
