"""The README's demo and the examples keep working: each runs to completion against local servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("demo.py", ["--no-wait"], "after the delete: PANDA dataset 'contributors' holds 10 rows"),
        ("couchdb_source.py", [], "`bridge once` exited 0: PANDA dataset 'contributors' holds 10 rows"),
        ("sse_source.py", [], "Last-Event-ID sent on each connection: [None, '2']"),
    ],
)
def test_example_runs(pouchdb_server, script, args, expect):
    # The examples start a PouchDB Server of their own (what a new user has after ./dev); the bridge's
    # behaviour on real CouchDB is what the rest of tests/integration checks on both servers.
    env = dict(os.environ, CI="true")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True,
                            text=True, timeout=180, env=env, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert expect in result.stdout, result.stdout
    assert "Traceback" not in result.stderr
